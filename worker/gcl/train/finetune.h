// Fine-tuning of a U-Net on M_lab labelled volumes and 3D evaluation
// (algorithm spec 8 "Fine-tuning" table, 8.1 Dice).
//
// Labelled subset (GLCL's protocol, spec 2.1): M_lab counts PATIENTS (cases):
// all labelled train volumes of a chosen case are used (ACDC: its ED and ES
// volumes; one-volume-per-case datasets: exactly M_lab volumes). The cases
// are the distinct Volume::case_id of dataset.train with a label, sorted; a
// permutation seeded by StreamSeed(seed, kFinetune, 2^62 + repeat) is drawn
// and its first M_lab cases are labelled, so subsets are nested in M_lab and
// differ across repeats. labeled_volumes <= 0 means every train case (the
// "fully supervised" row).
//
// One step: `batch` slices drawn uniformly WITH replacement from all slices of
// the labelled volumes, FinetuneAugment (spec 2.5), loss (CE + soft Dice over
// the foreground classes, 1:1; or CE only), Adam (0.9/0.999, L2 weight decay),
// LR cosine from lr to lr_min per iteration:
//   lr(t) = lr_min + (lr - lr_min) (1 + cos(pi t / steps)) / 2, t = 0..steps-1.
// Every val_every steps and after the last step, the spec-8.1 3D Dice on
// dataset.val (mean over volumes of the per-volume class mean) selects the
// weights; strictly better replaces, so ties keep the earlier step. Without
// val volumes the final weights are used (best_step = steps, best_val_dice
// NaN). The test set is scored once, with the selected weights.
//
// Random streams: with r = StreamSeed(seed, kFinetune, repeat): weights init
// StreamSeed(r, kInit, 0) (the U-Net initialiser uses the global torch RNG,
// which is seeded from it), slice draw StreamSeed(r, kSampler, t),
// augmentation StreamSeed(r, kAugment, t). Same options and threads -> the
// same result bit for bit.
//
// output_dir (optional; created): best.ckpt (kind "finetune", tensors
// "encoder.*" and "decoder.*" so it can also serve as an init_checkpoint),
// summary.json (test set, eval/summary.h), metrics.jsonl (per step:
// gcl_finetune_loss, gcl_finetune_lr, gcl_finetune_step_seconds; at
// validation gcl_finetune_val_dice), finetune.json (labelled ids, selection,
// headline numbers).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/gcl/data/augment.h"
#include "worker/gcl/data/dataset.h"
#include "worker/gcl/data/volume.h"
#include "worker/gcl/eval/dice.h"
#include "worker/gcl/model/unet.h"
#include "worker/gcl/train/device_placement.h"

namespace gcl::core {

struct FinetuneOptions {
  UNetOptions model;  // num_classes must equal dataset.num_classes()
  // Empty: random init. Else a pre-training (or fine-tuning) checkpoint whose
  // "encoder.<name>" tensors (parameters and buffers) are loaded into
  // model->encoder; anything else in it (heads, optimizer) is ignored.
  std::string init_checkpoint;
  // Spec 8 "frozen": encoder requires_grad = false and its BN in eval mode
  // (running statistics untouched); only the decoder trains.
  bool frozen_encoder = false;
  int64_t labeled_volumes = 1;  // M_lab, in cases (see above); <= 0: all
  int64_t repeat = 0;           // which labelled subset / seed
  int64_t steps = 2000;         // 0: no training (evaluates the init weights)
  int64_t batch = 10;
  double lr = 1e-3;
  double lr_min = 1e-5;
  double weight_decay = 1e-5;
  std::string loss = "ce_dice";  // "ce_dice" | "ce"
  int64_t val_every = 500;       // <= 0: validate after the last step only
  uint64_t seed = 1;
  int64_t threads = 0;  // 0 = all cores
  // Device and bf16 autocast (device_placement.h); channels-last applies on
  // CUDA only (the CPU results, pinned by the tests, are NCHW).
  DeviceOptions device;
  FinetuneAugmentOptions augment;
  bool augment_enabled = true;
  bool test_hd95 = true;  // HD95 on the test set (Dice only at validation)
  std::string output_dir;
};

struct FinetuneResult {
  std::vector<VolumeScore> test_cases;  // case_id = Volume::id
  std::vector<double> per_class_dice;   // foreground class c at c-1, mean over test volumes
  double mean_dice = 0;                 // spec 8.1: classes, then volumes
  double mean_hd95 = 0;                 // same protocol; NaN when none valid
  std::string hd95_unit;                // "mm", "voxel", or "mixed"
  double best_val_dice = 0;
  int64_t best_step = 0;
  std::vector<std::string> labeled_ids;  // Volume::id of the labelled volumes
  double accumulated_dice = 0;           // PCL's dataset-level Dice on the test set
  double first_loss = 0;                 // mean loss of the first min(10, steps) steps
  double last_loss = 0;                  // mean loss of the last min(10, steps) steps
  std::string best_checkpoint;           // output_dir/best.ckpt, or empty
};

// Called every step with (1-based step, loss, lr, seconds) and at
// validation with the val Dice; each may be null.
struct FinetuneCallbacks {
  std::function<void(int64_t step, double loss, double lr, double step_seconds)> on_step;
  std::function<void(int64_t step, double val_dice)> on_validate;
};

// Errors: kInvalidArgument for bad options (unknown loss, class count
// mismatch, M_lab larger than the labelled train cases, no labelled volume),
// kNotFound / kDataLoss from the init checkpoint, kInternal for LibTorch
// exceptions. Sets at::set_num_threads.
absl::StatusOr<FinetuneResult> RunFinetune(const Dataset& dataset, const FinetuneOptions& options,
                                           const FinetuneCallbacks& callbacks = {});

// The labelled volumes (indices into dataset.train) for these options.
absl::StatusOr<std::vector<size_t>> SelectLabeledVolumes(const Dataset& dataset,
                                                         const FinetuneOptions& options);

// Predicts every slice of each labelled volume (2D, argmax over classes, in
// chunks of 16 slices, on the model's device, fp32), stacks to [S, H, W] on
// the CPU and scores it (ScoreVolume with
// the volume's spacing); case_id = Volume::id. Unlabelled volumes are
// skipped. Leaves the model in eval mode. Throws c10::Error on misuse.
std::vector<VolumeScore> EvaluateVolumes(UNet& model, const std::vector<Volume>& volumes,
                                         int64_t num_classes, bool compute_hd95);

// The cosine learning rate of step t (0-based) of `steps`.
double FinetuneLr(const FinetuneOptions& options, int64_t t);

}  // namespace gcl::core
