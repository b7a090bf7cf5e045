// gcl-train's commands over a parsed job spec: maps the protobuf JobSpec onto
// the core's option structs and runs pre-training, fine-tuning or a check.
// This is the only place where the wire schema meets LibTorch.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gcl/v1/spec.pb.h"
#include "worker/gcl/data/dataset.h"
#include "worker/gcl/train/finetune.h"
#include "worker/gcl/train/metrics_writer.h"
#include "worker/gcl/train/pretrain.h"

namespace gcl::trainer {

struct RunFlags {
  std::string spec_path;     // the YAML file; relative dataset paths resolve against its folder
  std::string metrics_path;  // --metrics: JSONL copy of the per-step metrics ("" = none)
  std::string output_dir;    // --output: overrides spec.output.dir
  int64_t threads = -1;      // --threads: overrides spec.train.threads when >= 0 (0 = all cores)
  bool quiet = false;        // no progress line
};

// Option mapping (exposed for tests).
absl::StatusOr<core::DatasetOptions> DatasetOptionsFromSpec(const gcl::v1::JobSpec& spec,
                                                            const std::string& spec_dir);
absl::StatusOr<core::PretrainOptions> PretrainOptionsFromSpec(const gcl::v1::JobSpec& spec);
absl::StatusOr<core::FinetuneOptions> FinetuneOptionsFromSpec(const gcl::v1::JobSpec& spec,
                                                              const std::string& spec_dir);

// A checkpoint file, or a run folder (its newest step checkpoint).
absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path);

// The per-run steps of the commands, callable with an in-memory spec (the
// experiment command runs many of them over one loaded dataset).
//
// Loads the dataset `spec` names (relative paths resolve against spec_dir)
// and prints its size.
absl::StatusOr<core::Dataset> LoadSpecDataset(const gcl::v1::JobSpec& spec,
                                              const std::string& spec_dir);
// One pre-training run of `spec` (kind pretrain, defaults applied, not
// random_init) on `data` into output_dir; resumes from the checkpoints there.
// metrics_path: an extra JSONL copy of the metrics ("" = none). group: this
// rank's data-parallel job (null: one process).
absl::StatusOr<core::PretrainResult> RunPretrainJob(const gcl::v1::JobSpec& spec,
                                                    const core::Dataset& data,
                                                    const std::string& output_dir,
                                                    const std::string& metrics_path, bool quiet,
                                                    core::DataParallelGroup* group = nullptr);
// One fine-tuning run with a progress line; every 10th step's loss also goes
// to `extra` (may be null) labelled with options.labeled_volumes.
absl::StatusOr<core::FinetuneResult> RunFinetuneJob(const core::Dataset& data,
                                                    const core::FinetuneOptions& options,
                                                    core::MetricsWriter* extra, bool quiet);

// The commands. Each prints a short report to stdout and returns the first error.
absl::Status RunPretrainCommand(const RunFlags& flags);
absl::Status RunFinetuneCommand(const RunFlags& flags);
// Parses the spec, checks it, and loads the dataset (no training).
absl::Status RunValidateCommand(const RunFlags& flags);

}  // namespace gcl::trainer
