#include "worker/gcl/losses/grad_filter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include <torch/torch.h>

#include "absl/status/status.h"
#include "gcl/base/torch_status.h"
#include "worker/gcl/data/rng.h"
#include "worker/gcl/losses/pixel_loss.h"

namespace gcl::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Average ranks (1-based) with ties sharing their mean rank.
std::vector<double> Ranks(const std::vector<double>& x) {
  std::vector<size_t> order(x.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return x[i] < x[j]; });
  std::vector<double> rank(x.size());
  for (size_t s = 0; s < order.size();) {
    size_t e = s;
    while (e + 1 < order.size() && x[order[e + 1]] == x[order[s]]) ++e;
    const double r = 0.5 * static_cast<double>(s + e) + 1.0;
    for (size_t t = s; t <= e; ++t) rank[order[t]] = r;
    s = e + 1;
  }
  return rank;
}

std::vector<double> ToVector(const torch::Tensor& t) {
  const torch::Tensor c = t.detach().to(torch::kCPU, torch::kDouble).contiguous().view({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

}  // namespace

int64_t PaceNumSelected(int64_t step, int64_t total_steps, int64_t k, double lambda0,
                        double gamma, Pace pace) {
  TORCH_CHECK(k >= 1, "PaceNumSelected: k must be >= 1");
  double r = 1.0;
  if (total_steps > 0 && gamma > 0) {
    r = std::min(1.0, std::max(0.0, static_cast<double>(step)) /
                          (gamma * static_cast<double>(total_steps)));
  }
  if (pace == Pace::kRoot) r = std::sqrt(r);
  const double frac = lambda0 + (1.0 - lambda0) * r;
  // The small epsilon keeps e.g. 10 * 0.2 = 2.0000000000000004 from rounding up to 3.
  const auto n = static_cast<int64_t>(std::ceil(static_cast<double>(k) * frac - 1e-9));
  return std::min(k, std::max<int64_t>(1, n));
}

torch::Tensor NegativeMean(const torch::Tensor& u_ai, const torch::Tensor& u_b,
                           const torch::Tensor& neg_mask, double tau) {
  TORCH_CHECK(u_ai.dim() == 1 && u_b.dim() == 2 && u_b.size(0) == u_ai.size(0) &&
                  neg_mask.dim() == 1 && neg_mask.size(0) == u_b.size(1),
              "NegativeMean: expected u_ai [d], u_b [d, hw], neg_mask [hw]");
  const torch::Tensor s = torch::matmul(u_ai, u_b) / tau;  // [hw]
  const torch::Tensor w = torch::softmax(s.masked_fill(neg_mask.logical_not(), -kInf), 0);
  return torch::matmul(u_b, w);
}

torch::Tensor ClosedFormAnchorGradient(const torch::Tensor& u_ai, const torch::Tensor& u_b,
                                       int64_t pos_j, const torch::Tensor& neg_mask, double tau) {
  TORCH_CHECK(pos_j >= 0 && pos_j < u_b.size(1) && !neg_mask[pos_j].item<bool>(),
              "ClosedFormAnchorGradient: pos_j must index a non-negative pixel");
  const torch::Tensor s = torch::matmul(u_ai, u_b) / tau;
  const torch::Tensor lse_neg = torch::logsumexp(s.masked_fill(neg_mask.logical_not(), -kInf), 0);
  const torch::Tensor p_pos = torch::sigmoid(s[pos_j] - lse_neg);  // P_ij = e^s_ij / Z_ij
  const torch::Tensor u_bar = NegativeMean(u_ai, u_b, neg_mask, tau);
  return -((1 - p_pos) / tau) * (u_b.select(1, pos_j) - u_bar);  // Eq. 7
}

S1Scores S1ScoresFromParts(const torch::Tensor& s_neg, const torch::Tensor& lse_neg,
                           const torch::Tensor& s_pos, const torch::Tensor& pool,
                           const torch::Tensor& u_b, double tau) {
  torch::NoGradGuard no_grad;
  S1Scores out;
  // P_ij = e^{s_ij} / (e^{s_ij} + e^{lse_neg}).
  out.p_pos = torch::sigmoid(s_pos - lse_neg);
  // ū = softmax over Neg (zero weight on the pool): [..., hw_a, d]; one per
  // (anchor, partner) because it does not depend on j (Eq. 7).
  const torch::Tensor w = torch::exp(s_neg - lse_neg);
  const torch::Tensor u_bar = torch::matmul(w, u_b.transpose(-1, -2));
  // ||u_bj - ū||^2 = ||u_bj||^2 - 2 u_bj.ū + ||ū||^2, so no [..., hw_a, k, d]
  // gather is materialised.
  const torch::Tensor cross = torch::matmul(u_bar, u_b).gather(-1, pool);
  const torch::Tensor ub_sq = u_b.pow(2).sum(-2).unsqueeze(-2);  // [..., 1, hw_b]
  std::vector<int64_t> shape = pool.sizes().vec();
  shape.back() = ub_sq.size(-1);
  const torch::Tensor ub_sq_j = ub_sq.expand(shape).gather(-1, pool);
  const torch::Tensor ubar_sq = u_bar.pow(2).sum(-1, /*keepdim=*/true);
  const torch::Tensor dist = (ub_sq_j - 2 * cross + ubar_sq).clamp_min(0).sqrt();
  out.score = (1 - out.p_pos) / tau * dist;
  return out;
}

S1Scores ComputeS1Scores(const torch::Tensor& logits, const torch::Tensor& pool,
                         const torch::Tensor& neg_mask, const torch::Tensor& u_b, double tau) {
  torch::NoGradGuard no_grad;
  const torch::Tensor s_neg = logits.detach().masked_fill(neg_mask.logical_not(), -kInf);
  const torch::Tensor lse_neg = torch::logsumexp(s_neg, -1, /*keepdim=*/true);
  return S1ScoresFromParts(s_neg, lse_neg, logits.detach().gather(-1, pool), pool, u_b.detach(),
                           tau);
}

double SpearmanRankCorrelation(const torch::Tensor& x, const torch::Tensor& y) {
  TORCH_CHECK(x.numel() == y.numel(), "SpearmanRankCorrelation: sizes differ");
  if (x.numel() < 2) return 0.0;
  const std::vector<double> rx = Ranks(ToVector(x)), ry = Ranks(ToVector(y));
  const double n = static_cast<double>(rx.size());
  const double mean = (n + 1) / 2;
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < rx.size(); ++i) {
    sxy += (rx[i] - mean) * (ry[i] - mean);
    sxx += (rx[i] - mean) * (rx[i] - mean);
    syy += (ry[i] - mean) * (ry[i] - mean);
  }
  if (sxx <= 0 || syy <= 0) return 0.0;
  return sxy / std::sqrt(sxx * syy);
}

absl::StatusOr<S2Result> GradFilterS2Diagnostic(const torch::Tensor& v, const torch::Tensor& u,
                                                const torch::Tensor& weight, int64_t a, int64_t b,
                                                const S2Options& options, uint64_t seed) {
  if (!v.defined() || !u.defined() || !weight.defined() || u.dim() != 3 || v.dim() != 3 ||
      v.size(0) != u.size(0) || v.size(2) != u.size(2)) {
    return absl::InvalidArgumentError("GradFilterS2Diagnostic: v, u must be [N, d, hw]");
  }
  const int64_t n = u.size(0), hw = u.size(2), k = options.pool_k;
  if (a < 0 || a >= n || b < 0 || b >= n || a == b) {
    return absl::InvalidArgumentError("GradFilterS2Diagnostic: bad view pair");
  }
  if (k < 1 || k >= hw || options.num_anchors < 1 || options.num_anchors > hw ||
      options.tau <= 0) {
    return absl::InvalidArgumentError("GradFilterS2Diagnostic: need 1 <= k < hw, 1 <= anchors <= hw, tau > 0");
  }
  if (!u.requires_grad()) {
    return absl::FailedPreconditionError("GradFilterS2Diagnostic: u carries no graph");
  }
  S2Result result;
  absl::Status status = gcl::CatchToStatus("GradFilterS2Diagnostic", [&]() -> absl::Status {
    std::vector<int64_t> pixels(hw);
    std::iota(pixels.begin(), pixels.end(), 0);
    std::mt19937_64 rng(MixSeed(seed));
    internal::PartialShuffle(pixels, options.num_anchors, rng);
    pixels.resize(options.num_anchors);
    result.anchors = torch::tensor(pixels, torch::kLong);

    const torch::Tensor anchors = result.anchors.to(u.device());
    const torch::Tensor u_a = u[a].index_select(1, anchors);  // [d, A]
    const torch::Tensor u_b = u[b];                            // [d, hw]
    torch::Tensor pool, neg;
    {
      torch::NoGradGuard no_grad;
      pool = PositivePool(v[a].index_select(1, anchors), v[b], k);  // [A, k]
      neg = NegativeMask(pool, hw);
    }
    const torch::Tensor logits = torch::matmul(u_a.t(), u_b) / options.tau;  // [A, hw]
    result.s1 = ComputeS1Scores(logits, pool, neg, u_b, options.tau)
                    .score.to(torch::kCPU, torch::kDouble);
    const torch::Tensor lse_neg =
        torch::logsumexp(logits.masked_fill(neg.logical_not(), -kInf), -1, /*keepdim=*/true);
    const torch::Tensor s_pos = logits.gather(-1, pool);
    const torch::Tensor ell = torch::logaddexp(s_pos, lse_neg) - s_pos;  // [A, k], Eq. 5 terms
    result.s2 = torch::empty({options.num_anchors, k}, torch::kDouble);
    auto s2 = result.s2.accessor<double, 2>();
    for (int64_t i = 0; i < options.num_anchors; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        auto grads = torch::autograd::grad({ell.index({i, j})}, {weight}, /*grad_outputs=*/{},
                                           /*retain_graph=*/true, /*create_graph=*/false,
                                           /*allow_unused=*/true);
        if (!grads[0].defined()) {
          return absl::FailedPreconditionError(
              "GradFilterS2Diagnostic: u does not depend on weight");
        }
        s2[i][j] = grads[0].norm().item<double>();
      }
    }
    return absl::OkStatus();
  });
  if (!status.ok()) return status;
  result.rank_corr = SpearmanRankCorrelation(result.s1, result.s2);
  return result;
}

}  // namespace gcl::core
