// Defaults and range/consistency checks for gcl.v1.JobSpec.
//
// ApplyDefaults then ValidateJobSpec is what ParseJobSpecYaml does after the
// schema walk; programmatic clients (gRPC SubmitJob) call the same two.
#pragma once

#include <map>
#include <string>

#include "absl/status/status.h"
#include "gcl/v1/spec.pb.h"

namespace gcl::spec {

// Fills every unset field (idempotent):
// * method: variant `full` for pretrain when unset; the variant preset
//   (variants.h) for image/pixel/combine/grad_filter/partners when a variant
//   is set; always tau 0.1, pool_k 10, ema_beta 0.01, ema_update always,
//   pixel_weight 1, pace linear, pace_lambda0 0.2, pace_gamma 1.0,
//   granularity per_tensor, and partners 4 when a variant is set
//   (algorithm spec sections 8, 13).
// * meta_labels (pretrain only, when empty): the variant's; the dataset's
//   default is patient, position (+ phase for acdc/acdc-h5/synthetic).
// * dataset: image_size 96; val_cases 2, test_cases 2; synthetic patients 12,
//   slices 8, size = image_size, seed 1 (synthetic format only).
// * model: base_width 16, depth 5, proj_dim 128.
// * train (pretrain: spec.train; experiment: experiment.pretrain), pretrain:
//   steps 10000, batch 32, sgd lr 0.1 -> lr_min 0, momentum 0.9, wd 1e-5,
//   cosine; fine-tuning (finetune: spec.train; experiment:
//   experiment.finetune): steps 10000, batch 10, adam lr 1e-3 -> lr_min 1e-5,
//   momentum 0.9, wd 1e-5, cosine, loss ce_dice. Both: seed 1,
//   checkpoint_every 100, log_every 10, val_every 500; threads 0 = all cores.
// * repeats 1 (finetune, experiment); max_attempts 3;
//   resources devices 1, nodes 1, devices_per_node devices/nodes, device_type auto.
// Error: kInvalidArgument "kind: required ..." when kind is unset (the
// defaults depend on it).
absl::Status ApplyDefaults(gcl::v1::JobSpec* spec);

// Range and consistency checks; the first failure is returned as
// kInvalidArgument "<line>:<col>: <dotted.key>: <what>", where "<line>:<col>"
// is where[key] (or where[parent key] for a key that was not written) and is
// left out when neither is known (programmatic specs pass an empty map).
// Only fields that are set are range-checked, so it also accepts a spec
// before ApplyDefaults. Checks include: kind and dataset.format set;
// dataset.path unless synthetic; image_size in [16, 1024] and divisible by
// 2^(depth-1); depth in [2, 7]; base_width in [1, 512]; steps >= 1; batch
// >= 1 and, for pre-training, divisible by 8 with the phase meta label (4
// positions x 2 phases) else by 4; lr > 0; tau in (0, 10]; pool_k in
// [1, 4096]; partners >= 1; ema_beta in [0, 1]; pace_lambda0 in (0, 1];
// pace_gamma > 0; labeled_volumes each >= 1; repeats >= 1; max_attempts in
// [1, 100]; threads >= 0; phase only with acdc/acdc-h5/synthetic; finetune
// needs init and labeled_volumes; experiment needs variants and labeled_volumes; keys of other
// kinds are rejected (e.g. init in a pretrain job).
absl::Status ValidateJobSpec(const gcl::v1::JobSpec& spec,
                             const std::map<std::string, std::string>& where = {});

}  // namespace gcl::spec
