#include "worker/gcl/train/pretrain.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/torch_status.h"
#include "worker/gcl/data/rng.h"
#include "worker/gcl/data/sampler.h"
#include "worker/gcl/gradients/grad_layout.h"
#include "worker/gcl/gradients/pcgrad.h"
#include "worker/gcl/losses/image_loss.h"
#include "worker/gcl/losses/pixel_loss.h"
#include "worker/gcl/model/projection_head.h"
#include "worker/gcl/train/checkpoint.h"
#include "worker/gcl/train/conflict_metrics.h"
#include "worker/gcl/train/device_placement.h"
#include "worker/gcl/train/prefetcher.h"
#include "worker/gcl/train/safetensors.h"

namespace gcl::core {
namespace fs = std::filesystem;

int64_t ResolveThreads(int64_t requested) {
  if (requested > 0) return requested;
  return std::max<int64_t>(1, std::thread::hardware_concurrency());
}

namespace {

constexpr char kCheckpointDir[] = "checkpoints";

std::string StepCheckpointName(int64_t step) { return absl::StrFormat("step-%08d.ckpt", step); }

// Step checkpoints in `dir`, newest first.
std::vector<std::pair<int64_t, fs::path>> ListStepCheckpoints(const fs::path& dir) {
  std::vector<std::pair<int64_t, fs::path>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    long long step = 0;
    char tail[8] = {0};
    if (name.size() == 18 && std::sscanf(name.c_str(), "step-%8lld%5s", &step, tail) == 2 &&
        std::string(tail) == ".ckpt") {
      out.emplace_back(step, e.path());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
  return out;
}

double CosineLr(double base, int64_t step, int64_t total, bool cosine) {
  if (!cosine || total <= 0) return base;
  return base * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
}

// Drops the records of steps after `step` from a JSONL metrics file.
absl::Status TruncateMetricsAfter(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return absl::OkStatus();
  std::string kept, line;
  while (std::getline(in, line)) {
    long long s = 0;
    if (std::sscanf(line.c_str(), "{\"step\":%lld", &s) == 1 && s > step) continue;
    kept += line + "\n";
  }
  in.close();
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    if (!out) return absl::UnavailableError(absl::StrCat("cannot rewrite metrics file ", path));
  }
  std::error_code ec;
  fs::rename(tmp, path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot rewrite metrics file ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

struct Pretrainer::Impl {
  const Dataset* dataset = nullptr;
  PretrainOptions opt;
  DataParallelGroup* group = nullptr;  // null: one process
  // Data-parallel all-reduce buffers: encoder + heads (mean path), heads.
  std::unique_ptr<GradLayout> all_layout, head_layout;
  UNetEncoder encoder{nullptr};
  ProjectionHead head_i{nullptr};
  ProjectionHead head_p{nullptr};
  std::vector<torch::Tensor> encoder_params;
  std::vector<torch::Tensor> head_params;
  std::vector<torch::Tensor> all_params;
  std::unique_ptr<GradLayout> layout;
  std::unique_ptr<GradMitigator> mitigator;
  std::unique_ptr<torch::optim::SGD> optimizer;
  std::unique_ptr<PretrainSampler> sampler;
  DevicePlacement placement;
  std::vector<std::string> label_names;  // one per loss ("patient", ...; "views" when label-free)
  // Cumulative per ordered pair: none, slight, conflict, modified (spec 7.2).
  torch::Tensor conflict_totals;
  int64_t start_step = 0;
  int64_t end_step = 0;  // Run's last step + 1: no batch is made beyond it

  // A step's global batch and this rank's augmented views of it (CPU;
  // pinned when training on CUDA, so the copy to the device is a DMA).
  struct Batch {
    std::vector<SliceRef> refs;
    torch::Tensor views;
  };
  std::unique_ptr<Prefetcher<Batch>> prefetcher;  // null: batches made in the step

  int64_t num_losses() const { return static_cast<int64_t>(label_names.size()); }

  int world() const { return group != nullptr ? group->world_size() : 1; }
  int rank() const { return group != nullptr ? group->rank() : 0; }

  absl::Status Init();
  absl::Status MaybeResume();
  NamedTensors CollectState();
  absl::Status RestoreState(const LoadedCheckpoint& ckpt);
  // Rank 0's state (fresh or resumed) and start step to every rank.
  absl::Status SyncFromRankZero();
  absl::StatusOr<std::string> SaveCheckpoint(int64_t steps_done, const fs::path& path);
  // Every rank's rows of a per-view tensor, in rank order; only this rank's
  // rows carry gradient (the other ranks differentiate their own rows, and
  // the all-reduce of the parameter gradients adds the parts up).
  torch::Tensor GatherViews(const torch::Tensor& local, const char* what);
  void PruneCheckpoints();
  // The batch of step t: a pure function of t (sampler and augmentation
  // seeds), so it may be made ahead on another thread.
  Batch MakeBatch(int64_t t) const;
  // The batch of step t, made ahead when prefetching; then starts making
  // t + 1's.
  Batch TakeBatch(int64_t t);
  // One training step (0-based index t). Returns the total loss.
  double Step(int64_t t, bool log, MetricsRecord* record);
};

absl::Status Pretrainer::Impl::Init() {
  at::set_num_threads(static_cast<int>(ResolveThreads(opt.threads)));
  GCL_ASSIGN_OR_RETURN(placement, DevicePlacement::Create(opt.device));
  if (opt.prefetch.value_or(placement.is_cuda())) {
    prefetcher = std::make_unique<Prefetcher<Batch>>([this](int64_t t) { return MakeBatch(t); });
  }
  if (dataset->train.empty()) return absl::InvalidArgumentError("pre-training set is empty");
  if (!opt.image_loss && !opt.pixel_loss) {
    return absl::InvalidArgumentError("method: neither the image nor the pixel loss is enabled");
  }
  if (opt.batch % world() != 0) {
    return absl::InvalidArgumentError(absl::StrCat("train.batch ", opt.batch,
                                                   " is not a multiple of the ", world(), " ranks"));
  }
  if (rank() != 0) opt.output_dir.clear();  // rank 0 alone owns the run folder
  UNetOptions model = opt.model;
  if (world() > 1 && opt.sync_batch_norm) model.bn_reducer = group->stat_reducer();
  {
    // Initial weights come from the process-wide torch RNG: trainers created
    // at once in one process (ranks as threads in tests) must not interleave.
    static std::mutex init_rng_mu;
    std::lock_guard<std::mutex> lock(init_rng_mu);
    torch::manual_seed(StreamSeed(opt.seed, RngStream::kInit, 0));
    encoder = UNetEncoder(model);
    head_i = ProjectionHead(encoder->out_channels(), opt.proj_dim);
    head_p = ProjectionHead(encoder->out_channels(), opt.proj_dim);
  }
  placement.PlaceModule(*encoder);
  placement.PlaceModule(*head_i);
  placement.PlaceModule(*head_p);
  encoder_params = encoder->parameters();
  head_params = head_i->parameters();
  if (opt.pixel_loss) {
    auto p = head_p->parameters();
    head_params.insert(head_params.end(), p.begin(), p.end());
  }
  all_params = encoder_params;
  all_params.insert(all_params.end(), head_params.begin(), head_params.end());
  layout = std::make_unique<GradLayout>(encoder_params);
  all_layout = std::make_unique<GradLayout>(all_params);
  head_layout = std::make_unique<GradLayout>(head_params);

  for (MetaLabel m : opt.meta_labels) label_names.emplace_back(MetaLabelName(m));
  if (label_names.empty()) label_names.push_back("views");
  const int64_t m_count = num_losses();
  if (m_count > 1 && opt.combine == CombineMode::kGradMitigator) {
    mitigator = std::make_unique<GradMitigator>(m_count, *layout, opt.mitigator);
  }
  conflict_totals = torch::zeros({std::max<int64_t>(1, m_count * (m_count - 1)), 4}, torch::kInt64);

  optimizer = std::make_unique<torch::optim::SGD>(
      all_params,
      torch::optim::SGDOptions(opt.lr).momentum(opt.momentum).weight_decay(opt.weight_decay));

  SamplerOptions so;
  so.batch_slices = opt.batch;
  so.seed = opt.seed;
  so.use_phase = dataset->has_phase;
  GCL_ASSIGN_OR_RETURN(PretrainSampler s, PretrainSampler::Create(IndexSlices(dataset->train), so));
  sampler = std::make_unique<PretrainSampler>(std::move(s));
  GCL_RETURN_IF_ERROR(MaybeResume());
  return world() > 1 ? SyncFromRankZero() : absl::OkStatus();
}

absl::Status Pretrainer::Impl::MaybeResume() {
  if (opt.output_dir.empty()) return absl::OkStatus();
  for (const auto& [step, path] : ListStepCheckpoints(fs::path(opt.output_dir) / kCheckpointDir)) {
    auto ckpt = ReadCheckpoint(path.string());
    if (!ckpt.ok()) {
      // A torn or corrupt newest checkpoint falls back to the one before it.
      std::fprintf(stderr, "warning: skipping checkpoint %s: %s\n", path.c_str(),
                   std::string(ckpt.status().message()).c_str());
      continue;
    }
    return RestoreState(*ckpt);
  }
  return absl::OkStatus();
}

absl::Status Pretrainer::Impl::RestoreState(const LoadedCheckpoint& ckpt) {
  GCL_RETURN_IF_ERROR(RestoreModuleState("encoder.", ckpt, encoder.get()));
  GCL_RETURN_IF_ERROR(RestoreModuleState("head_i.", ckpt, head_i.get()));
  if (opt.pixel_loss) GCL_RETURN_IF_ERROR(RestoreModuleState("head_p.", ckpt, head_p.get()));
  GCL_RETURN_IF_ERROR(RestoreOptimizerState("optim.", ckpt, optimizer.get()));
  for (const auto& [name, t] : ckpt.tensors) {
    if (name == "mitigator.targets" && mitigator) GCL_RETURN_IF_ERROR(mitigator->SetTargets(t));
    if (name == "stats.conflict_totals" && t.sizes() == conflict_totals.sizes()) {
      conflict_totals.copy_(t);
    }
  }
  start_step = ckpt.meta.step;
  return absl::OkStatus();
}

NamedTensors Pretrainer::Impl::CollectState() {
  NamedTensors tensors;
  AppendModuleState("encoder.", *encoder, &tensors);
  AppendModuleState("head_i.", *head_i, &tensors);
  if (opt.pixel_loss) AppendModuleState("head_p.", *head_p, &tensors);
  AppendOptimizerState("optim.", *optimizer, &tensors);
  if (mitigator) tensors.emplace_back("mitigator.targets", mitigator->targets());
  tensors.emplace_back("stats.conflict_totals", conflict_totals);
  return tensors;
}

absl::Status Pretrainer::Impl::SyncFromRankZero() {
  // The checkpoint image, not raw parameters: a resumed rank 0 holds
  // optimizer state (momentum) the other ranks have no buffers for yet.
  std::string image;
  if (rank() == 0) {
    GCL_ASSIGN_OR_RETURN(image, SerializeSafetensors(CollectState(), {}));
  }
  std::vector<torch::Tensor> header = {
      torch::tensor({start_step, static_cast<int64_t>(image.size())}, torch::kInt64)};
  group->Broadcast(header, "broadcast of rank 0's state size");
  const int64_t step = header[0][0].item<int64_t>(), size = header[0][1].item<int64_t>();
  std::vector<torch::Tensor> bytes = {torch::empty({size}, torch::kUInt8)};
  if (rank() == 0) std::memcpy(bytes[0].data_ptr(), image.data(), image.size());
  group->Broadcast(bytes, "broadcast of rank 0's state");
  if (rank() == 0) return absl::OkStatus();
  const std::string_view view(static_cast<const char*>(bytes[0].data_ptr()), size);
  GCL_ASSIGN_OR_RETURN(ParsedSafetensors parsed, ParseSafetensors(view, "rank 0's state"));
  LoadedCheckpoint ckpt;
  ckpt.tensors = std::move(parsed.tensors);
  ckpt.meta.step = step;
  return RestoreState(ckpt);
}

torch::Tensor Pretrainer::Impl::GatherViews(const torch::Tensor& local, const char* what) {
  if (world() == 1) return local;
  const torch::Tensor all = group->AllGather(local.detach(), what);
  const int64_t n = local.size(0), before = rank() * n;
  return torch::cat({all.narrow(0, 0, before), local,
                     all.narrow(0, before + n, all.size(0) - before - n)});
}

absl::StatusOr<std::string> Pretrainer::Impl::SaveCheckpoint(int64_t steps_done,
                                                             const fs::path& path) {
  const NamedTensors tensors = CollectState();
  CheckpointMeta meta;
  meta.step = steps_done;
  meta.kind = "pretrain";
  meta.config_json = opt.config_json;
  meta.seed = opt.seed;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  return WriteCheckpoint(path.string(), tensors, meta);
}

void Pretrainer::Impl::PruneCheckpoints() {
  auto all = ListStepCheckpoints(fs::path(opt.output_dir) / kCheckpointDir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(1, opt.keep_checkpoints)); i < all.size();
       ++i) {
    std::error_code ec;
    fs::remove(all[i].second, ec);
    fs::remove(all[i].second.string() + ".sha256", ec);
  }
}

Pretrainer::Impl::Batch Pretrainer::Impl::MakeBatch(int64_t t) const {
  Batch b;
  b.refs = sampler->BatchAt(t);  // the global batch; this rank's shard below
  const int64_t shard = static_cast<int64_t>(b.refs.size()) / world(), first = rank() * shard;
  std::vector<torch::Tensor> slices;
  slices.reserve(shard);
  for (int64_t i = first; i < first + shard; ++i) {
    slices.push_back(dataset->train[b.refs[i].volume].image[b.refs[i].slice]);
  }
  b.views = TwoViewAugment(torch::stack(slices), opt.augment,
                           StreamSeed(opt.seed, RngStream::kAugment, t), nullptr,
                           /*first_view=*/2 * first);
  if (placement.is_cuda()) b.views = b.views.pin_memory();
  return b;
}

Pretrainer::Impl::Batch Pretrainer::Impl::TakeBatch(int64_t t) {
  if (prefetcher == nullptr) return MakeBatch(t);
  Batch b = prefetcher->Take(t);
  if (t + 1 < end_step) prefetcher->Ahead(t + 1);
  return b;
}

double Pretrainer::Impl::Step(int64_t t, bool log, MetricsRecord* record) {
  // Phase timings (only recorded on log steps) give the step-time breakdown.
  auto mark = std::chrono::steady_clock::now();
  auto lap = [&](const char* phase) {
    if (log) placement.Synchronize();  // device time, not launch time
    const auto now = std::chrono::steady_clock::now();
    if (log) {
      record->Add("gcl_train_phase_seconds", std::chrono::duration<double>(now - mark).count(),
                  {{"phase", phase}});
    }
    mark = now;
  };
  if (group != nullptr) group->SetStep(t);
  Batch batch = TakeBatch(t);
  const std::vector<SliceRef>& refs = batch.refs;
  torch::Tensor views = placement.Input(batch.views);
  lap("data");  // with prefetching: the wait for the batch and its copy

  auto autocast = placement.Autocast();  // bf16 forward when asked; losses stay fp32
  const auto feats = encoder->forward(views);
  const torch::Tensor& f = feats.back();
  torch::Tensor v_map = head_i->forward(f);  // [N, d, h, w]
  torch::Tensor z = GatherViews(
      torch::nn::functional::normalize(v_map.mean({2, 3}),
                                       torch::nn::functional::NormalizeFuncOptions().dim(1)),
      "all_gather of image embeddings");
  torch::Tensor v, u;
  const int64_t n_sel = opt.grad_filter
                            ? PaceNumSelected(t, opt.steps, opt.pool_k, opt.pace_lambda0,
                                              opt.pace_gamma, opt.pace)
                            : opt.pool_k;
  if (opt.pixel_loss) {
    auto norm1 = torch::nn::functional::NormalizeFuncOptions().dim(1);
    v = GatherViews(torch::nn::functional::normalize(v_map.flatten(2), norm1).detach(),
                    "all_gather of pixel targets");
    u = GatherViews(torch::nn::functional::normalize(head_p->forward(f).flatten(2), norm1),
                    "all_gather of pixel embeddings");
  }
  autocast.End({&z, &v, &u});
  lap("forward");

  const int64_t m_count = num_losses();
  std::vector<torch::Tensor> losses;
  PixelLossStats pix_total;
  const bool log_s2 = opt.pixel_loss && opt.s2_every > 0 && (t + 1) % opt.s2_every == 0;
  for (int64_t m = 0; m < m_count; ++m) {
    torch::Tensor labels;
    if (!opt.meta_labels.empty()) labels = ViewLabels(refs, opt.meta_labels[m]);
    torch::Tensor loss = torch::zeros({}, views.options());
    if (opt.image_loss) {
      torch::Tensor li = ImageContrastiveLoss(z, labels, opt.tau);
      loss = loss + li;
      if (log) {
        record->Add("gcl_train_loss", li.item<double>(),
                    {{"term", absl::StrCat("image/", label_names[m])}});
      }
    }
    if (opt.pixel_loss) {
      PixelLossOptions po;
      po.pool_k = opt.pool_k;
      po.partners = opt.meta_labels.empty() ? 1 : opt.partners;
      po.tau = opt.tau;
      po.num_selected = n_sel;
      PixelLossStats ps;
      torch::Tensor lp = PixelContrastiveLoss(
          v, u, labels, po, StreamSeed(opt.seed, RngStream::kPartners, t * 16 + m),
          log ? &ps : nullptr);
      loss = loss + opt.pixel_weight * lp;
      if (log) {
        record->Add("gcl_train_loss", lp.item<double>(),
                    {{"term", absl::StrCat("pixel/", label_names[m])}});
        pix_total.mean_selected_score += ps.mean_selected_score / m_count;
        pix_total.mean_rejected_score += ps.mean_rejected_score / m_count;
        pix_total.mean_p_pos += ps.mean_p_pos / m_count;
      }
    }
    losses.push_back(loss);
  }

  lap("losses");
  if (log_s2) {
    // Periodic check that the closed-form score S1 ranks positives like the
    // exact last-layer gradient norms S2 (spec 6.2), on views 0 and 1.
    S2Options so;
    so.pool_k = opt.pool_k;
    so.tau = opt.tau;
    auto s2 = GradFilterS2Diagnostic(v, u, encoder->last_conv()->weight, 0, 1, so,
                                     StreamSeed(opt.seed, RngStream::kPartners, t * 16 + 15));
    if (s2.ok()) {
      record->Add("gcl_gradfilter_rank_correlation", s2->rank_corr);
    } else {
      std::fprintf(stderr, "warning: S2 diagnostic at step %lld: %s\n", static_cast<long long>(t + 1),
                   std::string(s2.status().message()).c_str());
    }
    lap("s2_diagnostic");
  }
  // Drop last step's gradients instead of zeroing them: the mitigated ones
  // are views into one flat buffer, which zero_grad() cannot detach.
  for (auto& p : all_params) p.mutable_grad() = torch::Tensor();
  torch::Tensor total = torch::stack(losses).mean();
  const bool per_label = m_count > 1 && (opt.combine != CombineMode::kMean || log);
  ConflictStats stats;
  if (!per_label) {
    total.backward();
    lap("backward");
    if (world() > 1) {
      std::vector<torch::Tensor> grads;
      for (const auto& p : all_params) grads.push_back(p.grad());
      torch::Tensor flat = all_layout->Flatten(grads);
      group->AllReduceSum(flat, "all_reduce of gradients");
      all_layout->Unflatten(flat, &grads);
      for (size_t i = 0; i < all_params.size(); ++i) all_params[i].mutable_grad() = grads[i];
      lap("allreduce");
    }
  } else {
    std::vector<torch::Tensor> enc_flat;
    std::vector<c10::intrusive_ptr<c10d::Work>> reduces;
    std::vector<torch::Tensor> head_sum(head_params.size());
    const size_t q_enc = encoder_params.size();
    for (int64_t m = 0; m < m_count; ++m) {
      auto grads = torch::autograd::grad({losses[m]}, all_params, {},
                                         /*retain_graph=*/m + 1 < m_count,
                                         /*create_graph=*/false, /*allow_unused=*/true);
      std::vector<torch::Tensor> enc(grads.begin(), grads.begin() + q_enc);
      enc_flat.push_back(layout->Flatten(enc));
      // Runs on the process group's threads while label m+1's backward runs.
      if (world() > 1) reduces.push_back(group->StartAllReduceSum(enc_flat.back()));
      for (size_t h = 0; h < head_params.size(); ++h) {
        const auto& g = grads[q_enc + h];
        if (!g.defined()) continue;
        head_sum[h] = head_sum[h].defined() ? head_sum[h] + g : g;
      }
    }
    lap("backward");
    if (world() > 1) {
      for (int64_t m = 0; m < m_count; ++m) {
        group->Wait(reduces[m], absl::StrCat("all_reduce of the ", label_names[m], " gradient"));
      }
      torch::Tensor heads = head_layout->Flatten(head_sum);
      group->AllReduceSum(heads, "all_reduce of head gradients");
      head_layout->Unflatten(heads, &head_sum);
      lap("allreduce");
    }
    torch::Tensor combined;
    switch (opt.combine) {
      case CombineMode::kMean:
        combined = MeanCombine(enc_flat, *layout, &stats);
        break;
      case CombineMode::kGradMitigator:
        combined = mitigator->Combine(enc_flat, StreamSeed(opt.seed, RngStream::kMitigator, t),
                                      &stats);
        break;
      case CombineMode::kPCGrad:
        combined = PCGradCombine(enc_flat, *layout, opt.pcgrad_per_tensor,
                                 StreamSeed(opt.seed, RngStream::kMitigator, t), &stats);
        break;
    }
    lap("combine");
    std::vector<torch::Tensor> enc_grads;
    layout->Unflatten(combined, &enc_grads);
    for (size_t q = 0; q < q_enc; ++q) encoder_params[q].mutable_grad() = enc_grads[q];
    for (size_t h = 0; h < head_params.size(); ++h) {
      if (head_sum[h].defined()) head_params[h].mutable_grad() = head_sum[h] / m_count;
    }
    AccumulateConflictTotals(stats, &conflict_totals);
  }
  const double lr_t = CosineLr(opt.lr, t, opt.steps, opt.cosine);
  for (auto& group : optimizer->param_groups()) {
    static_cast<torch::optim::SGDOptions&>(group.options()).lr(lr_t);
  }
  optimizer->step();
  const double loss_value = total.item<double>();
  lap("optimizer");

  if (log) {
    record->Add("gcl_train_loss", loss_value, {{"term", "total"}});
    record->Add("gcl_train_lr", lr_t);
    if (opt.pixel_loss && opt.grad_filter) {
      record->Add("gcl_gradfilter_selected", static_cast<double>(n_sel));
      record->Add("gcl_gradfilter_score", pix_total.mean_selected_score, {{"set", "selected"}});
      if (n_sel < opt.pool_k) {
        record->Add("gcl_gradfilter_score", pix_total.mean_rejected_score, {{"set", "rejected"}});
      }
    }
    if (opt.pixel_loss) record->Add("gcl_pixel_positive_probability", pix_total.mean_p_pos);
    AddConflictSamples(stats, label_names, conflict_totals, mitigator != nullptr, record);
  }
  return loss_value;
}

Pretrainer::Pretrainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pretrainer::~Pretrainer() = default;

absl::StatusOr<std::unique_ptr<Pretrainer>> Pretrainer::Create(const Dataset& dataset,
                                                                PretrainOptions options,
                                                                DataParallelGroup* group) {
  auto impl = std::make_unique<Impl>();
  impl->dataset = &dataset;
  impl->group = group;
  impl->opt = std::move(options);
  GCL_RETURN_IF_ERROR(CatchToStatus("pre-training setup", [&] { return impl->Init(); }));
  return std::unique_ptr<Pretrainer>(new Pretrainer(std::move(impl)));
}

absl::StatusOr<PretrainResult> Pretrainer::Run(const PretrainCallbacks& callbacks) {
  Impl& im = *impl_;
  const PretrainOptions& opt = im.opt;
  PretrainResult result;
  result.resumed_from = im.start_step;
  const fs::path out(opt.output_dir);
  MetricsWriter writer = MetricsWriter::Open("").value();
  if (!opt.output_dir.empty()) {
    // Steps logged after the checkpoint we resume from will be redone.
    GCL_RETURN_IF_ERROR(TruncateMetricsAfter((out / "metrics.jsonl").string(), im.start_step));
    GCL_ASSIGN_OR_RETURN(writer, MetricsWriter::Open((out / "metrics.jsonl").string()));
  }
  const auto run_start = std::chrono::steady_clock::now();
  std::vector<double> window;
  bool first_window_done = false;
  const int64_t end = opt.stop_after_step >= 0 ? std::min(opt.steps, opt.stop_after_step) : opt.steps;
  im.end_step = end;
  int64_t t = im.start_step;
  absl::Status status = CatchToStatus("pre-training", [&]() -> absl::Status {
    for (; t < end; ++t) {
      // The S2 diagnostic's steps are always logged (see Impl::Step).
      const bool log = (opt.log_every > 0 && ((t + 1) % opt.log_every == 0 || t + 1 == opt.steps)) ||
                       (opt.pixel_loss && opt.s2_every > 0 && (t + 1) % opt.s2_every == 0);
      MetricsRecord record;
      const auto t0 = std::chrono::steady_clock::now();
      const double loss = im.Step(t, log, &record);
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (!std::isfinite(loss)) {
        return absl::InternalError(absl::StrCat("loss is not finite at step ", t + 1,
                                                " (lower train.lr or check the data)"));
      }
      window.push_back(loss);
      if (!first_window_done && static_cast<int64_t>(window.size()) >= std::max<int64_t>(1, opt.log_every)) {
        double s = 0;
        for (double w : window) s += w;
        result.first_loss = s / window.size();
        first_window_done = true;
      }
      if (log) {
        record.step = t + 1;
        record.time = std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
        record.Add("gcl_train_steps_total", static_cast<double>(t + 1));
        record.Add("gcl_train_step_seconds", secs);
        record.Add("gcl_train_samples_per_second", 2.0 * opt.batch / std::max(secs, 1e-9));
        GCL_RETURN_IF_ERROR(writer.Write(record));
      }
      if (callbacks.on_step) callbacks.on_step(t + 1, opt.steps, loss, secs, record);
      const bool ckpt_due = opt.checkpoint_every > 0 && (t + 1) % opt.checkpoint_every == 0;
      if (!opt.output_dir.empty() && (ckpt_due || t + 1 == opt.steps)) {
        const fs::path path = out / kCheckpointDir / StepCheckpointName(t + 1);
        GCL_ASSIGN_OR_RETURN(std::string sha, im.SaveCheckpoint(t + 1, path));
        im.PruneCheckpoints();
        if (callbacks.on_checkpoint) callbacks.on_checkpoint(path.string(), t + 1, sha);
      }
    }
    return absl::OkStatus();
  });
  GCL_RETURN_IF_ERROR(status);
  result.steps_done = t;
  const size_t tail = std::min<size_t>(window.size(), std::max<int64_t>(1, opt.log_every));
  if (tail > 0) {
    double s = 0;
    for (size_t i = window.size() - tail; i < window.size(); ++i) s += window[i];
    result.last_loss = s / tail;
    if (!first_window_done) result.first_loss = result.last_loss;
  }
  if (!opt.output_dir.empty() && t == opt.steps) {
    result.final_checkpoint = (out / kCheckpointDir / StepCheckpointName(t)).string();
    // The encoder alone, in the safetensors layout, for Python users.
    std::vector<std::pair<std::string, torch::Tensor>> enc;
    AppendModuleState("encoder.", *im.encoder, &enc);
    result.encoder_safetensors = (out / "encoder.safetensors").string();
    GCL_RETURN_IF_ERROR(WriteSafetensors(
        result.encoder_safetensors, enc,
        {{"format", "gcl-unet-encoder"},
         {"base", std::to_string(opt.model.base)},
         {"depth", std::to_string(opt.model.depth)},
         {"step", std::to_string(t)}}));
  }
  return result;
}

torch::Tensor Pretrainer::FlatState() const {
  std::vector<torch::Tensor> parts;
  for (const auto* mod : std::initializer_list<const torch::nn::Module*>{
           impl_->encoder.get(), impl_->head_i.get(), impl_->head_p.get()}) {
    for (const auto& p : mod->parameters()) parts.push_back(p.detach().reshape(-1));
    for (const auto& b : mod->buffers()) parts.push_back(b.detach().reshape(-1).to(torch::kFloat));
  }
  return torch::cat(parts).to(torch::kCPU);
}

}  // namespace gcl::core
