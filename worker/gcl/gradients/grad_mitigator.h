// GradMitigator (spec 7.3-7.5, Eqs. 3-4): per meta label m, inject the other
// labels' gradients into g_m until each per-tensor cosine reaches its EMA
// target, then average. PCGrad is the special case β = 0, φ̂ ≡ 0.
#pragma once

#include <ATen/ATen.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "worker/gcl/gradients/conflict_stats.h"
#include "worker/gcl/gradients/grad_layout.h"

namespace gcl::core {

// When the EMA target moves (spec 7.4): every visited (m, m', q) with the φ
// measured before the injection (GradVac paper, TorchJD: default), or only
// when an injection happens (LibMTL).
enum class EmaUpdate { kAlways, kOnModify };

// kPerTensor: every layout tensor separately (spec default, [P]);
// kWholeModel: the whole flat buffer as one block (GradVac's "all").
enum class Granularity { kPerTensor, kWholeModel };

struct GradMitigatorOptions {
  double beta = 0.01;  // EMA weight β of Eq. 4
  EmaUpdate ema_update = EmaUpdate::kAlways;
  Granularity granularity = Granularity::kPerTensor;
};

class GradMitigator {
 public:
  // Norm below which a block is skipped (no injection, no EMA update).
  static constexpr double kMinNorm = 1e-12;
  // ε in the denominator of Eq. 3 (as in shared/reference/gcl_step.py).
  static constexpr double kEps = 1e-12;
  // EMA targets are clamped to [-1 + kClamp, 1 - kClamp].
  static constexpr double kClamp = 1e-6;

  // REQUIRES: num_labels >= 1; 0 <= options.beta <= 1.
  GradMitigator(int64_t num_labels, GradLayout layout, GradMitigatorOptions options);

  // grads: M = num_labels flat float32 buffers [layout.numel()] on one device
  // (GradLayout::Flatten). Returns ĝ = (1/M) Σ_m g'_m, float32 [numel], same
  // device. For each m, the other labels m' are visited in a fresh random order
  // (PartnerOrders(M, permutation_seed), one order for all tensors). Blocks
  // where ‖g'_m[q]‖ or ‖g_m'[q]‖ < kMinNorm are skipped. Targets start at 0.
  // Fills *stats (spec 11) when non-null. Throws c10::Error on shape misuse.
  //
  // Cost: one pass of M(M+1)/2 dots per tensor (TensorGram), scalar work on
  // [Q, M, M] doubles on the host, one pass for ĝ (BlockLinearCombination).
  torch::Tensor Combine(const std::vector<torch::Tensor>& grads, uint64_t permutation_seed,
                        ConflictStats* stats = nullptr);

  // EMA targets φ̂, float64 CPU [M, M, Q] (Q = 1 for kWholeModel); entry
  // [m, m', q] is the target of m against m' (the diagonal stays 0).
  const torch::Tensor& targets() const { return targets_; }
  // Restores targets (checkpoint resume). kInvalidArgument on a shape mismatch
  // or non-finite values.
  absl::Status SetTargets(const torch::Tensor& targets);

  int64_t num_labels() const { return num_labels_; }
  int64_t num_blocks() const { return static_cast<int64_t>(block_sizes_.size()); }
  const GradLayout& layout() const { return layout_; }
  const GradMitigatorOptions& options() const { return options_; }

 private:
  int64_t num_labels_;
  GradLayout layout_;
  GradMitigatorOptions options_;
  std::vector<int64_t> block_offsets_, block_sizes_;  // the granularity's blocks
  torch::Tensor targets_;                             // float64 CPU [M, M, Q]
};

}  // namespace gcl::core
