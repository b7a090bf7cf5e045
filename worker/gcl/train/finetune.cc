#include "worker/gcl/train/finetune.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include <torch/torch.h>

#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"
#include "worker/gcl/data/rng.h"
#include "worker/gcl/eval/summary.h"
#include "worker/gcl/train/checkpoint.h"
#include "worker/gcl/train/metrics_writer.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSubsetIndexBase = uint64_t{1} << 62;
constexpr int64_t kEvalChunk = 16;
constexpr int64_t kLossWindow = 10;

struct SliceIndex {
  size_t volume;  // into the labelled volume list
  int64_t slice;
};

// Deep copy of every parameter and buffer, for best-model selection.
std::vector<torch::Tensor> CopyState(torch::nn::Module& m) {
  std::vector<torch::Tensor> out;
  for (const auto& t : m.parameters()) out.push_back(t.detach().clone());
  for (const auto& t : m.buffers()) out.push_back(t.detach().clone());
  return out;
}

void LoadState(torch::nn::Module& m, const std::vector<torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& t : m.parameters()) t.copy_(state[i++]);
  for (auto& t : m.buffers()) t.copy_(state[i++]);
}

// Soft Dice loss over foreground classes: 1 - mean_c (2 Σ p g + eps) / (Σ p + Σ g + eps),
// sums over the whole batch (spec 8, "CE + soft Dice").
torch::Tensor SoftDiceLoss(const torch::Tensor& logits, const torch::Tensor& label) {
  const int64_t c = logits.size(1);
  if (c < 2) return torch::zeros({}, logits.options());
  const double eps = 1e-5;
  torch::Tensor prob = torch::softmax(logits, 1).slice(1, 1);
  torch::Tensor onehot =
      torch::one_hot(label, c).permute({0, 3, 1, 2}).to(logits.scalar_type()).slice(1, 1);
  torch::Tensor inter = (prob * onehot).sum({0, 2, 3});
  torch::Tensor denom = prob.sum({0, 2, 3}) + onehot.sum({0, 2, 3});
  return 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean();
}

// Argmax prediction of every slice, stacked to int64 [S, H, W] on the CPU.
// Runs on the model's device (a one-channel input has the same layout in
// NCHW and NHWC, so a channels-last model needs no conversion).
torch::Tensor PredictVolume(UNet& model, const Volume& v) {
  const torch::Device device = model->parameters().front().device();
  std::vector<torch::Tensor> preds;
  for (int64_t s0 = 0; s0 < v.num_slices(); s0 += kEvalChunk) {
    torch::Tensor x = v.image.slice(0, s0, std::min(s0 + kEvalChunk, v.num_slices()));
    x = x.unsqueeze(1).to(torch::kFloat32).to(device);
    preds.push_back(model->forward(x).argmax(1).to(torch::kCPU));
  }
  return torch::cat(preds);
}

absl::Status WriteTextFile(const fs::path& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) return absl::InternalError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

double MeanOfRange(const std::vector<double>& v, size_t begin, size_t end) {
  if (begin >= end) return std::nan("");
  return std::accumulate(v.begin() + begin, v.begin() + end, 0.0) /
         static_cast<double>(end - begin);
}

