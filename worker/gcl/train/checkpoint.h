// Training checkpoints: a safetensors-layout file (so Python can read it
// without pickle) holding named tensors plus run metadata, written atomically
// with a sha256sum-format sidecar, and verified before it is read. Helpers
// move module and optimizer state in and out bit-exactly, so a resumed run
// continues exactly (core-design "Determinism and exact resume").
#pragma once

#include <torch/nn/module.h>
#include <torch/optim/optimizer.h>
#include <torch/types.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl::core {

struct CheckpointMeta {
  int64_t step = 0;         // optimizer steps completed
  std::string kind;         // "pretrain" | "finetune"
  std::string config_json;  // the run's resolved configuration, for provenance
  uint64_t seed = 0;        // run seed (all random streams derive from it)
};

// Writes `tensors` (names unique; callers prefix model/optimizer/EMA state)
// and `meta` to `path`: path.tmp, fsync, rename, fsync(dir); then writes
// path.sha256 ("<hex>  <file name>\n", sha256sum format) the same way.
// Returns the hex digest. The file is a valid safetensors file whose
// __metadata__ holds gcl.format = "gcl-checkpoint-v1", gcl.step, gcl.kind,
// gcl.seed (decimal) and gcl.config_json.
// kInvalidArgument for duplicate names or unsupported dtypes; I/O errors as
// kNotFound / kPermissionDenied / kResourceExhausted / kInternal.
absl::StatusOr<std::string> WriteCheckpoint(
    const std::string& path, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
    const CheckpointMeta& meta);

struct LoadedCheckpoint {
  CheckpointMeta meta;
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  // CPU, write order
  std::string sha256;
};

// Verifies the file against its sha256 sidecar, then parses it. kDataLoss
// naming `path` for a missing or malformed sidecar, a digest mismatch
// (truncation, flipped bytes) or an invalid file; kNotFound when `path`
// itself is missing.
absl::StatusOr<LoadedCheckpoint> ReadCheckpoint(const std::string& path);

// Appends CPU copies of all parameters AND buffers (BN running stats,
// num_batches_tracked) of `module`, recursively, as prefix + dotted name.
void AppendModuleState(const std::string& prefix, const torch::nn::Module& module,
                       std::vector<std::pair<std::string, torch::Tensor>>* out);

// Copies prefix + name tensors of `ckpt` into the parameters and buffers of
// `module` (on their device). Checks everything first: kInvalidArgument
// listing every missing tensor and every dtype/shape mismatch, and then
// nothing is changed. Tensors of ckpt outside the module are ignored.
absl::Status RestoreModuleState(const std::string& prefix, const LoadedCheckpoint& ckpt,
                                torch::nn::Module* module);

// Appends the optimizer state under `prefix`, indexing parameters k = 0, 1,
// ... over all param groups in order:
//   prefix "num_params"                          int64 scalar
//   prefix "group.<g>.lr"                        float64 scalar
//   prefix "state.<k>.momentum_buffer"           SGD, when it exists
//   prefix "state.<k>.step|exp_avg|exp_avg_sq[|max_exp_avg_sq]"  Adam/AdamW
// Supports SGD, Adam and AdamW (throws c10::Error for other state types).
void AppendOptimizerState(const std::string& prefix, torch::optim::Optimizer& opt,
                          std::vector<std::pair<std::string, torch::Tensor>>* out);

// Restores what AppendOptimizerState wrote into `opt` (same parameter order
// and shapes; state tensors are copied to each parameter's device).
// Parameters without saved state get none (as a fresh optimizer).
// kInvalidArgument on a count/shape/dtype mismatch or missing entry (nothing
// changed then); kUnimplemented for optimizers other than SGD/Adam/AdamW.
absl::Status RestoreOptimizerState(const std::string& prefix, const LoadedCheckpoint& ckpt,
                                   torch::optim::Optimizer* opt);

}  // namespace gcl::core
