// The GCL pre-training loop (algorithm spec 7.5): one forward of all views,
// one loss per meta label (image-wise eq. 1 + pixel-wise eq. 5 with
// GradFilter), per-label encoder gradients combined by GradMitigator
// (eqs. 3-4), PCGrad or the mean (eq. 2), then SGD + momentum with a cosine
// schedule. Checkpoints make a resumed run continue bit for bit (see
// docs/core-design.md, "Determinism and exact resume").
#pragma once

#include <cstdint>
#include <optional>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/gcl/data/augment.h"
#include "worker/gcl/data/dataset.h"
#include "worker/gcl/data/meta_labels.h"
#include "worker/gcl/dist/data_parallel_group.h"
#include "worker/gcl/gradients/grad_mitigator.h"
#include "worker/gcl/losses/grad_filter.h"
#include "worker/gcl/model/unet.h"
#include "worker/gcl/train/device_placement.h"
#include "worker/gcl/train/metrics_writer.h"

namespace gcl::core {

enum class CombineMode { kMean, kGradMitigator, kPCGrad };

struct PretrainOptions {
  UNetOptions model;
  int64_t proj_dim = 128;

  // Meta labels with their own loss. Empty: a single label-free loss
  // (NT-Xent image loss, and two-view-only pixel loss): "simclr"/"pixcl".
  std::vector<MetaLabel> meta_labels;
  bool image_loss = true;
  bool pixel_loss = false;
  double pixel_weight = 1.0;  // lambda_P (eq. 9)
  double tau = 0.1;
  int64_t pool_k = 10;
  int64_t partners = 4;        // S (spec 5.1); 1 = the other view only
  bool grad_filter = false;    // eq. 8 pace; off: all k pool members
  Pace pace = Pace::kLinear;
  double pace_lambda0 = 0.2;
  double pace_gamma = 1.0;
  int64_t s2_every = 0;        // steps between S1-vs-S2 rank checks (0: never)
  // Data-parallel runs: SyncBatchNorm2d over all ranks (the 1-process
  // result); false: per-rank BN statistics, which avoids one collective per
  // BN layer in forward and in each label's backward.
  bool sync_batch_norm = true;

  CombineMode combine = CombineMode::kMean;
  GradMitigatorOptions mitigator;
  bool pcgrad_per_tensor = false;
  // Heads always get the plain mean of the per-label gradients (spec 7.5).

  int64_t steps = 1000;
  int64_t batch = 32;  // slices; 2 views each
  double lr = 0.1;
  double momentum = 0.9;
  double weight_decay = 1e-5;
  bool cosine = true;
  uint64_t seed = 1;
  int64_t threads = 0;  // 0 = all cores
  // Device, bf16 autocast and channels-last (device_placement.h). The default,
  // CPU fp32 channels-last, is what the tests pin.
  DeviceOptions device;
  // Make the next step's batch (sampling and augmentation, on the CPU) on a
  // second thread while this step trains. Unset: on when training on CUDA,
  // where the data phase was 23-29% of a step on an H200 (docs/gpu.md); on
  // the CPU the second thread would compete with the step for the cores.
  // Either way the batches, and so the results, are the same.
  std::optional<bool> prefetch;

  int64_t log_every = 10;
  int64_t checkpoint_every = 100;
  int64_t keep_checkpoints = 2;  // newest N step checkpoints kept on disk
  TwoViewAugmentOptions augment;

  // Run folder: checkpoints/step-XXXXXXXX.ckpt (+ .sha256), final.ckpt,
  // encoder.safetensors, metrics.jsonl. A run folder with checkpoints is
  // resumed from its newest valid checkpoint.
  std::string output_dir;
  std::string config_json;  // stored in checkpoints for provenance
  // Test hook: return after this many steps as if killed (-1: run to `steps`).
  int64_t stop_after_step = -1;
};

struct PretrainCallbacks {
  // Every step; `record` holds the full metrics only on log steps.
  std::function<void(int64_t step, int64_t total, double loss, double step_seconds,
                     const MetricsRecord& record)>
      on_step;
  std::function<void(const std::string& path, int64_t step, const std::string& sha256)>
      on_checkpoint;
};

struct PretrainResult {
  int64_t steps_done = 0;    // the last completed step (1-based count)
  int64_t resumed_from = 0;  // step of the checkpoint resumed from (0: fresh)
  double first_loss = 0;     // mean loss over the first logged window of this process
  double last_loss = 0;      // mean loss over the last logged window
  std::string final_checkpoint;
  std::string encoder_safetensors;
};

// Data parallelism (`group` with world size W > 1): every rank runs this same
// loop on its contiguous 1/W shard of the global batch (sampler batch and
// augmentation as one process would draw them) with SyncBatchNorm2d in the
// encoder. Embeddings are all-gathered so each rank evaluates the global
// losses, with gradient flowing only into its own rows; the per-label encoder
// gradients (one flat buffer each, started while the next label's backward
// runs) and the summed head gradients are all-reduced, so every rank combines
// the same global gradients with the same seed and applies the same update.
// Rank 0 alone reads and writes output_dir; it broadcasts its state (fresh or
// resumed) to the other ranks before the first step.
class Pretrainer {
 public:
  // `group` (may be null: one process) must outlive the Pretrainer.
  // kInvalidArgument when batch is not a multiple of the world size.
  static absl::StatusOr<std::unique_ptr<Pretrainer>> Create(const Dataset& dataset,
                                                            PretrainOptions options,
                                                            DataParallelGroup* group = nullptr);
  ~Pretrainer();

  absl::StatusOr<PretrainResult> Run(const PretrainCallbacks& callbacks = {});

  // Flat copy of all encoder + head parameters and buffers (tests compare runs).
  torch::Tensor FlatState() const;

  struct Impl;

 private:
  explicit Pretrainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Number of threads to use when `requested` is 0 (all cores).
int64_t ResolveThreads(int64_t requested);

}  // namespace gcl::core
