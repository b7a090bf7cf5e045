#include "worker/gcl/losses/pixel_loss.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <vector>

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace gcl::core {
namespace {

torch::Tensor UnitMaps(int64_t n, int64_t d, int64_t hw, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = at::randn({n, d, hw}, gen, torch::TensorOptions().dtype(torch::kDouble));
  return x / x.norm(2, 1, true);
}

// Slow per-anchor reference of Eqs. 5-7 in plain double loops: brute-force
// sorted pool, per-positive terms, S1 score from its definition (explicit ū),
// the n smallest scores kept.
double ReferenceLoss(const torch::Tensor& v, const torch::Tensor& u, const PartnerSet& partners,
                     int64_t k, int64_t n_sel, double tau, bool multi_pos) {
  const int64_t n = u.size(0), d = u.size(1), hw = u.size(2);
  auto V = v.accessor<double, 3>();
  auto U = u.accessor<double, 3>();
  auto idx = partners.index.accessor<int64_t, 2>();
  auto ok = partners.valid.accessor<bool, 2>();
  double total = 0;
  int64_t terms = 0;
  for (int64_t a = 0; a < n; ++a) {
    for (int64_t s = 0; s < partners.index.size(1); ++s) {
      if (!ok[a][s]) continue;
      const int64_t b = idx[a][s];
      for (int64_t i = 0; i < hw; ++i) {
        std::vector<double> aff(hw), sim(hw);
        for (int64_t j = 0; j < hw; ++j) {
          double va = 0, ua = 0;
          for (int64_t c = 0; c < d; ++c) {
            va += V[a][c][i] * V[b][c][j];
            ua += U[a][c][i] * U[b][c][j];
          }
          aff[j] = va;
          sim[j] = ua / tau;
        }
        std::vector<int64_t> order(hw);
        std::iota(order.begin(), order.end(), 0);
        std::sort(order.begin(), order.end(), [&](int64_t x, int64_t y) { return aff[x] > aff[y]; });
        std::vector<int64_t> pool(order.begin(), order.begin() + k);
        std::vector<int64_t> negs(order.begin() + k, order.end());
        double neg_sum = 0;
        for (int64_t m : negs) neg_sum += std::exp(sim[m]);
        std::vector<double> ubar(d, 0.0);
        for (int64_t m : negs) {
          for (int64_t c = 0; c < d; ++c) ubar[c] += std::exp(sim[m]) / neg_sum * U[b][c][m];
        }
        std::vector<std::pair<double, int64_t>> scored;
        for (int64_t j : pool) {
          const double p = std::exp(sim[j]) / (std::exp(sim[j]) + neg_sum);
          double dist = 0;
          for (int64_t c = 0; c < d; ++c) dist += std::pow(U[b][c][j] - ubar[c], 2);
          scored.push_back({(1 - p) / tau * std::sqrt(dist), j});
        }
        std::sort(scored.begin(), scored.end());
        if (multi_pos) {
          double pos_sum = 0;
          for (int64_t t = 0; t < n_sel; ++t) pos_sum += std::exp(sim[scored[t].second]);
          total += -std::log(pos_sum / (pos_sum + neg_sum));
          ++terms;
        } else {
          for (int64_t t = 0; t < n_sel; ++t) {
            const double e = std::exp(sim[scored[t].second]);
            total += -std::log(e / (e + neg_sum));
            ++terms;
          }
        }
      }
    }
  }
  return total / static_cast<double>(terms);
}

TEST(DrawPartnersTest, StructureAndDeterminism) {
  const std::vector<int64_t> lab = {0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 2, 2};
  const auto labels = torch::tensor(lab, torch::kLong);
  const PartnerSet p = DrawPartners(labels, 12, 4, 99);
  ASSERT_EQ(p.index.sizes(), (std::vector<int64_t>{12, 4}));
  auto idx = p.index.accessor<int64_t, 2>();
  auto ok = p.valid.accessor<bool, 2>();
  for (int64_t a = 0; a < 12; ++a) {
    EXPECT_EQ(idx[a][0], a ^ 1);
    EXPECT_TRUE(ok[a][0]);
    int64_t candidates = 0;
    for (int64_t b = 0; b < 12; ++b) candidates += b != a && b != (a ^ 1) && lab[b] == lab[a];
    std::set<int64_t> seen;
    int64_t real = 0;
    for (int64_t s = 1; s < 4; ++s) {
      if (!ok[a][s]) continue;
      ++real;
      EXPECT_NE(idx[a][s], a);
      EXPECT_NE(idx[a][s], a ^ 1);
      EXPECT_EQ(lab[idx[a][s]], lab[a]);
      EXPECT_TRUE(seen.insert(idx[a][s]).second);
    }
    EXPECT_EQ(real, std::min<int64_t>(3, candidates)) << a;
  }
  EXPECT_TRUE(torch::equal(p.index, DrawPartners(labels, 12, 4, 99).index));
  // Different seeds give a different draw (label 0 has 6 views, 4 candidates, 3 drawn).
  bool differs = false;
  for (uint64_t seed = 100; seed < 105; ++seed) {
    differs |= !torch::equal(p.index, DrawPartners(labels, 12, 4, seed).index);
  }
  EXPECT_TRUE(differs);
  // No labels or S = 1: only a^+.
  EXPECT_EQ(DrawPartners(torch::Tensor(), 12, 4, 1).index.size(1), 1);
  EXPECT_EQ(DrawPartners(labels, 12, 1, 1).index.size(1), 1);
}

TEST(PixelLossTest, PoolIsExactTopKAndNegIsComplement) {
  const auto v = UnitMaps(2, 6, 15, 3);
  const int64_t k = 4;
  const auto pool = PositivePool(v[0], v[1], k);  // [15, 4]
  ASSERT_EQ(pool.sizes(), (std::vector<int64_t>{15, 4}));
  const auto neg = NegativeMask(pool, 15);
  const auto aff = torch::matmul(v[0].t(), v[1]);
  for (int64_t i = 0; i < 15; ++i) {
    std::vector<std::pair<double, int64_t>> row;
    for (int64_t j = 0; j < 15; ++j) row.push_back({-aff[i][j].item<double>(), j});
    std::sort(row.begin(), row.end());
    std::set<int64_t> expected, got;
    for (int64_t t = 0; t < k; ++t) expected.insert(row[t].second);
    for (int64_t t = 0; t < k; ++t) got.insert(pool[i][t].item<int64_t>());
    EXPECT_EQ(got, expected) << i;
    EXPECT_EQ(neg[i].sum().item<int64_t>(), 15 - k);
    for (int64_t j = 0; j < 15; ++j) EXPECT_EQ(neg[i][j].item<bool>(), expected.count(j) == 0);
  }
}

TEST(PixelLossTest, BaseCaseMatchesReference) {
  const auto v = UnitMaps(6, 5, 9, 4), u = UnitMaps(6, 5, 9, 5);
  PixelLossOptions o;
  o.pool_k = 3;
  o.num_selected = 3;
  o.tau = 0.2;
  PixelLossStats stats;
  const auto loss = PixelContrastiveLoss(v, u, torch::Tensor(), o, 7, &stats);
  const PartnerSet only_pair = DrawPartners(torch::Tensor(), 6, 4, 7);
  EXPECT_NEAR(loss.item<double>(), ReferenceLoss(v, u, only_pair, 3, 3, 0.2, false), 1e-10);
  EXPECT_EQ(stats.num_terms, 6 * 9 * 3);
  EXPECT_EQ(stats.mean_rejected_score, 0.0);
}

TEST(PixelLossTest, GradFilterWithLabelsMatchesReference) {
  const auto v = UnitMaps(8, 6, 12, 6), u = UnitMaps(8, 6, 12, 8);
  const auto labels = torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 0, 0, 0, 0}, torch::kLong);
  for (int64_t n_sel : {1, 2, 4, 5}) {
    for (bool multi : {false, true}) {
      PixelLossOptions o;
      o.pool_k = 5;
      o.num_selected = n_sel;
      o.partners = 3;
      o.tau = 0.1;
      o.multi_positive = multi;
      PixelLossStats stats;
      const auto loss = PixelContrastiveLoss(v, u, labels, o, 21, &stats);
      const PartnerSet p = DrawPartners(labels, 8, 3, 21);
      const double ref = ReferenceLoss(v, u, p, 5, n_sel, 0.1, multi);
      EXPECT_NEAR(loss.item<double>(), ref, 1e-10) << n_sel << " " << multi;
      const int64_t pairs = p.valid.sum().item<int64_t>();
      EXPECT_EQ(pairs, 2 + 6 * 3);  // label 1 views have only a^+; label 0 views get 2 more
      EXPECT_EQ(stats.num_terms, pairs * 12 * (multi ? 1 : n_sel));
      if (n_sel < 5) {
        EXPECT_LE(stats.mean_selected_score, stats.mean_rejected_score);
      }
      EXPECT_GT(stats.mean_p_pos, 0.0);
      EXPECT_LT(stats.mean_p_pos, 1.0);
    }
  }
}

