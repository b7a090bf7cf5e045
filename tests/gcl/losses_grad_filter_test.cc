#include "worker/gcl/losses/grad_filter.h"

#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include <torch/torch.h>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/gcl/losses/pixel_loss.h"

namespace gcl::core {
namespace {

using ::gcl::testing::StatusIs;

torch::Tensor Unit(at::IntArrayRef shape, int64_t dim, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = at::randn(shape, gen, torch::TensorOptions().dtype(torch::kDouble));
  return x / x.norm(2, dim, true);
}

// l(a,i,b,j) written directly: -log(e^{s_j} / (e^{s_j} + sum_{n in Neg} e^{s_n})).
torch::Tensor Term(const torch::Tensor& u_ai, const torch::Tensor& u_b, int64_t j,
                   const std::vector<int64_t>& negs, double tau) {
  const auto s = torch::matmul(u_ai, u_b) / tau;
  auto denom = torch::exp(s[j]);
  for (int64_t m : negs) denom = denom + torch::exp(s[m]);
  return -torch::log(torch::exp(s[j]) / denom);
}

TEST(PaceTest, EndpointsAndMonotone) {
  const int64_t k = 10;
  const int64_t T = 1000;
  EXPECT_EQ(PaceNumSelected(0, T, k), 2);  // ceil(0.2 * 10)
  EXPECT_EQ(PaceNumSelected(T, T, k), k);
  EXPECT_EQ(PaceNumSelected(5 * T, T, k), k);
  EXPECT_EQ(PaceNumSelected(0, T, 7, 0.3), 3);  // ceil(2.1)
  EXPECT_EQ(PaceNumSelected(0, T, 3, 0.0), 1);  // max(1, .)
  EXPECT_EQ(PaceNumSelected(T / 2, T, k), 6);   // ceil(10 * 0.6)
  EXPECT_EQ(PaceNumSelected(T / 2, T, k, 0.2, 0.5), k);  // gamma 0.5 reaches k at T/2
  EXPECT_EQ(PaceNumSelected(0, T, k, 0.2, 1.0, Pace::kRoot), 2);
  EXPECT_EQ(PaceNumSelected(T, T, k, 0.2, 1.0, Pace::kRoot), k);
  // root at t = T/4: r = 0.5 -> ceil(10 * 0.6) = 6; linear: ceil(10 * 0.4) = 4.
  EXPECT_EQ(PaceNumSelected(T / 4, T, k, 0.2, 1.0, Pace::kRoot), 6);
  EXPECT_EQ(PaceNumSelected(T / 4, T, k), 4);
  for (Pace pace : {Pace::kLinear, Pace::kRoot}) {
    int64_t prev = 0;
    for (int64_t t = 0; t <= T + 10; ++t) {
      const int64_t n = PaceNumSelected(t, T, k, 0.2, 1.0, pace);
      EXPECT_GE(n, prev);
      EXPECT_GE(n, 1);
      EXPECT_LE(n, k);
      if (pace == Pace::kRoot) {
        EXPECT_GE(n, PaceNumSelected(t, T, k));
      }
      prev = n;
    }
  }
}

TEST(ClosedFormTest, Eq7MatchesAutogradAndUbarIndependentOfJ) {
  const int64_t d = 7, hw = 12, k = 4;
  const double tau = 0.1;
  const auto v_a = Unit({d}, 0, 1), v_b = Unit({d, hw}, 0, 2);
  const auto u_ai0 = Unit({d}, 0, 3), u_b = Unit({d, hw}, 0, 4);
  const auto pool = PositivePool(v_a.unsqueeze(1), v_b, k)[0];  // [k]
  const auto neg_mask = NegativeMask(pool.unsqueeze(0), hw)[0];
  std::vector<int64_t> negs;
  for (int64_t m = 0; m < hw; ++m) {
    if (neg_mask[m].item<bool>()) negs.push_back(m);
  }
  ASSERT_EQ(static_cast<int64_t>(negs.size()), hw - k);
  const auto u_bar = NegativeMean(u_ai0, u_b, neg_mask, tau);
  std::vector<torch::Tensor> recovered;
  for (int64_t t = 0; t < k; ++t) {
    const int64_t j = pool[t].item<int64_t>();
    auto u_ai = u_ai0.clone().requires_grad_(true);
    auto ell = Term(u_ai, u_b, j, negs, tau);
    auto g = torch::autograd::grad({ell}, {u_ai})[0];
    const auto closed = ClosedFormAnchorGradient(u_ai0, u_b, j, neg_mask, tau);
    EXPECT_LT((g - closed).abs().max().item<double>(), 1e-9) << j;
    // Invert Eq. 7 on the autograd gradient: ū = u_bj + tau g / (1 - P_ij).
    const double p = std::exp(-ell.item<double>());
    recovered.push_back(u_b.select(1, j) + tau * g / (1 - p));
  }
  for (const auto& r : recovered) {
    EXPECT_LT((r - recovered[0]).abs().max().item<double>(), 1e-9);
    EXPECT_LT((r - u_bar).abs().max().item<double>(), 1e-9);
  }
}

TEST(ClosedFormTest, BatchedS1EqualsNormOfAutogradGradient) {
  // Batch dims [2, 3]: anchors [2, 3, d, hw_a] vs partners [2, 3, d, hw_b].
  const int64_t d = 5, hw = 8, k = 3;
  const double tau = 0.2;
  const auto v_a = Unit({2, 3, d, hw}, 2, 5), v_b = Unit({2, 3, d, hw}, 2, 6);
  const auto u_a = Unit({2, 3, d, hw}, 2, 7), u_b = Unit({2, 3, d, hw}, 2, 8);
  const auto pool = PositivePool(v_a, v_b, k);
  const auto neg = NegativeMask(pool, hw);
  const auto logits = torch::matmul(u_a.transpose(-1, -2), u_b) / tau;
  const S1Scores s1 = ComputeS1Scores(logits, pool, neg, u_b, tau);
  ASSERT_EQ(s1.score.sizes(), (std::vector<int64_t>{2, 3, hw, k}));
  for (int64_t x = 0; x < 2; ++x) {
    for (int64_t y = 0; y < 3; ++y) {
      for (int64_t i = 0; i < hw; ++i) {
        std::vector<int64_t> negs;
        for (int64_t m = 0; m < hw; ++m) {
          if (neg[x][y][i][m].item<bool>()) negs.push_back(m);
        }
        for (int64_t t = 0; t < k; ++t) {
          const int64_t j = pool[x][y][i][t].item<int64_t>();
          auto u_ai = u_a[x][y].select(1, i).clone().requires_grad_(true);
          auto ell = Term(u_ai, u_b[x][y], j, negs, tau);
          auto g = torch::autograd::grad({ell}, {u_ai})[0];
          EXPECT_NEAR(s1.score[x][y][i][t].item<double>(), g.norm().item<double>(), 1e-9);
          EXPECT_NEAR(s1.p_pos[x][y][i][t].item<double>(), std::exp(-ell.item<double>()), 1e-12);
        }
      }
    }
  }
}

TEST(SpearmanTest, HandValues) {
  auto t = [](std::vector<double> x) { return torch::tensor(x, torch::kDouble); };
  EXPECT_DOUBLE_EQ(SpearmanRankCorrelation(t({1, 2, 3, 4}), t({10, 20, 35, 400})), 1.0);
  EXPECT_DOUBLE_EQ(SpearmanRankCorrelation(t({1, 2, 3, 4}), t({4, 3, 2, 1})), -1.0);
  // Ties: ranks x = [1, 2.5, 2.5, 4], y = [1, 3, 2, 4] -> 4.5 / sqrt(4.5 * 5).
  EXPECT_NEAR(SpearmanRankCorrelation(t({1, 2, 2, 3}), t({1, 3, 2, 4})), 4.5 / std::sqrt(22.5),
              1e-12);
  EXPECT_EQ(SpearmanRankCorrelation(t({1, 1, 1}), t({1, 2, 3})), 0.0);
}

TEST(S2DiagnosticTest, MatchesIndependentAutogradAndKeepsGraph) {
  // A tiny stand-in for encoder last conv -> BN-free ReLU -> two 1x1 heads
  // (losses tests link gcl_losses only): F = relu(conv3x3(x, weight)).
  auto gen = at::detail::createCPUGenerator(1);
  const auto x = at::randn({4, 3, 4, 4}, gen);
  const auto weight = (at::randn({5, 3, 3, 3}, gen) * 0.3).requires_grad_(true);
  const auto w_i = at::randn({6, 5, 1, 1}, gen), w_p = at::randn({6, 5, 1, 1}, gen);
  const auto f = torch::relu(torch::conv2d(x, weight, {}, 1, 1));  // [4, 5, 4, 4], hw = 16
  const auto v = torch::nn::functional::normalize(
      torch::conv2d(f, w_i).flatten(2), torch::nn::functional::NormalizeFuncOptions().dim(1));
  const auto u = torch::nn::functional::normalize(
      torch::conv2d(f, w_p).flatten(2), torch::nn::functional::NormalizeFuncOptions().dim(1));
  S2Options so;
  so.num_anchors = 3;
  so.pool_k = 4;
  so.tau = 0.1;
  GCL_ASSERT_OK_AND_ASSIGN(S2Result r, GradFilterS2Diagnostic(v, u, weight, 0, 1, so, 17));
  ASSERT_EQ(r.s2.sizes(), (std::vector<int64_t>{3, 4}));
  EXPECT_EQ(std::set<int64_t>(r.anchors.data_ptr<int64_t>(), r.anchors.data_ptr<int64_t>() + 3)
                .size(),
            3u);
  EXPECT_NEAR(r.rank_corr, SpearmanRankCorrelation(r.s1, r.s2), 1e-12);
  EXPECT_GE(r.rank_corr, -1.0);
  EXPECT_LE(r.rank_corr, 1.0);
  // Independent recomputation of S2 and S1 for each anchor.
  for (int64_t t = 0; t < 3; ++t) {
    const int64_t i = r.anchors[t].item<int64_t>();
    const auto aff = torch::matmul(v[0].select(1, i).detach(), v[1].detach());  // [16]
    const auto order = std::get<1>(aff.sort(0, /*descending=*/true));
    std::vector<int64_t> negs;
    for (int64_t m = 4; m < 16; ++m) negs.push_back(order[m].item<int64_t>());
    const auto pool = order.slice(0, 0, 4);
    for (int64_t q = 0; q < 4; ++q) {
      // The diagnostic's pool order is topk's (descending affinity) too.
      const int64_t j = pool[q].item<int64_t>();
      auto ell = Term(u[0].select(1, i), u[1], j, negs, 0.1);
      auto g = torch::autograd::grad({ell}, {weight}, {}, /*retain_graph=*/true)[0];
      EXPECT_NEAR(r.s2[t][q].item<double>(), g.norm().item<double>(),
                  1e-4 * g.norm().item<double>() + 1e-7);
      auto u_ai = u[0].select(1, i).detach().to(torch::kDouble).requires_grad_(true);
      auto ell_d = Term(u_ai, u[1].detach().to(torch::kDouble), j, negs, 0.1);
      auto ga = torch::autograd::grad({ell_d}, {u_ai})[0];
      EXPECT_NEAR(r.s1[t][q].item<double>(), ga.norm().item<double>(),
                  1e-4 * ga.norm().item<double>() + 1e-6);
    }
  }
  // The caller's graph is still alive.
  (u.sum() + v.sum()).backward();
  EXPECT_TRUE(weight.grad().defined());
}

TEST(S2DiagnosticTest, Errors) {
  const auto v = Unit({2, 3, 6}, 1, 1).to(torch::kFloat);
  const auto u = Unit({2, 3, 6}, 1, 2).to(torch::kFloat);
  const auto unrelated = torch::zeros({2, 2}, torch::requires_grad());
  S2Options so;
  so.num_anchors = 2;
  so.pool_k = 2;
  EXPECT_THAT(GradFilterS2Diagnostic(v, u, unrelated, 0, 1, so, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, "graph"));
  auto u_leaf = u.clone().requires_grad_(true);
  EXPECT_THAT(GradFilterS2Diagnostic(v, u_leaf * 2, unrelated, 0, 1, so, 0),
              StatusIs(absl::StatusCode::kFailedPrecondition, "weight"));
  EXPECT_THAT(GradFilterS2Diagnostic(v, u_leaf, unrelated, 0, 0, so, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, "pair"));
  so.pool_k = 6;
  EXPECT_THAT(GradFilterS2Diagnostic(v, u_leaf, unrelated, 0, 1, so, 0),
              StatusIs(absl::StatusCode::kInvalidArgument, "k"));
}

}  // namespace
}  // namespace gcl::core
