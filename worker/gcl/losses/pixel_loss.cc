#include "worker/gcl/losses/pixel_loss.h"

#include <algorithm>
#include <limits>
#include <random>

#include <torch/torch.h>

#include "worker/gcl/data/rng.h"
#include "worker/gcl/losses/grad_filter.h"

namespace gcl::core {

PartnerSet DrawPartners(const torch::Tensor& labels, int64_t num_views, int64_t partners,
                        uint64_t seed) {
  TORCH_CHECK(num_views >= 2 && num_views % 2 == 0, "DrawPartners: N must be even, got ",
              num_views);
  TORCH_CHECK(partners >= 1, "DrawPartners: partners must be >= 1");
  std::vector<std::vector<int64_t>> drawn(num_views);
  int64_t width = 1;
  if (labels.defined() && partners > 1) {
    TORCH_CHECK(labels.dim() == 1 && labels.size(0) == num_views,
                "DrawPartners: labels must be [N], got ", labels.sizes());
    const torch::Tensor l = labels.to(torch::kCPU, torch::kLong).contiguous();
    const int64_t* lab = l.data_ptr<int64_t>();
    std::mt19937_64 rng(MixSeed(seed));
    std::vector<int64_t> cand;
    for (int64_t a = 0; a < num_views; ++a) {
      cand.clear();
      for (int64_t b = 0; b < num_views; ++b) {
        if (b != a && b != (a ^ 1) && lab[b] == lab[a]) cand.push_back(b);
      }
      const int64_t m = std::min<int64_t>(partners - 1, static_cast<int64_t>(cand.size()));
      internal::PartialShuffle(cand, m, rng);
      drawn[a].assign(cand.begin(), cand.begin() + m);
      width = std::max<int64_t>(width, 1 + m);
    }
  }
  PartnerSet set;
  set.index = torch::empty({num_views, width}, torch::kLong);
  set.valid = torch::zeros({num_views, width}, torch::kBool);
  auto idx = set.index.accessor<int64_t, 2>();
  auto ok = set.valid.accessor<bool, 2>();
  for (int64_t a = 0; a < num_views; ++a) {
    for (int64_t s = 0; s < width; ++s) {
      const bool real = s == 0 || s - 1 < static_cast<int64_t>(drawn[a].size());
      idx[a][s] = s == 0 || !real ? (a ^ 1) : drawn[a][s - 1];
      ok[a][s] = real;
    }
  }
  return set;
}

torch::Tensor PositivePool(const torch::Tensor& v_a, const torch::Tensor& v_b, int64_t k) {
  torch::NoGradGuard no_grad;
  const torch::Tensor aff = torch::matmul(v_a.detach().transpose(-1, -2), v_b.detach());
  TORCH_CHECK(k >= 1 && k <= aff.size(-1), "PositivePool: k must be in [1, hw_b], got ", k);
  return std::get<1>(aff.topk(k, /*dim=*/-1));
}

torch::Tensor NegativeMask(const torch::Tensor& pool, int64_t hw_b) {
  std::vector<int64_t> shape = pool.sizes().vec();
  shape.back() = hw_b;
  torch::Tensor neg = torch::ones(shape, pool.options().dtype(torch::kBool));
  return neg.scatter_(-1, pool, false);
}

torch::Tensor PixelContrastiveLoss(const torch::Tensor& v, const torch::Tensor& u,
                                   const torch::Tensor& labels, const PixelLossOptions& options,
                                   uint64_t seed, PixelLossStats* stats) {
  TORCH_CHECK(u.dim() == 3, "PixelContrastiveLoss: u must be [N, d, hw], got ", u.sizes());
  const PartnerSet partners = DrawPartners(labels, u.size(0), options.partners, seed);
  return PixelContrastiveLoss(v, u, partners, options, stats);
}

torch::Tensor PixelContrastiveLoss(const torch::Tensor& v, const torch::Tensor& u,
                                   const PartnerSet& partners, const PixelLossOptions& options,
                                   PixelLossStats* stats) {
  TORCH_CHECK(u.dim() == 3 && v.dim() == 3 && v.size(0) == u.size(0) && v.size(2) == u.size(2),
              "PixelContrastiveLoss: v and u must be [N, d, hw] with equal N and hw, got ",
              v.sizes(), " and ", u.sizes());
  const int64_t n = u.size(0), d = u.size(1), hw = u.size(2);
  const int64_t k = options.pool_k;
  TORCH_CHECK(k >= 1 && k < hw, "PixelContrastiveLoss: pool_k must be in [1, hw), got ", k);
  TORCH_CHECK(options.num_selected >= 1 && options.num_selected <= k,
              "PixelContrastiveLoss: num_selected must be in [1, pool_k], got ",
              options.num_selected);
  TORCH_CHECK(options.tau > 0, "PixelContrastiveLoss: tau must be > 0");
  TORCH_CHECK(partners.index.dim() == 2 && partners.index.size(0) == n &&
                  partners.valid.sizes() == partners.index.sizes(),
              "PixelContrastiveLoss: partner set must be [N, S]");
  const int64_t s_count = partners.index.size(1);
  const int64_t n_sel = options.num_selected;
  const bool filter = n_sel < k;

  const torch::Tensor flat = partners.index.reshape({-1}).to(u.device());
  // Partner maps for every (anchor, partner) pair: [N, S, d, hw].
  const torch::Tensor u_b = u.index_select(0, flat).view({n, s_count, d, hw});
  torch::Tensor pool, neg;
  {
    torch::NoGradGuard no_grad;
    const torch::Tensor v_b = v.detach().index_select(0, flat).view({n, s_count, v.size(1), hw});
    pool = PositivePool(v.detach().unsqueeze(1), v_b, k);  // [N, S, hw, k]   (Eq. 6)
    neg = NegativeMask(pool, hw);                           // [N, S, hw, hw]
  }
  // s_ij for all anchors i and partner pixels j at once: [N, S, hw, hw].
  const torch::Tensor logits = torch::matmul(u.transpose(1, 2).unsqueeze(1), u_b) / options.tau;
  const torch::Tensor s_neg =
      logits.masked_fill(neg.logical_not(), -std::numeric_limits<double>::infinity());
  const torch::Tensor lse_neg = torch::logsumexp(s_neg, /*dim=*/-1, /*keepdim=*/true);
  const torch::Tensor s_pos = logits.gather(-1, pool);  // [N, S, hw, k]

  S1Scores s1;
  torch::Tensor sel;  // [N, S, hw, n_sel] positions within the pool
  if (filter || stats != nullptr) {
    torch::NoGradGuard no_grad;
    s1 = S1ScoresFromParts(s_neg.detach(), lse_neg.detach(), s_pos.detach(), pool, u_b.detach(),
                           options.tau);
    if (filter) {
      sel = std::get<1>(s1.score.topk(n_sel, -1, /*largest=*/false, /*sorted=*/true));
    }
  }
  const torch::Tensor s_sel = filter ? s_pos.gather(-1, sel) : s_pos;

  torch::Tensor ell;  // [N, S, hw, terms per anchor pixel]
  int64_t terms_per_pixel;
  if (options.multi_positive) {
    const torch::Tensor lse_sel = torch::logsumexp(s_sel, -1, /*keepdim=*/true);
    ell = torch::logaddexp(lse_sel, lse_neg) - lse_sel;
    terms_per_pixel = 1;
  } else {
    ell = torch::logaddexp(s_sel, lse_neg) - s_sel;  // Eq. 5, per positive
    terms_per_pixel = n_sel;
  }
  const torch::Tensor valid = partners.valid.to(u.device()).to(u.scalar_type());  // [N, S]
  const double num_pairs = valid.sum().item<double>();
  const double count = num_pairs * static_cast<double>(hw * terms_per_pixel);
  const torch::Tensor loss = (ell.sum({2, 3}) * valid).sum() / count;

  if (stats != nullptr) {
    torch::NoGradGuard no_grad;
    const torch::Tensor w = valid.view({n, s_count, 1, 1});
    const torch::Tensor score_sel = filter ? s1.score.gather(-1, sel) : s1.score;
    const torch::Tensor p_sel = filter ? s1.p_pos.gather(-1, sel) : s1.p_pos;
    const double sel_count = num_pairs * static_cast<double>(hw * n_sel);
    const double sel_score_sum = (score_sel * w).sum().item<double>();
    stats->mean_selected_score = sel_score_sum / sel_count;
    stats->mean_p_pos = (p_sel * w).sum().item<double>() / sel_count;
    stats->mean_selected_similarity =
        (s_sel.detach() * w).sum().item<double>() * options.tau / sel_count;
    stats->mean_rejected_score =
        filter ? ((s1.score * w).sum().item<double>() - sel_score_sum) /
                     (num_pairs * static_cast<double>(hw * (k - n_sel)))
               : 0.0;
    stats->num_terms = static_cast<int64_t>(count);
  }
  return loss;
}

}  // namespace gcl::core