TEST(PixelLossTest, FilterSelectsLowerScoresThanPlainPool) {
  const auto v = UnitMaps(4, 6, 16, 9), u = UnitMaps(4, 6, 16, 10);
  PixelLossOptions o;
  o.pool_k = 6;
  PixelLossStats plain, filtered;
  o.num_selected = 6;
  PixelContrastiveLoss(v, u, torch::Tensor(), o, 1, &plain);
  o.num_selected = 2;
  PixelContrastiveLoss(v, u, torch::Tensor(), o, 1, &filtered);
  EXPECT_LT(filtered.mean_selected_score, plain.mean_selected_score);
  // Lower S1 = easier positives = higher P_ij and similarity (spec 6.1).
  EXPECT_GT(filtered.mean_p_pos, plain.mean_p_pos);
  EXPECT_GT(filtered.mean_selected_similarity, plain.mean_selected_similarity);
  // Plain pool: the mean over selected equals the mean over the full pool.
  EXPECT_NEAR(plain.mean_selected_score,
              (2 * filtered.mean_selected_score + 4 * filtered.mean_rejected_score) / 6, 1e-9);
}

TEST(PixelLossTest, GradientsFlowToUNotV) {
  auto v = UnitMaps(4, 5, 10, 11).to(torch::kFloat).requires_grad_(true);
  auto u_raw = UnitMaps(4, 5, 10, 12).to(torch::kFloat).requires_grad_(true);
  PixelLossOptions o;
  o.pool_k = 3;
  o.num_selected = 2;
  const auto labels = torch::tensor(std::vector<int64_t>{0, 0, 0, 0}, torch::kLong);
  auto loss = PixelContrastiveLoss(v, u_raw * 1.0, labels, o, 3);
  EXPECT_TRUE(loss.requires_grad());
  loss.backward();
  ASSERT_TRUE(u_raw.grad().defined());
  EXPECT_GT(u_raw.grad().abs().sum().item<double>(), 0);
  EXPECT_TRUE(!v.grad().defined() || v.grad().abs().sum().item<double>() == 0);
}

