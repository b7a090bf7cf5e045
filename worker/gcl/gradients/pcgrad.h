// Baseline gradient combiners (spec 9): PCGrad (Yu et al. 2020) and the naive
// mean (Eq. 2), with the same conflict statistics as GradMitigator.
#pragma once

#include <ATen/ATen.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "worker/gcl/gradients/conflict_stats.h"
#include "worker/gcl/gradients/grad_layout.h"

namespace gcl::core {

// The visiting order of the other labels for every m, shared by all combiners
// so that PCGrad and GradMitigator(β = 0) see the same order for the same
// seed: orders[m] is a permutation of {0..M-1} \ {m}, drawn by Fisher-Yates
// from one std::mt19937_64(seed) (m = 0 first). Platform independent.
std::vector<std::vector<int>> PartnerOrders(int64_t num_labels, uint64_t seed);

// PCGrad: for each m, g'_m = g_m; for m' in PartnerOrders: if g'_m · g_m' < 0,
// g'_m -= (g'_m · g_m') / ‖g_m'‖² g_m' (projection onto the normal plane of the
// ORIGINAL g_m'). Returns ĝ = (1/M) Σ_m g'_m, float32 [numel].
// per_tensor = false: the whole buffer is one block (spec 9 default);
// true: each tensor of `layout` separately. Blocks with a norm < 1e-12 are
// skipped. grads: M flat float32 buffers [layout.numel()].
torch::Tensor PCGradCombine(const std::vector<torch::Tensor>& grads, const GradLayout& layout,
                            bool per_tensor, uint64_t permutation_seed,
                            ConflictStats* stats = nullptr);

// Naive mean ĝ = (1/M) Σ_m g_m (Eq. 2). Stats: g'_m = g_m, so
// cos_post == cos_pre, nothing modified; categories use φ̂ = 0 per tensor.
torch::Tensor MeanCombine(const std::vector<torch::Tensor>& grads, const GradLayout& layout,
                          ConflictStats* stats = nullptr);

}  // namespace gcl::core
