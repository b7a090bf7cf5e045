// Pixel-wise contrastive loss with the affinity-based positive pool and
// GradFilter selection (spec 5, Eqs. 5-6; selection spec 6, Eqs. 7-8).
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include <torch/types.h>  // torch::Tensor (ATen + the torch namespace alias)

namespace gcl::core {

struct PixelLossOptions {
  int64_t pool_k = 10;          // k (Eq. 6); REQUIRES 1 <= k < hw
  int64_t partners = 4;         // S: a^+ plus up to S-1 image-wise positives of the meta label
  double tau = 0.1;
  int64_t num_selected = 10;    // n(t) (Eq. 8); == pool_k means GradFilter off (plain PixCL)
  bool multi_positive = false;  // flag pix_multi_pos (PixPro-style form, spec 5.3)
};

struct PixelLossStats {
  double mean_selected_score = 0;       // mean S1 over the selected positives
  double mean_rejected_score = 0;       // mean S1 over pool members not selected (0 if none)
  double mean_p_pos = 0;                // mean P_ij over the selected positives
  double mean_selected_similarity = 0;  // mean u_ai . u_bj over the selected positives
  int64_t num_terms = 0;                // number of loss terms averaged
};

// The partners S(a) of every anchor view, padded to a rectangle.
struct PartnerSet {
  torch::Tensor index;  // [N, S'] int64; column 0 is a^+ = a ^ 1
  torch::Tensor valid;  // [N, S'] bool; padded entries are false (their index is a^+)
};

// Partner draw (spec 5 step 1), deterministic in `seed` (std::mt19937_64 on
// MixSeed(seed), anchors in order a = 0..N-1; per anchor a partial
// Fisher-Yates over the ascending candidate list
// {b : b != a, b != a^+, labels[b] == labels[a]} picks min(S-1, #candidates)
// distinct partners). labels undefined or partners == 1 gives S' = 1 ({a^+});
// otherwise S' = min(S, 1 + max_a #candidates). labels: [N] int64 (CPU or any device).
PartnerSet DrawPartners(const torch::Tensor& labels, int64_t num_views, int64_t partners,
                        uint64_t seed);

// Eq. 6: indices of the top-k of v_a[:, i] . v_b[:, j] over j.
// v_a: [..., d, hw_a], v_b: [..., d, hw_b] (batch dims broadcast) -> [..., hw_a, k].
// No gradient.
torch::Tensor PositivePool(const torch::Tensor& v_a, const torch::Tensor& v_b, int64_t k);

// Neg(a,i;b): the complement of the pool. pool: [..., hw_a, k] ->
// bool [..., hw_a, hw_b], true for the hw_b - k non-pool pixels.
torch::Tensor NegativeMask(const torch::Tensor& pool, int64_t hw_b);

// Eqs. 5-6 with GradFilter: mean over {(a, b in S(a), i, j in Sel)} of
// l(a,i,b,j) = -log(e^{s_ij} / (e^{s_ij} + sum_{n in Neg} e^{s_in})), s = u_ai.u_bj / tau,
// Sel = the num_selected pool members with the smallest S1 score (Eq. 7,
// computed under no-grad); all of the pool when num_selected == pool_k.
// multi_positive: one term per (a, b, i), -log(sum_Sel e^s / (sum_Sel e^s + sum_Neg e^s)).
// v: [N, d, hw] L2-normalised image-wise embeddings (affinity only; no
// gradient reaches v). u: [N, d, hw] L2-normalised pixel-wise embeddings
// (gradients flow through u). N even. labels: [N] int64 or undefined
// (partners = {a^+}). Returns a scalar in u's dtype. Fills *stats if non-null.
// Throws c10::Error on shape/option misuse.
torch::Tensor PixelContrastiveLoss(const torch::Tensor& v, const torch::Tensor& u,
                                   const torch::Tensor& labels, const PixelLossOptions& options,
                                   uint64_t seed, PixelLossStats* stats = nullptr);

// Same with an explicit partner set (options.partners is ignored).
torch::Tensor PixelContrastiveLoss(const torch::Tensor& v, const torch::Tensor& u,
                                   const PartnerSet& partners, const PixelLossOptions& options,
                                   PixelLossStats* stats = nullptr);

namespace internal {
// m distinct values of {0..n-1} by a partial Fisher-Yates shuffle of `pool`
// (in place; the first m entries are the draw). Platform-independent.
template <typename Rng>
void PartialShuffle(std::vector<int64_t>& pool, int64_t m, Rng& rng) {
  const int64_t n = static_cast<int64_t>(pool.size());
  for (int64_t t = 0; t < m && t < n; ++t) {
    const uint64_t range = static_cast<uint64_t>(n - t);
    // Unbiased bounded draw by rejection (std distributions are not portable).
    const uint64_t limit = ~uint64_t{0} - (~uint64_t{0} % range);
    uint64_t x;
    do {
      x = rng();
    } while (x >= limit);
    std::swap(pool[t], pool[t + static_cast<int64_t>(x % range)]);
  }
}
}  // namespace internal

}  // namespace gcl::core
