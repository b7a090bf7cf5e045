#include "worker/gcl/train/checkpoint.h"

#include <torch/optim/adam.h>
#include <torch/optim/adamw.h>
#include <torch/optim/sgd.h>

#include <filesystem>
#include <map>
#include <memory>
#include <sstream>
#include <type_traits>
#include <unordered_map>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"
#include "worker/gcl/train/safetensors.h"
#include "gcl/base/sha256.h"

namespace gcl::core {
namespace {

constexpr char kFormat[] = "gcl-checkpoint-v1";

using TensorMap = std::unordered_map<std::string, const torch::Tensor*>;

TensorMap IndexTensors(const LoadedCheckpoint& ckpt) {
  TensorMap m;
  for (const auto& [name, t] : ckpt.tensors) m[name] = &t;
  return m;
}

std::string ShapeString(const torch::Tensor& t) {
  return absl::StrCat("[", absl::StrJoin(t.sizes().vec(), ", "), "] ",
                      std::string(c10::toString(t.scalar_type())));
}

// Checks that `saved` can be copied bit-exactly into `target`.
bool Compatible(const torch::Tensor& saved, const torch::Tensor& target) {
  return saved.sizes() == target.sizes() && saved.scalar_type() == target.scalar_type();
}

// The key of a parameter in Optimizer::state(): the TensorImpl address as a
// string up to LibTorch 1.x, the address itself (void*) from 2.0 on.
using OptimizerStateKey =
    std::decay_t<decltype(std::declval<torch::optim::Optimizer&>().state())>::key_type;

template <typename Key>
Key StateKeyAs(const torch::Tensor& p) {
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;  // what c10::guts::to_string did (gone in 2.x)
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

OptimizerStateKey StateKey(const torch::Tensor& p) { return StateKeyAs<OptimizerStateKey>(p); }

std::string ErrorList(const std::vector<std::string>& errors) {
  constexpr size_t kMax = 20;
  std::vector<std::string> shown(errors.begin(), errors.begin() + std::min(errors.size(), kMax));
  std::string s = absl::StrJoin(shown, "; ");
  if (errors.size() > kMax) absl::StrAppend(&s, "; ... (", errors.size() - kMax, " more)");
  return s;
}

}  // namespace

absl::StatusOr<std::string> WriteCheckpoint(
    const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const CheckpointMeta& meta) {
  const std::map<std::string, std::string> metadata = {
      {"gcl.format", kFormat},
      {"gcl.step", absl::StrCat(meta.step)},
      {"gcl.kind", meta.kind},
      {"gcl.seed", absl::StrCat(meta.seed)},
      {"gcl.config_json", meta.config_json},
  };
  std::string bytes;
  GCL_RETURN_IF_ERROR(CatchToStatus("WriteCheckpoint " + path, [&]() -> absl::Status {
    GCL_ASSIGN_OR_RETURN(bytes, SerializeSafetensors(tensors, metadata));
    return absl::OkStatus();
  }));
  const std::string digest = Sha256Hex(bytes);
  GCL_RETURN_IF_ERROR(WriteFileAtomic(path, bytes));
  // The sidecar last: a checkpoint without a matching sidecar is incomplete.
  const std::string name = std::filesystem::path(path).filename().string();
  GCL_RETURN_IF_ERROR(WriteFileAtomic(path + ".sha256", digest + "  " + name + "\n"));
  return digest;
}

absl::StatusOr<LoadedCheckpoint> ReadCheckpoint(const std::string& path) {
  GCL_ASSIGN_OR_RETURN(std::string bytes, ReadFileBytes(path));
  const std::string sidecar_path = path + ".sha256";
  auto sidecar = ReadFileBytes(sidecar_path);
  if (!sidecar.ok()) {
    return absl::DataLossError(absl::StrCat(path, ": missing or unreadable sha256 sidecar ",
                                            sidecar_path, " (", sidecar.status().message(), ")"));
  }
  const std::string expected = sidecar->substr(0, sidecar->find_first_of(" \t\n"));
  if (expected.size() != 64 ||
      expected.find_first_not_of("0123456789abcdef") != std::string::npos) {
    return absl::DataLossError(path + ": malformed sha256 sidecar " + sidecar_path);
  }
  LoadedCheckpoint out;
  out.sha256 = Sha256Hex(bytes);
  if (out.sha256 != expected) {
    return absl::DataLossError(absl::StrCat(path, ": sha256 mismatch (file ", out.sha256,
                                            ", sidecar ", expected,
                                            "); the checkpoint is truncated or corrupted"));
  }
  absl::StatusOr<ParsedSafetensors> parsed;
  GCL_RETURN_IF_ERROR(CatchToStatus("ReadCheckpoint " + path, [&]() -> absl::Status {
    parsed = ParseSafetensors(bytes, path);
    return absl::OkStatus();
  }));
  if (!parsed.ok()) return parsed.status();
  auto& md = parsed->metadata;
  if (md["gcl.format"] != kFormat) {
    return absl::DataLossError(path + ": not a " + std::string(kFormat) + " file");
  }
  if (!absl::SimpleAtoi(md["gcl.step"], &out.meta.step) ||
      !absl::SimpleAtoi(md["gcl.seed"], &out.meta.seed)) {
    return absl::DataLossError(path + ": bad gcl.step or gcl.seed metadata");
  }
  out.meta.kind = md["gcl.kind"];
  out.meta.config_json = md["gcl.config_json"];
  out.tensors = std::move(parsed->tensors);
  return out;
}

void AppendModuleState(const std::string& prefix, const torch::nn::Module& module,
                       std::vector<std::pair<std::string, torch::Tensor>>* out) {
  // Snapshots: later training steps must not change what was appended.
  for (const auto& p : module.named_parameters(/*recurse=*/true)) {
    out->emplace_back(prefix + p.key(), p.value().detach().to(torch::kCPU).clone());
  }
  for (const auto& b : module.named_buffers(/*recurse=*/true)) {
    out->emplace_back(prefix + b.key(), b.value().detach().to(torch::kCPU).clone());
  }
}

absl::Status RestoreModuleState(const std::string& prefix, const LoadedCheckpoint& ckpt,
                                torch::nn::Module* module) {
  return CatchToStatus("RestoreModuleState " + prefix, [&]() -> absl::Status {
    const TensorMap saved = IndexTensors(ckpt);
    std::vector<std::pair<torch::Tensor, const torch::Tensor*>> copies;
    std::vector<std::string> errors;
    auto plan = [&](const std::string& name, const torch::Tensor& target) {
      auto it = saved.find(prefix + name);
      if (it == saved.end()) {
        errors.push_back("missing " + prefix + name);
      } else if (!Compatible(*it->second, target)) {
        errors.push_back(absl::StrCat(prefix, name, " is ", ShapeString(*it->second),
                                      ", module has ", ShapeString(target)));
      } else {
        copies.emplace_back(target, it->second);
      }
    };
    for (const auto& p : module->named_parameters(true)) plan(p.key(), p.value());
    for (const auto& b : module->named_buffers(true)) plan(b.key(), b.value());
    if (!errors.empty()) {
      return absl::InvalidArgumentError("checkpoint does not match the module: " +
                                        ErrorList(errors));
    }
    torch::NoGradGuard no_grad;
    for (auto& [target, src] : copies) target.copy_(*src);
    return absl::OkStatus();
  });
}

void AppendOptimizerState(const std::string& prefix, torch::optim::Optimizer& opt,
                          std::vector<std::pair<std::string, torch::Tensor>>* out) {
  auto snap = [](const torch::Tensor& t) { return t.detach().to(torch::kCPU).clone(); };
  int64_t k = 0;
  auto& state = opt.state();
  for (size_t g = 0; g < opt.param_groups().size(); ++g) {
    auto& group = opt.param_groups()[g];
    try {
      out->emplace_back(absl::StrCat(prefix, "group.", g, ".lr"),
                        torch::tensor(group.options().get_lr(), torch::kFloat64));
    } catch (const c10::Error&) {
      // Options without get_lr (custom optimizers): nothing to save.
    }
    for (const auto& p : group.params()) {
      const std::string base = absl::StrCat(prefix, "state.", k++, ".");
      auto it = state.find(StateKey(p));
      if (it == state.end()) continue;
      const torch::optim::OptimizerParamState* s = it->second.get();
      if (auto* sgd = dynamic_cast<const torch::optim::SGDParamState*>(s)) {
        if (sgd->momentum_buffer().defined()) {
          out->emplace_back(base + "momentum_buffer", snap(sgd->momentum_buffer()));
        }
        continue;
      }
      auto adam_like = [&](int64_t step, const torch::Tensor& m, const torch::Tensor& v,
                           const torch::Tensor& vmax) {
        out->emplace_back(base + "step", torch::tensor(step, torch::kInt64));
        out->emplace_back(base + "exp_avg", snap(m));
        out->emplace_back(base + "exp_avg_sq", snap(v));
        if (vmax.defined()) out->emplace_back(base + "max_exp_avg_sq", snap(vmax));
      };
      if (auto* a = dynamic_cast<const torch::optim::AdamParamState*>(s)) {
        adam_like(a->step(), a->exp_avg(), a->exp_avg_sq(), a->max_exp_avg_sq());
      } else if (auto* w = dynamic_cast<const torch::optim::AdamWParamState*>(s)) {
        adam_like(w->step(), w->exp_avg(), w->exp_avg_sq(), w->max_exp_avg_sq());
      } else {
        TORCH_CHECK(false,
                    "AppendOptimizerState: unsupported optimizer state (SGD, Adam, AdamW only)");
      }
    }
  }
  out->emplace_back(prefix + "num_params", torch::tensor(k, torch::kInt64));
}

absl::Status RestoreOptimizerState(const std::string& prefix, const LoadedCheckpoint& ckpt,
                                   torch::optim::Optimizer* opt) {
  enum class Kind { kSgd, kAdam, kAdamW };
  Kind kind;
  if (dynamic_cast<torch::optim::SGD*>(opt) != nullptr) {
    kind = Kind::kSgd;
  } else if (dynamic_cast<torch::optim::Adam*>(opt) != nullptr) {
    kind = Kind::kAdam;
  } else if (dynamic_cast<torch::optim::AdamW*>(opt) != nullptr) {
    kind = Kind::kAdamW;
  } else {
    return absl::UnimplementedError("RestoreOptimizerState: only SGD, Adam and AdamW");
  }
  return CatchToStatus("RestoreOptimizerState " + prefix, [&]() -> absl::Status {
    const TensorMap saved = IndexTensors(ckpt);
    std::vector<torch::Tensor> params;
    for (auto& group : opt->param_groups())
      for (const auto& p : group.params()) params.push_back(p);
    auto count = saved.find(prefix + "num_params");
    if (count == saved.end() || count->second->numel() != 1 ||
        count->second->item<int64_t>() != static_cast<int64_t>(params.size())) {
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint optimizer state ", prefix, " is for ",
                       count == saved.end() ? std::string("an unknown number of")
                                            : absl::StrCat(count->second->item<int64_t>()),
                       " parameters, the optimizer has ", params.size()));
    }
    std::vector<std::string> errors;
    auto get = [&](const std::string& name, const torch::Tensor& p,
                   bool required) -> torch::Tensor {
      auto it = saved.find(name);
      if (it == saved.end()) {
        if (required) errors.push_back("missing " + name);
        return {};
      }
      if (!Compatible(*it->second, p)) {
        errors.push_back(absl::StrCat(name, " is ", ShapeString(*it->second), ", parameter is ",
                                      ShapeString(p)));
        return {};
      }
      // A private copy: the optimizer updates its state in place.
      return it->second->to(p.device()).clone();
    };
    // Build all new states first so that an error changes nothing.
    std::vector<std::unique_ptr<torch::optim::OptimizerParamState>> fresh(params.size());
    for (size_t k = 0; k < params.size(); ++k) {
      const torch::Tensor& p = params[k];
      const std::string base = absl::StrCat(prefix, "state.", k, ".");
      if (kind == Kind::kSgd) {
        torch::Tensor mb = get(base + "momentum_buffer", p, false);
        if (mb.defined()) {
          auto s = std::make_unique<torch::optim::SGDParamState>();
          s->momentum_buffer(mb);
          fresh[k] = std::move(s);
        }
        continue;
      }
      auto step = saved.find(base + "step");
      if (step == saved.end()) continue;  // no step taken for this parameter
      const int64_t step_value = step->second->item<int64_t>();
      torch::Tensor m = get(base + "exp_avg", p, true);
      torch::Tensor v = get(base + "exp_avg_sq", p, true);
      torch::Tensor vmax = get(base + "max_exp_avg_sq", p, false);
      if (kind == Kind::kAdam) {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->step(step_value).exp_avg(m).exp_avg_sq(v);
        if (vmax.defined()) s->max_exp_avg_sq(vmax);
        fresh[k] = std::move(s);
      } else {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(step_value).exp_avg(m).exp_avg_sq(v);
        if (vmax.defined()) s->max_exp_avg_sq(vmax);
        fresh[k] = std::move(s);
      }
    }
    std::vector<double> lrs;
    for (size_t g = 0; g < opt->param_groups().size(); ++g) {
      auto it = saved.find(absl::StrCat(prefix, "group.", g, ".lr"));
      lrs.push_back(it == saved.end() ? -1.0 : it->second->item<double>());
    }
    if (!errors.empty()) {
      return absl::InvalidArgumentError("checkpoint does not match the optimizer: " +
                                        ErrorList(errors));
    }
    auto& state = opt->state();
    for (size_t k = 0; k < params.size(); ++k) {
      const OptimizerStateKey key = StateKey(params[k]);
      if (fresh[k]) {
        state[key] = std::move(fresh[k]);
      } else {
        state.erase(key);
      }
    }
    for (size_t g = 0; g < lrs.size(); ++g) {
      if (lrs[g] >= 0) opt->param_groups()[g].options().set_lr(lrs[g]);
    }
    return absl::OkStatus();
  });
}

}  // namespace gcl::core
