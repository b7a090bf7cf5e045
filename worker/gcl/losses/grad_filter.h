// GradFilter (spec 6): the closed-form gradient of one positive's term w.r.t.
// the anchor (Eq. 7), the S1 ranking score built on it, the pace function
// (Eq. 8) and the exact S2 diagnostic with its Spearman correlation to S1.
#pragma once

#include <cstdint>

#include <torch/types.h>  // torch::Tensor (ATen + the torch namespace alias)

#include "absl/status/statusor.h"

namespace gcl::core {

enum class Pace { kLinear, kRoot };

// Eq. 8: n(t) = min(k, max(1, ceil(k * (lambda0 + (1 - lambda0) * r)))),
// r = min(1, t / (gamma T)); kRoot uses sqrt(r). total_steps <= 0 or
// gamma <= 0 gives r = 1 (n = k). REQUIRES k >= 1.
int64_t PaceNumSelected(int64_t step, int64_t total_steps, int64_t k, double lambda0 = 0.2,
                        double gamma = 1.0, Pace pace = Pace::kLinear);

// ---- Single-anchor pieces of Eq. 7 (tests, diagnostics) -------------------
// u_ai: [d] anchor pixel embedding; u_b: [d, hw] partner embeddings;
// neg_mask: [hw] bool, true for members of Neg(a,i;b) (at least one).
// All unit-norm in use, but the formulas do not assume it.

// The negative mean ū_{a,i;b} = sum_{n in Neg} softmax_n(u_ai.u_bn / tau) u_bn, [d].
// Independent of the positive j (Eq. 7).
torch::Tensor NegativeMean(const torch::Tensor& u_ai, const torch::Tensor& u_b,
                           const torch::Tensor& neg_mask, double tau);

// Eq. 7: d l(a,i,b,j) / d u_ai = -((1 - P_ij) / tau) (u_bj - ū), [d], where
// l = -log(e^{s_ij} / (e^{s_ij} + sum_{n in Neg} e^{s_in})), s = u_ai.u_b / tau.
// REQUIRES neg_mask[pos_j] == false.
torch::Tensor ClosedFormAnchorGradient(const torch::Tensor& u_ai, const torch::Tensor& u_b,
                                       int64_t pos_j, const torch::Tensor& neg_mask, double tau);

// ---- Batched S1 score (spec 6.2): ((1 - P_ij)/tau) * ||u_bj - ū_{a,i;b}|| --
struct S1Scores {
  torch::Tensor score;  // [..., hw_a, k]
  torch::Tensor p_pos;  // [..., hw_a, k]  P_ij
};

// logits: [..., hw_a, hw_b] = u_a . u_b / tau; pool: [..., hw_a, k] int64
// indices into hw_b; neg_mask: [..., hw_a, hw_b] bool (true = Neg);
// u_b: [..., d, hw_b] (batch dims broadcast with logits'). Computed under
// no-grad; the outputs carry no graph.
S1Scores ComputeS1Scores(const torch::Tensor& logits, const torch::Tensor& pool,
                         const torch::Tensor& neg_mask, const torch::Tensor& u_b, double tau);

// Same, from pieces the loss already has: s_neg = logits with -inf outside
// Neg, lse_neg = logsumexp(s_neg, -1, keepdim) [..., hw_a, 1], s_pos =
// logits.gather(-1, pool). Avoids recomputing the masked softmax.
S1Scores S1ScoresFromParts(const torch::Tensor& s_neg, const torch::Tensor& lse_neg,
                           const torch::Tensor& s_pos, const torch::Tensor& pool,
                           const torch::Tensor& u_b, double tau);

// Spearman rank correlation of two equally long tensors (flattened; average
// ranks for ties). Returns 0 when fewer than 2 elements or either is constant.
double SpearmanRankCorrelation(const torch::Tensor& x, const torch::Tensor& y);

// ---- S2 diagnostic (spec 6.2) ---------------------------------------------
struct S2Options {
  int64_t num_anchors = 8;  // anchor pixels of view a (distinct, drawn from seed)
  int64_t pool_k = 10;
  double tau = 0.1;
};
struct S2Result {
  double rank_corr = 0;   // Spearman(S1, S2) over all num_anchors * k positives
  torch::Tensor anchors;  // [num_anchors] int64 anchor pixel indices
  torch::Tensor s1;       // [num_anchors, k] float64, closed-form scores
  torch::Tensor s2;       // [num_anchors, k] float64, ||d l / d weight||_F
};

// v, u: [N, d, hw] L2-normalised image-wise / pixel-wise maps of the current
// forward pass; u must still be attached to a graph that reaches `weight`
// (e.g. encoder->last_conv()->weight). For the pair (view a, partner b) it
// samples num_anchors anchor pixels, builds each pool (Eq. 6), and for each of
// the num_anchors * k positives runs one autograd::grad of l(a,i,b,j) w.r.t.
// weight (retain_graph, so the caller's backward still works afterwards). Call
// it every s2_every steps only: it costs num_anchors * k small backward passes.
// Errors: kInvalidArgument on bad shapes/indices, kFailedPrecondition when u
// does not reach weight, kInternal on LibTorch errors.
absl::StatusOr<S2Result> GradFilterS2Diagnostic(const torch::Tensor& v, const torch::Tensor& u,
                                                const torch::Tensor& weight, int64_t a, int64_t b,
                                                const S2Options& options, uint64_t seed);

}  // namespace gcl::core