TEST(PixelLossTest, GradientMatchesFiniteDifferences) {
  // With a fixed pool and selection, the loss is smooth in u.
  auto u0 = UnitMaps(4, 3, 6, 13);
  const auto v = UnitMaps(4, 3, 6, 14);
  PixelLossOptions o;
  o.pool_k = 2;
  o.num_selected = 1;
  o.tau = 0.5;
  auto u = u0.clone().requires_grad_(true);
  PixelContrastiveLoss(v, u, torch::Tensor(), o, 0).backward();
  const auto grad = u.grad().clone();
  torch::NoGradGuard no_grad;
  const double eps = 1e-6;
  for (int64_t t = 0; t < u0.numel(); t += 5) {
    auto up = u0.clone(), um = u0.clone();
    up.view({-1})[t] += eps;
    um.view({-1})[t] -= eps;
    const double fd = (PixelContrastiveLoss(v, up, torch::Tensor(), o, 0).item<double>() -
                       PixelContrastiveLoss(v, um, torch::Tensor(), o, 0).item<double>()) /
                      (2 * eps);
    EXPECT_NEAR(grad.view({-1})[t].item<double>(), fd, 1e-6) << t;
  }
}

TEST(PixelLossTest, RejectsBadOptions) {
  const auto v = UnitMaps(2, 3, 4, 1);
  PixelLossOptions o;
  o.pool_k = 4;  // == hw: no negatives
  o.num_selected = 4;
  EXPECT_THROW(PixelContrastiveLoss(v, v, torch::Tensor(), o, 0), c10::Error);
  o.pool_k = 2;
  o.num_selected = 3;
  EXPECT_THROW(PixelContrastiveLoss(v, v, torch::Tensor(), o, 0), c10::Error);
}

}  // namespace
}  // namespace gcl::core