absl::Status RunFinetuneImpl(const Dataset& dataset, const FinetuneOptions& opt,
                             const FinetuneCallbacks& callbacks, FinetuneResult& result) {
  const int64_t num_classes = dataset.num_classes();
  if (opt.model.num_classes != num_classes) {
    return absl::InvalidArgumentError(absl::StrCat("model.num_classes ", opt.model.num_classes,
                                                   " != dataset classes ", num_classes));
  }
  if (opt.loss != "ce_dice" && opt.loss != "ce") {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown fine-tuning loss \"", opt.loss, "\" (ce_dice | ce)"));
  }
  if (opt.steps < 0 || opt.batch < 1) {
    return absl::InvalidArgumentError("steps must be >= 0 and batch >= 1");
  }
  GCL_ASSIGN_OR_RETURN(std::vector<size_t> labeled, SelectLabeledVolumes(dataset, opt));
  for (size_t i : labeled) result.labeled_ids.push_back(dataset.train[i].id);

  GCL_ASSIGN_OR_RETURN(DevicePlacement placement, DevicePlacement::Create(opt.device));
  if (!placement.is_cuda()) placement = placement.WithChannelsLast(false);
  const int64_t threads =
      opt.threads > 0
          ? opt.threads
          : std::max<int64_t>(1, static_cast<int64_t>(std::thread::hardware_concurrency()));
  at::set_num_threads(static_cast<int>(threads));

  const uint64_t run_seed =
      StreamSeed(opt.seed, RngStream::kFinetune, static_cast<uint64_t>(opt.repeat));
  // The U-Net initialiser draws from the global torch RNG (model/unet.h).
  torch::manual_seed(StreamSeed(run_seed, RngStream::kInit, 0));
  UNet model(opt.model);
  if (!opt.init_checkpoint.empty()) {
    GCL_ASSIGN_OR_RETURN(auto ckpt, ReadCheckpoint(opt.init_checkpoint));
    GCL_RETURN_IF_ERROR(RestoreModuleState("encoder.", ckpt, model->encoder.get()));
  }
  placement.PlaceModule(*model);
  std::vector<torch::Tensor> params;
  if (opt.frozen_encoder) {
    for (auto& p : model->encoder->parameters()) p.set_requires_grad(false);
    params = model->decoder->parameters();
  } else {
    params = model->parameters();
  }
  torch::optim::Adam optimizer(
      params, torch::optim::AdamOptions(opt.lr).betas({0.9, 0.999}).weight_decay(opt.weight_decay));

  std::vector<SliceIndex> slices;
  for (size_t v = 0; v < labeled.size(); ++v) {
    for (int64_t s = 0; s < dataset.train[labeled[v]].num_slices(); ++s) slices.push_back({v, s});
  }
  if (slices.empty()) return absl::InvalidArgumentError("the labelled volumes have no slices");

  const fs::path out(opt.output_dir);
  if (!opt.output_dir.empty()) {
    std::error_code ec;
    fs::create_directories(out, ec);
    if (ec)
      return absl::InternalError(absl::StrCat("cannot create ", out.string(), ": ", ec.message()));
  }
  GCL_ASSIGN_OR_RETURN(
      MetricsWriter metrics,
      MetricsWriter::Open(opt.output_dir.empty() ? "" : (out / "metrics.jsonl").string()));

  const bool has_val = !dataset.val.empty();
  std::vector<torch::Tensor> best_state;
  result.best_val_dice = std::nan("");
  result.best_step = opt.steps;
  std::vector<double> losses;
  const auto run_start = std::chrono::steady_clock::now();

  for (int64_t t = 0; t < opt.steps; ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    const double lr = FinetuneLr(opt, t);
    for (auto& group : optimizer.param_groups()) {
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    }
    // Uniform draw with replacement over the labelled slices; raw mt19937_64
    // output (std distributions are implementation-defined, so not portable).
    std::mt19937_64 rng(StreamSeed(run_seed, RngStream::kSampler, static_cast<uint64_t>(t)));
    std::vector<torch::Tensor> images, labels;
    for (int64_t b = 0; b < opt.batch; ++b) {
      const SliceIndex& si = slices[rng() % slices.size()];
      const Volume& vol = dataset.train[labeled[si.volume]];
      images.push_back(vol.image[si.slice]);
      labels.push_back(vol.label[si.slice]);
    }
    torch::Tensor image = torch::stack(images).to(torch::kFloat32);
    torch::Tensor label = torch::stack(labels).to(torch::kLong);
    if (opt.augment_enabled) {
      std::tie(image, label) =
          FinetuneAugment(image, label, opt.augment,
                          StreamSeed(run_seed, RngStream::kAugment, static_cast<uint64_t>(t)));
    } else {
      image = image.unsqueeze(1);
    }

    image = placement.Input(image);
    label = placement.ToDevice(label);

    model->train();
    if (opt.frozen_encoder) model->encoder->eval();
    optimizer.zero_grad();
    auto autocast = placement.Autocast();  // bf16 forward when asked; the loss is fp32
    torch::Tensor logits = model->forward(image);
    autocast.End({&logits});
    torch::Tensor loss = torch::nn::functional::cross_entropy(logits, label);
    if (opt.loss == "ce_dice") loss = loss + SoftDiceLoss(logits, label);
    loss.backward();
    optimizer.step();

    const int64_t step = t + 1;
    const double loss_value = loss.item<double>();
    losses.push_back(loss_value);
    const auto t1 = std::chrono::steady_clock::now();
    const double seconds = std::chrono::duration<double>(t1 - t0).count();
    if (callbacks.on_step) callbacks.on_step(step, loss_value, lr, seconds);
    MetricsRecord rec;
    rec.step = step;
    rec.time = std::chrono::duration<double>(t1 - run_start).count();
    rec.Add("gcl_finetune_loss", loss_value);
    rec.Add("gcl_finetune_lr", lr);
    rec.Add("gcl_finetune_step_seconds", seconds);

    const bool validate =
        has_val && ((opt.val_every > 0 && step % opt.val_every == 0) || step == opt.steps);
    if (validate) {
      const double val_dice =
          MeanOverVolumes(EvaluateVolumes(model, dataset.val, num_classes, /*compute_hd95=*/false));
      rec.Add("gcl_finetune_val_dice", val_dice);
      if (callbacks.on_validate) callbacks.on_validate(step, val_dice);
      // NaN (no valid class anywhere) never wins; strictly better keeps the earlier tie.
      if (!std::isnan(val_dice) && (best_state.empty() || std::isnan(result.best_val_dice) ||
                                    val_dice > result.best_val_dice)) {
        result.best_val_dice = val_dice;
        result.best_step = step;
        best_state = CopyState(*model);
      }
    }
    GCL_RETURN_IF_ERROR(metrics.Write(rec));
  }
  if (!best_state.empty()) LoadState(*model, best_state);
  const size_t n = losses.size(), w = static_cast<size_t>(kLossWindow);
  result.first_loss = MeanOfRange(losses, 0, std::min(n, w));
  result.last_loss = MeanOfRange(losses, n - std::min(n, w), n);

  // Test set, once, with the selected weights (spec 8.1).
  result.test_cases = EvaluateVolumes(model, dataset.test, num_classes, opt.test_hd95);
  result.per_class_dice = PerClassMean(result.test_cases, num_classes);
  result.mean_dice = MeanOverVolumes(result.test_cases);
  result.mean_hd95 = MeanOverVolumes(result.test_cases, /*hd95=*/true);
  std::set<std::string> units;
  for (const auto& c : result.test_cases) units.insert(c.hd95_unit);
  result.hd95_unit = units.size() == 1 ? *units.begin() : (units.empty() ? "" : "mixed");
  AccumulatedDice acc;  // the scores carry the confusion counts: no second prediction
  for (const auto& c : result.test_cases) acc.Add(c);
  result.accumulated_dice = acc.Mean();

  if (!opt.output_dir.empty()) {
    std::vector<std::pair<std::string, torch::Tensor>> tensors;
    AppendModuleState("", *model, &tensors);
    CheckpointMeta meta;
    meta.step = result.best_step;
    meta.kind = "finetune";
    meta.seed = opt.seed;
    result.best_checkpoint = (out / "best.ckpt").string();
    GCL_RETURN_IF_ERROR(WriteCheckpoint(result.best_checkpoint, tensors, meta).status());
    GCL_RETURN_IF_ERROR(
        WriteTextFile(out / "summary.json",
                      SummaryJson(result.test_cases, dataset.class_names, result.hd95_unit)));
    std::string j = "{\n  \"labeled_ids\": [";
    for (size_t i = 0; i < result.labeled_ids.size(); ++i) {
      j += (i ? ", " : "") + JsonQuote(result.labeled_ids[i]);
    }
    j += "],\n  \"class_names\": [";
    for (size_t i = 0; i < dataset.class_names.size(); ++i) {
      j += (i ? ", " : "") + JsonQuote(dataset.class_names[i]);
    }
    j += "],\n  \"labeled_volumes\": " + std::to_string(opt.labeled_volumes) +
         ",\n  \"repeat\": " + std::to_string(opt.repeat) +
         ",\n  \"seed\": " + std::to_string(opt.seed) +
         ",\n  \"frozen_encoder\": " + (opt.frozen_encoder ? "true" : "false") +
         ",\n  \"init_checkpoint\": " + JsonQuote(opt.init_checkpoint) +
         ",\n  \"best_step\": " + std::to_string(result.best_step) +
         ",\n  \"best_val_dice\": " + JsonNumber(result.best_val_dice) +
         ",\n  \"test_mean_dice\": " + JsonNumber(result.mean_dice) +
         ",\n  \"test_mean_hd95\": " + JsonNumber(result.mean_hd95) +
         ",\n  \"hd95_unit\": " + JsonQuote(result.hd95_unit) +
         ",\n  \"test_accumulated_dice\": " + JsonNumber(result.accumulated_dice) +
         ",\n  \"per_class_dice\": [";
    for (size_t i = 0; i < result.per_class_dice.size(); ++i) {
      j += (i ? ", " : "") + JsonNumber(result.per_class_dice[i]);
    }
    j += "]\n}\n";
    GCL_RETURN_IF_ERROR(WriteTextFile(out / "finetune.json", j));
  }
  return absl::OkStatus();
}

}  // namespace

