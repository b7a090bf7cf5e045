// PCGrad and the naive mean (spec 9, Eq. 2) against plain references.
#include <torch/torch.h>

#include <cmath>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/gcl/gradients/grad_layout.h"
#include "worker/gcl/gradients/pcgrad.h"

namespace gcl::core {
namespace {

std::vector<double> ToVec(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat64).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

torch::Tensor Flat(std::vector<float> v) { return torch::tensor(v, torch::kFloat32); }

GradLayout LayoutOf(const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<torch::Tensor> params;
  for (const auto& s : shapes) params.push_back(torch::zeros(s));
  return GradLayout(params);
}

// Yu et al., Algorithm 1, on blocks [begin, end) in double.
std::vector<double> ReferencePCGrad(const std::vector<std::vector<double>>& g,
                                    const std::vector<std::pair<size_t, size_t>>& blocks,
                                    uint64_t seed) {
  const size_t nm = g.size();
  const auto orders = PartnerOrders(nm, seed);
  std::vector<double> out(g[0].size(), 0.0);
  for (size_t m = 0; m < nm; ++m) {
    std::vector<double> gp = g[m];
    for (int o : orders[m]) {
      for (const auto& [b, e] : blocks) {
        double d = 0, n2 = 0, p2 = 0;
        for (size_t i = b; i < e; ++i) {
          d += gp[i] * g[o][i];
          n2 += g[o][i] * g[o][i];
          p2 += gp[i] * gp[i];
        }
        if (d < 0 && n2 > 0 && p2 > 0) {
          for (size_t i = b; i < e; ++i) gp[i] -= d / n2 * g[o][i];
        }
      }
    }
    for (size_t i = 0; i < out.size(); ++i) out[i] += gp[i] / nm;
  }
  return out;
}

class PCGradTest : public ::testing::TestWithParam<bool> {};

TEST_P(PCGradTest, MatchesReference) {
  const bool per_tensor = GetParam();
  GradLayout layout = LayoutOf({{3, 2, 3}, {3}, {4, 3}, {4}, {7}});
  std::vector<std::pair<size_t, size_t>> blocks;
  if (per_tensor) {
    for (int64_t q = 0; q < layout.num_tensors(); ++q)
      blocks.emplace_back(layout.offset(q), layout.offset(q) + layout.size(q));
  } else {
    blocks.emplace_back(0, layout.numel());
  }
  torch::Generator gen = at::detail::createCPUGenerator(5);
  for (uint64_t seed = 0; seed < 12; ++seed) {
    const int64_t nm = 2 + seed % 3;
    std::vector<torch::Tensor> grads;
    std::vector<std::vector<double>> gd;
    for (int64_t m = 0; m < nm; ++m) {
      grads.push_back(torch::randn({layout.numel()}, gen));
      gd.push_back(ToVec(grads.back()));
    }
    std::vector<double> got = ToVec(PCGradCombine(grads, layout, per_tensor, seed));
    std::vector<double> want = ReferencePCGrad(gd, blocks, seed);
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-5) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Granularity, PCGradTest, ::testing::Bool());

TEST(PCGradTest, HandExample) {
  GradLayout layout = LayoutOf({{2}});
  ConflictStats s;
  torch::Tensor out = PCGradCombine({Flat({1, 0}), Flat({-0.6f, 0.8f})}, layout, false, 0, &s);
  EXPECT_NEAR(out[0].item<float>(), 0.32, 1e-6);
  EXPECT_NEAR(out[1].item<float>(), 0.64, 1e-6);
  for (const PairStats& p : s.pairs) {
    EXPECT_EQ(p.n_conflict, 1);
    EXPECT_EQ(p.n_modified, 1);
    EXPECT_NEAR(p.w_mean, 0.6, 1e-6);  // −(g_m · g_m')/‖g_m'‖²
    EXPECT_NEAR(p.w_rel, 0.6, 1e-6);
    EXPECT_NEAR(p.cos_pre, -0.6, 1e-6);
    EXPECT_NEAR(p.cos_post, 0.0, 1e-6);
  }
  EXPECT_NEAR(s.norm_post[0], 0.8, 1e-6);
}

// Three tensors: two conflict, one agrees. The whole vector agrees overall, so
// whole-vector PCGrad leaves everything alone while per-tensor projects.
TEST(PCGradTest, CountersPerTensorAndWhole) {
  GradLayout layout = LayoutOf({{2}, {2}, {2}});
  torch::Tensor g0 = Flat({1, 0, 1, 0, 5, 0}), g1 = Flat({-1, 1, -1, 1, 5, 0});
  ConflictStats per, whole;
  PCGradCombine({g0, g1}, layout, true, 0, &per);
  torch::Tensor w = PCGradCombine({g0, g1}, layout, false, 0, &whole);
  EXPECT_TRUE(torch::allclose(w, (g0 + g1) / 2));
  for (const PairStats& p : per.pairs) {
    EXPECT_EQ(p.n_conflict, 2);
    EXPECT_EQ(p.n_none, 1);
    EXPECT_EQ(p.n_slight, 0);
    EXPECT_EQ(p.n_modified, 2);
    EXPECT_NEAR(p.cos_pre_tensor_min, -std::sqrt(0.5), 1e-6);
  }
  for (const PairStats& p : whole.pairs) {
    EXPECT_EQ(p.n_none, 1);
    EXPECT_EQ(p.n_modified, 0);
    EXPECT_DOUBLE_EQ(p.cos_post, p.cos_pre);
  }
}

TEST(MeanCombineTest, MeanAndStats) {
  GradLayout layout = LayoutOf({{2}, {1}});
  torch::Tensor g0 = Flat({1, 0, 2}), g1 = Flat({-1, 1, 2}), g2 = Flat({0, 3, -1});
  ConflictStats s;
  torch::Tensor out = MeanCombine({g0, g1, g2}, layout, &s);
  EXPECT_TRUE(torch::allclose(out, Flat({0, 4.f / 3, 1})));
  ASSERT_EQ(s.pairs.size(), 6u);
  for (const PairStats& p : s.pairs) {
    EXPECT_DOUBLE_EQ(p.cos_pre, p.cos_post);
    EXPECT_EQ(p.n_modified, 0);
  }
  // (0, 1): tensor 0 dot −1 (conflict), tensor 1 dot 4 (none); whole cos = 3/(√5·√6).
  EXPECT_EQ(s.pairs[0].n_conflict, 1);
  EXPECT_EQ(s.pairs[0].n_none, 1);
  EXPECT_NEAR(s.pairs[0].cos_pre, 3 / (std::sqrt(5.0) * std::sqrt(6.0)), 1e-6);
  EXPECT_NEAR(s.norm_pre[2], std::sqrt(10.0), 1e-6);
  EXPECT_NEAR(s.update_norm, std::sqrt(16.0 / 9 + 1), 1e-6);
  EXPECT_NEAR(s.naive_norm, s.update_norm, 1e-9);
  EXPECT_NEAR(s.update_dot[2], 4.0 - 1.0, 1e-6);
}

}  // namespace
}  // namespace gcl::core
