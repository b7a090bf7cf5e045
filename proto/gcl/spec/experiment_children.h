// An experiment spec's child jobs: one pre-training per variant (none for
// random_init; full_frozen shares full's) and the fine-tuning runs over it.
// Used by gcl-train experiment (one process) and the coordinator (child jobs).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "gcl/v1/spec.pb.h"

namespace gcl::spec {

// The child jobs of an experiment spec (defaults applied), each passed
// through gcl::spec::ApplyDefaults and ValidateJobSpec.
// Pre-training: kind pretrain, method.variant = `variant` (full for
// full_frozen), train = experiment.pretrain. The experiment's meta_labels are
// kept only for variants that use all labels (multi_*, full*).
absl::StatusOr<gcl::v1::JobSpec> PretrainChildSpec(const gcl::v1::JobSpec& experiment,
                                                   gcl::v1::Variant variant);
// Fine-tuning: kind finetune, method.variant = `variant`, train =
// experiment.finetune, init = random (random_init) or {checkpoint:
// init (gcl-train: a checkpoint path; the coordinator: the pretrain child's
// job id)}; frozen_encoder for full_frozen.
absl::StatusOr<gcl::v1::JobSpec> FinetuneChildSpec(const gcl::v1::JobSpec& experiment,
                                                   gcl::v1::Variant variant,
                                                   const gcl::v1::Init& init);

}  // namespace gcl::spec