double FinetuneLr(const FinetuneOptions& options, int64_t t) {
  if (options.steps <= 0) return options.lr;
  const double kPi = 3.14159265358979323846;
  const double frac = static_cast<double>(t) / static_cast<double>(options.steps);
  return options.lr_min + 0.5 * (options.lr - options.lr_min) * (1.0 + std::cos(kPi * frac));
}

absl::StatusOr<std::vector<size_t>> SelectLabeledVolumes(const Dataset& dataset,
                                                         const FinetuneOptions& options) {
  std::set<std::string> case_set;
  for (const Volume& v : dataset.train) {
    if (v.has_label()) case_set.insert(v.case_id);
  }
  if (case_set.empty()) return absl::InvalidArgumentError("no labelled volume in the train split");
  std::vector<std::string> cases(case_set.begin(), case_set.end());  // sorted
  const auto m =
      options.labeled_volumes <= 0 ? cases.size() : static_cast<size_t>(options.labeled_volumes);
  if (m > cases.size()) {
    return absl::InvalidArgumentError(absl::StrCat("labeled_volumes ", options.labeled_volumes,
                                                   " > ", cases.size(), " labelled train cases"));
  }
  std::mt19937_64 rng(StreamSeed(options.seed, RngStream::kFinetune,
                                 kSubsetIndexBase + static_cast<uint64_t>(options.repeat)));
  // Fisher-Yates with our own draws: std::shuffle's algorithm is unspecified.
  for (size_t i = cases.size(); i > 1; --i) {
    std::swap(cases[i - 1], cases[rng() % i]);
  }
  std::set<std::string> chosen(cases.begin(), cases.begin() + static_cast<std::ptrdiff_t>(m));
  std::vector<size_t> out;
  for (size_t i = 0; i < dataset.train.size(); ++i) {
    const Volume& v = dataset.train[i];
    if (v.has_label() && chosen.count(v.case_id)) out.push_back(i);
  }
  return out;
}

std::vector<VolumeScore> EvaluateVolumes(UNet& model, const std::vector<Volume>& volumes,
                                         int64_t num_classes, bool compute_hd95) {
  torch::NoGradGuard no_grad;
  model->eval();
  std::vector<VolumeScore> out;
  for (const Volume& v : volumes) {
    if (!v.has_label()) continue;
    VolumeScore vs =
        ScoreVolume(PredictVolume(model, v), v.label, num_classes, v.spacing_zyx, compute_hd95);
    vs.case_id = v.id;
    out.push_back(std::move(vs));
  }
  return out;
}

absl::StatusOr<FinetuneResult> RunFinetune(const Dataset& dataset, const FinetuneOptions& options,
                                           const FinetuneCallbacks& callbacks) {
  FinetuneResult result;
  GCL_RETURN_IF_ERROR(CatchToStatus("fine-tuning", [&]() -> absl::Status {
    return RunFinetuneImpl(dataset, options, callbacks, result);
  }));
  return result;
}

}  // namespace gcl::core
