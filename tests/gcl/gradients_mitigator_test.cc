// GradMitigator (spec 7.3-7.5, unit tests 2 and 3 of spec 12) and GradLayout.
#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/gcl/gradients/grad_layout.h"
#include "worker/gcl/gradients/grad_mitigator.h"
#include "worker/gcl/gradients/pcgrad.h"

namespace gcl::core {
namespace {

using ::gcl::testing::StatusIs;

std::vector<double> ToVec(const torch::Tensor& t) {
  torch::Tensor c = t.to(torch::kFloat64).contiguous().reshape({-1});
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

double Dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}
double Norm(const std::vector<double>& a) { return std::sqrt(Dot(a, a)); }
double Cos(const std::vector<double>& a, const std::vector<double>& b) {
  return Dot(a, b) / (Norm(a) * Norm(b));
}

torch::Tensor Flat(std::vector<float> v) { return torch::tensor(v, torch::kFloat32); }

GradLayout LayoutOf(const std::vector<std::vector<int64_t>>& shapes) {
  std::vector<torch::Tensor> params;
  for (const auto& s : shapes) params.push_back(torch::zeros(s));
  return GradLayout(params);
}

GradMitigator Mitigator(int64_t m, const GradLayout& layout, double beta,
                        EmaUpdate ema = EmaUpdate::kAlways,
                        Granularity gran = Granularity::kPerTensor) {
  GradMitigatorOptions o;
  o.beta = beta;
  o.ema_update = ema;
  o.granularity = gran;
  return GradMitigator(m, layout, o);
}

TEST(GradLayoutTest, FlattenUnflattenRoundTrip) {
  std::vector<torch::Tensor> params = {torch::zeros({2, 3}), torch::zeros({4}),
                                       torch::zeros({1, 2, 2})};
  GradLayout layout(params);
  EXPECT_EQ(layout.num_tensors(), 3);
  EXPECT_EQ(layout.numel(), 14);
  EXPECT_EQ(layout.offset(0), 0);
  EXPECT_EQ(layout.offset(1), 6);
  EXPECT_EQ(layout.offset(2), 10);
  EXPECT_EQ(layout.size(2), 4);
  std::vector<torch::Tensor> grads = {torch::arange(6, torch::kFloat64).reshape({2, 3}),
                                      torch::Tensor(), torch::full({1, 2, 2}, 7.0)};
  torch::Tensor flat = layout.Flatten(grads);
  EXPECT_EQ(flat.scalar_type(), torch::kFloat32);
  EXPECT_EQ(ToVec(flat), (std::vector<double>{0, 1, 2, 3, 4, 5, 0, 0, 0, 0, 7, 7, 7, 7}));
  std::vector<torch::Tensor> back;
  layout.Unflatten(flat, &back);
  ASSERT_EQ(back.size(), 3u);
  EXPECT_EQ(back[0].sizes(), torch::IntArrayRef({2, 3}));
  EXPECT_EQ(back[2].sizes(), torch::IntArrayRef({1, 2, 2}));
  EXPECT_TRUE(torch::equal(back[0], grads[0].to(torch::kFloat32)));
  EXPECT_EQ(back[1].sum().item<float>(), 0.0f);
  // Views alias the flat buffer.
  flat[6] = 5.0f;
  EXPECT_EQ(back[1][0].item<float>(), 5.0f);
  // Expand repeats per-tensor coefficients over segments.
  EXPECT_EQ(ToVec(layout.Expand(torch::tensor({1.0f, 2.0f, 3.0f}))),
            (std::vector<double>{1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3}));
  EXPECT_THROW(layout.Flatten({grads[0]}), c10::Error);
}

TEST(GradLayoutTest, TensorGramMatchesDots) {
  GradLayout layout = LayoutOf({{3}, {2}});
  torch::Tensor g = TensorGram(layout, {Flat({1, 2, 3, 4, 5}), Flat({-1, 0, 2, 1, 1})});
  ASSERT_EQ(g.sizes(), torch::IntArrayRef({2, 2, 2}));
  EXPECT_DOUBLE_EQ(g[0][0][0].item<double>(), 14);
  EXPECT_DOUBLE_EQ(g[0][0][1].item<double>(), 5);
  EXPECT_DOUBLE_EQ(g[0][1][1].item<double>(), 5);
  EXPECT_DOUBLE_EQ(g[1][0][0].item<double>(), 41);
  EXPECT_DOUBLE_EQ(g[1][0][1].item<double>(), 9);
  EXPECT_DOUBLE_EQ(g[1][1][1].item<double>(), 2);
}

TEST(GradLayoutTest, FusedTensorGramEqualsTheDots) {
  // The GPU path, run on the CPU: per-tensor segment sums of the products.
  torch::manual_seed(3);
  GradLayout layout = LayoutOf({{16, 8, 3, 3}, {16}, {1}, {32, 16, 3, 3}, {32}, {7, 5}});
  std::vector<torch::Tensor> grads;
  for (int m = 0; m < 3; ++m) grads.push_back(torch::randn({layout.numel()}));
  const torch::Tensor dots = TensorGram(layout, grads);
  const torch::Tensor fused = TensorGramFused(layout, grads);
  ASSERT_EQ(fused.sizes(), torch::IntArrayRef({6, 3, 3}));
  EXPECT_TRUE(torch::allclose(fused, dots, /*rtol=*/1e-5, /*atol=*/1e-4))
      << "max diff " << (fused - dots).abs().max().item<double>();
  EXPECT_TRUE(torch::equal(fused, fused.transpose(1, 2)));
  // The hand-computed case above.
  GradLayout two = LayoutOf({{3}, {2}});
  const torch::Tensor g = TensorGramFused(two, {Flat({1, 2, 3, 4, 5}), Flat({-1, 0, 2, 1, 1})});
  EXPECT_TRUE(torch::equal(g, torch::tensor({14.0, 5.0, 5.0, 5.0, 41.0, 9.0, 9.0, 2.0},
                                            torch::kFloat64).reshape({2, 2, 2})));
}

// Spec 12 test 2: after one injection cos(g'_m, g_m') = φ̂ for φ ∈ (−1, φ̂).
TEST(GradMitigatorTest, InjectionReachesTarget) {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> unif(0.0, 1.0);
  std::normal_distribution<double> normal(0.0, 1.0);
  const int64_t n = 64;
  GradLayout layout = LayoutOf({{n}});
  for (int trial = 0; trial < 200; ++trial) {
    const double target = -0.95 + 1.9 * unif(rng);
    const double phi = -0.999 + (target + 0.999) * unif(rng);  // φ ∈ (−1, φ̂)
    // Orthonormal e1, e2 by Gram-Schmidt on random vectors.
    std::vector<double> e1(n), e2(n);
    for (auto& x : e1) x = normal(rng);
    for (auto& x : e2) x = normal(rng);
    const double n1 = Norm(e1);
    for (auto& x : e1) x /= n1;
    const double p = Dot(e1, e2);
    for (int64_t i = 0; i < n; ++i) e2[i] -= p * e1[i];
    const double n2 = Norm(e2);
    for (auto& x : e2) x /= n2;
    const double r0 = 0.1 + 5 * unif(rng), r1 = 0.1 + 5 * unif(rng);
    std::vector<float> g0(n), g1(n);
    for (int64_t i = 0; i < n; ++i) {
      g0[i] = static_cast<float>(r0 * (phi * e1[i] + std::sqrt(1 - phi * phi) * e2[i]));
      g1[i] = static_cast<float>(r1 * e1[i]);
    }
    GradMitigator gm = Mitigator(2, layout, 0.01);
    // Target of 0 against 1 is φ̂; label 1's target is ~−1, so g'_1 = g_1 and
    // g'_0 = 2ĝ − g_1.
    GCL_ASSERT_OK(gm.SetTargets(
        torch::tensor({0.0, target, -1.0 + 1e-6, 0.0}, torch::kFloat64).reshape({2, 2, 1})));
    ConflictStats stats;
    torch::Tensor out = gm.Combine({Flat(g0), Flat(g1)}, trial, &stats);
    std::vector<double> ghat = ToVec(out), g1d = ToVec(Flat(g1)), g0p(n);
    for (int64_t i = 0; i < n; ++i) g0p[i] = 2 * ghat[i] - g1d[i];
    EXPECT_NEAR(Cos(g0p, g1d), target, 1e-5) << "trial " << trial << " phi " << phi;
    EXPECT_NEAR(stats.pairs[0].cos_post, target, 1e-5);
    EXPECT_EQ(stats.pairs[0].n_modified, 1);
    EXPECT_EQ(stats.pairs[1].n_modified, 0);
    EXPECT_GT(stats.pairs[0].w_max, 0.0);  // w > 0 whenever φ < φ̂ < 1
  }
}

// A plain reference of spec 7.5 in double, written like gcl_step.py.
struct Reference {
  int64_t m_count;
  std::vector<int64_t> sizes;
  double beta;
  bool on_modify;
  std::vector<double> target;  // [M, M, Q]

  std::vector<double> Combine(const std::vector<std::vector<double>>& g, uint64_t seed) {
    const int64_t nq = sizes.size();
    const auto orders = PartnerOrders(m_count, seed);
    std::vector<double> out(g[0].size(), 0.0);
    for (int64_t m = 0; m < m_count; ++m) {
      std::vector<double> gm = g[m];
      for (int o : orders[m]) {
        int64_t off = 0;
        for (int64_t q = 0; q < nq; ++q) {
          double d = 0, a2 = 0, b2 = 0;
          for (int64_t i = off; i < off + sizes[q]; ++i) {
            d += gm[i] * g[o][i];
            a2 += gm[i] * gm[i];
            b2 += g[o][i] * g[o][i];
          }
          const double na = std::sqrt(a2), nb = std::sqrt(b2);
          if (na >= 1e-12 && nb >= 1e-12) {
            const double phi = d / (na * nb);
            double& t = target[(m * m_count + o) * nq + q];
            const bool mod = phi < t;
            if (mod) {
              const double w = na * (t * std::sqrt(1 - phi * phi) - phi * std::sqrt(1 - t * t)) /
                               (nb * std::sqrt(1 - t * t) + 1e-12);
              for (int64_t i = off; i < off + sizes[q]; ++i) gm[i] += w * g[o][i];
            }
            if (!on_modify || mod)
              t = std::min(std::max((1 - beta) * t + beta * phi, -1 + 1e-6), 1 - 1e-6);
          }
          off += sizes[q];
        }
      }
      for (size_t i = 0; i < out.size(); ++i) out[i] += gm[i] / m_count;
    }
    return out;
  }
};

void ExpectMatchesReference(EmaUpdate ema) {
  const std::vector<std::vector<int64_t>> shapes = {{4, 1, 3, 3}, {4}, {4}, {6, 4, 3, 3}, {6}, {6}};
  GradLayout layout = LayoutOf(shapes);
  const int64_t nm = 3;
  GradMitigator gm = Mitigator(nm, layout, 0.3, ema);
  Reference ref{nm, layout.sizes(), 0.3, ema == EmaUpdate::kOnModify,
                std::vector<double>(nm * nm * layout.num_tensors(), 0.0)};
  torch::Generator gen = at::detail::createCPUGenerator(7);
  torch::Tensor base = torch::randn({layout.numel()}, gen);
  for (int step = 0; step < 8; ++step) {
    std::vector<torch::Tensor> grads;
    std::vector<std::vector<double>> gd;
    for (int64_t m = 0; m < nm; ++m) {
      // Correlated with a shared direction so all categories occur.
      torch::Tensor g = 0.3 * base + torch::randn({layout.numel()}, gen);
      grads.push_back(g);
      gd.push_back(ToVec(g));
    }
    std::vector<double> got = ToVec(gm.Combine(grads, 1000 + step));
    std::vector<double> want = ref.Combine(gd, 1000 + step);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i)
      ASSERT_NEAR(got[i], want[i], 1e-4) << "step " << step << " i " << i;
    std::vector<double> tg = ToVec(gm.targets());
    for (size_t i = 0; i < tg.size(); ++i) ASSERT_NEAR(tg[i], ref.target[i], 1e-6);
  }
  // The targets moved away from 0.
  EXPECT_GT(gm.targets().abs().max().item<double>(), 0.01);
}

TEST(GradMitigatorTest, MatchesPlainReferenceAlways) { ExpectMatchesReference(EmaUpdate::kAlways); }
TEST(GradMitigatorTest, MatchesPlainReferenceOnModify) {
  ExpectMatchesReference(EmaUpdate::kOnModify);
}

// Spec 12 test 3: β = 0, φ̂ = 0 → PCGrad per tensor (dot < 0 only).
TEST(GradMitigatorTest, BetaZeroEqualsPerTensorPCGrad) {
  GradLayout layout = LayoutOf({{3, 2, 3, 3}, {3}, {5, 3, 3, 3}, {5}});
  torch::Generator gen = at::detail::createCPUGenerator(11);
  GradMitigator gm = Mitigator(3, layout, 0.0);
  for (uint64_t seed = 0; seed < 10; ++seed) {
    std::vector<torch::Tensor> grads;
    for (int m = 0; m < 3; ++m) grads.push_back(torch::randn({layout.numel()}, gen));
    torch::Tensor a = gm.Combine(grads, seed);
    torch::Tensor b = PCGradCombine(grads, layout, /*per_tensor=*/true, seed);
    EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-5)) << (a - b).abs().max().item<float>();
    EXPECT_EQ(gm.targets().abs().max().item<double>(), 0.0);
  }
}

TEST(GradMitigatorTest, NonConflictingLeftUnchanged) {
  GradLayout layout = LayoutOf({{2}, {3}});
  GradMitigator gm = Mitigator(2, layout, 0.01);
  // Positive cosines in both tensors, targets 0: nothing to inject.
  torch::Tensor g0 = Flat({1, 0, 1, 2, 0}), g1 = Flat({1, 1, 2, 1, 1});
  ConflictStats stats;
  torch::Tensor out = gm.Combine({g0, g1}, 3, &stats);
  EXPECT_TRUE(torch::equal(out, (g0 + g1) / 2));
  for (const auto& p : stats.pairs) {
    EXPECT_EQ(p.n_none, 2);
    EXPECT_EQ(p.n_modified, 0);
    EXPECT_DOUBLE_EQ(p.cos_post, p.cos_pre);
  }
}

// The 2-label example by hand: g0 = (1, 0), g1 = (−0.6, 0.8), φ = −0.6, φ̂ = 0:
// w = 1·(0·0.8 + 0.6·1)/(1·1) = 0.6 both ways, g'_0 = (0.64, 0.48),
// g'_1 = (0, 0.8), ĝ = (0.32, 0.64).
TEST(GradMitigatorTest, TwoLabelStatsByHand) {
  GradLayout layout = LayoutOf({{2}});
  GradMitigator gm = Mitigator(2, layout, 0.01);
  ConflictStats s;
  torch::Tensor out = gm.Combine({Flat({1, 0}), Flat({-0.6f, 0.8f})}, 0, &s);
  std::vector<double> o = ToVec(out);
  EXPECT_NEAR(o[0], 0.32, 1e-6);
  EXPECT_NEAR(o[1], 0.64, 1e-6);
  ASSERT_EQ(s.pairs.size(), 2u);
  for (int k = 0; k < 2; ++k) {
    const PairStats& p = s.pairs[k];
    EXPECT_EQ(p.m, k);
    EXPECT_EQ(p.other, 1 - k);
    EXPECT_NEAR(p.cos_pre, -0.6, 1e-6);
    EXPECT_NEAR(p.cos_post, 0.0, 1e-6);
    EXPECT_NEAR(p.cos_pre_tensor_mean, -0.6, 1e-6);
    EXPECT_NEAR(p.cos_pre_tensor_min, -0.6, 1e-6);
    EXPECT_EQ(p.n_conflict, 1);
    EXPECT_EQ(p.n_slight, 0);
    EXPECT_EQ(p.n_none, 0);
    EXPECT_EQ(p.n_modified, 1);
    EXPECT_NEAR(p.w_mean, 0.6, 1e-6);
    EXPECT_NEAR(p.w_max, 0.6, 1e-6);
    EXPECT_NEAR(p.w_rel, 0.6, 1e-6);
    // Eq. 4: 0.99·0 + 0.01·(−0.6).
    EXPECT_NEAR(p.target_mean, -0.006, 1e-9);
    EXPECT_NEAR(p.target_min, -0.006, 1e-9);
    EXPECT_NEAR(p.target_max, -0.006, 1e-9);
  }
  EXPECT_NEAR(s.norm_pre[0], 1.0, 1e-6);
  EXPECT_NEAR(s.norm_pre[1], 1.0, 1e-6);
  EXPECT_NEAR(s.norm_post[0], 0.8, 1e-6);
  EXPECT_NEAR(s.norm_post[1], 0.8, 1e-6);
  EXPECT_NEAR(s.update_norm, std::sqrt(0.32 * 0.32 + 0.64 * 0.64), 1e-6);
  EXPECT_NEAR(s.naive_norm, std::sqrt(0.2 * 0.2 + 0.4 * 0.4), 1e-6);
  EXPECT_NEAR(s.update_dot[0], 0.32, 1e-6);
  EXPECT_NEAR(s.update_dot[1], 0.32, 1e-6);
  EXPECT_NEAR(s.update_cos[0], 0.32 / s.update_norm, 1e-6);
  EXPECT_NEAR(s.update_cos[1], 0.32 / s.update_norm, 1e-6);
}

TEST(GradMitigatorTest, EmaUpdateAlwaysVsOnModify) {
  GradLayout layout = LayoutOf({{2}});
  // φ = 0.6 ≥ φ̂ = 0: not modified. always: φ̂ ← 0.5·0 + 0.5·0.6 = 0.3.
  std::vector<torch::Tensor> agree = {Flat({1, 0}), Flat({0.6f, 0.8f})};
  GradMitigator always = Mitigator(2, layout, 0.5, EmaUpdate::kAlways);
  GradMitigator on_mod = Mitigator(2, layout, 0.5, EmaUpdate::kOnModify);
  always.Combine(agree, 0);
  on_mod.Combine(agree, 0);
  EXPECT_NEAR(always.targets()[0][1][0].item<double>(), 0.3, 1e-6);
  EXPECT_NEAR(always.targets()[1][0][0].item<double>(), 0.3, 1e-6);
  EXPECT_EQ(on_mod.targets()[0][1][0].item<double>(), 0.0);
  // Second step: 0.6 ≥ 0.3, always: 0.5·0.3 + 0.5·0.6 = 0.45.
  always.Combine(agree, 1);
  EXPECT_NEAR(always.targets()[0][1][0].item<double>(), 0.45, 1e-6);
  // Conflict φ = −0.6 < 0: both modes update with the pre-injection φ:
  // 0.5·0 + 0.5·(−0.6) = −0.3; next step −0.6 < −0.3 → modified again, −0.45.
  std::vector<torch::Tensor> conflict = {Flat({1, 0}), Flat({-0.6f, 0.8f})};
  on_mod.Combine(conflict, 0);
  EXPECT_NEAR(on_mod.targets()[0][1][0].item<double>(), -0.3, 1e-6);
  EXPECT_NEAR(on_mod.targets()[1][0][0].item<double>(), -0.3, 1e-6);
  ConflictStats s;
  on_mod.Combine(conflict, 1, &s);
  EXPECT_NEAR(on_mod.targets()[0][1][0].item<double>(), -0.45, 1e-6);
  EXPECT_EQ(s.pairs[0].n_modified, 1);
  // With φ̂ = −0.3 the injection brings the cosine to −0.3, not 0.
  EXPECT_NEAR(s.pairs[0].cos_post, -0.3, 1e-5);
}

TEST(GradMitigatorTest, TargetsAreClamped) {
  GradLayout layout = LayoutOf({{2}});
  GradMitigator gm = Mitigator(2, layout, 1.0);
  gm.Combine({Flat({1, 0}), Flat({2, 0})}, 0);  // φ = 1 → 1 − 1e-6
  EXPECT_DOUBLE_EQ(gm.targets()[0][1][0].item<double>(), 1 - 1e-6);
  gm.Combine({Flat({1, 0}), Flat({-2, 0})}, 0);  // φ = −1 → −1 + 1e-6
  EXPECT_DOUBLE_EQ(gm.targets()[0][1][0].item<double>(), -1 + 1e-6);
}

// Three tensors, targets 0.5: tensor A φ = 0.8 (none), B φ = 0.3 (slight),
// C φ = −0.5 (conflict).
TEST(GradMitigatorTest, CategoryCountersByHand) {
  GradLayout layout = LayoutOf({{2}, {2}, {2}});
  GradMitigator gm = Mitigator(2, layout, 0.01);
  GCL_ASSERT_OK(gm.SetTargets(torch::full({2, 2, 3}, 0.5, torch::kFloat64)));
  const float s3 = std::sqrt(1 - 0.09f), s5 = std::sqrt(1 - 0.25f);
  torch::Tensor g0 = Flat({1, 0, 2, 0, 3, 0});
  torch::Tensor g1 = Flat({0.8f, 0.6f, 0.3f, s3, -0.5f, s5});
  ConflictStats s;
  gm.Combine({g0, g1}, 5, &s);
  for (const PairStats& p : s.pairs) {
    EXPECT_EQ(p.n_none, 1);
    EXPECT_EQ(p.n_slight, 1);
    EXPECT_EQ(p.n_conflict, 1);
    EXPECT_EQ(p.n_modified, 2);
    // 0.99·0.5 + 0.01·φ for φ = 0.8, 0.3, −0.5.
    EXPECT_NEAR(p.target_max, 0.503, 1e-6);
    EXPECT_NEAR(p.target_min, 0.490, 1e-6);
    EXPECT_NEAR(p.target_mean, (0.503 + 0.498 + 0.490) / 3, 1e-6);
    EXPECT_NEAR(p.cos_pre_tensor_mean, (0.8 + 0.3 - 0.5) / 3, 1e-6);
    EXPECT_NEAR(p.cos_pre_tensor_min, -0.5, 1e-6);
  }
}

// Per-tensor granularity: a conflict in one tensor leaves the others alone.
TEST(GradMitigatorTest, PerTensorIsolation) {
  GradLayout layout = LayoutOf({{2}, {3}});
  torch::Tensor g0 = Flat({1, 0, 1, 1, 1}), g1 = Flat({-1, 0.2f, 1, 2, 0.5f});
  GradMitigator gm = Mitigator(2, layout, 0.01);
  torch::Tensor out = gm.Combine({g0, g1}, 0);
  torch::Tensor mean = (g0 + g1) / 2;
  EXPECT_TRUE(torch::equal(out.narrow(0, 2, 3), mean.narrow(0, 2, 3)));
  EXPECT_FALSE(torch::allclose(out.narrow(0, 0, 2), mean.narrow(0, 0, 2)));
  // Whole-model granularity sees one block: overall cos > 0, so unchanged,
  // and a single target per pair.
  GradMitigator whole = Mitigator(2, layout, 0.01, EmaUpdate::kAlways, Granularity::kWholeModel);
  EXPECT_EQ(whole.targets().sizes(), torch::IntArrayRef({2, 2, 1}));
  ConflictStats s;
  EXPECT_TRUE(torch::allclose(whole.Combine({g0, g1}, 0, &s), mean));
  EXPECT_EQ(s.pairs[0].n_none, 1);
  EXPECT_EQ(s.pairs[0].n_conflict, 0);
}

TEST(GradMitigatorTest, WholeModelInjectsOnWholeVector) {
  GradLayout layout = LayoutOf({{1}, {1}});
  GradMitigator whole = Mitigator(2, layout, 0.01, EmaUpdate::kAlways, Granularity::kWholeModel);
  // Same as the 2-D hand example, split over two tensors.
  torch::Tensor out = whole.Combine({Flat({1, 0}), Flat({-0.6f, 0.8f})}, 0);
  EXPECT_NEAR(out[0].item<float>(), 0.32, 1e-6);
  EXPECT_NEAR(out[1].item<float>(), 0.64, 1e-6);
}

TEST(GradMitigatorTest, ZeroNormTensorSkipped) {
  GradLayout layout = LayoutOf({{2}, {2}});
  GradMitigator gm = Mitigator(2, layout, 0.5);
  ConflictStats s;
  torch::Tensor out = gm.Combine({Flat({1, 0, 1, 0}), Flat({-1, 0, 0, 0})}, 0, &s);
  EXPECT_EQ(gm.targets()[0][1][1].item<double>(), 0.0);  // not updated
  EXPECT_NE(gm.targets()[0][1][0].item<double>(), 0.0);
  EXPECT_EQ(s.pairs[0].n_none + s.pairs[0].n_slight + s.pairs[0].n_conflict, 1);
  EXPECT_TRUE(std::isfinite(out.sum().item<float>()));
}

TEST(GradMitigatorTest, DeterministicAndSetTargetsChecksShape) {
  GradLayout layout = LayoutOf({{5}, {3}});
  torch::Generator gen = at::detail::createCPUGenerator(3);
  std::vector<torch::Tensor> grads;
  for (int m = 0; m < 4; ++m) grads.push_back(torch::randn({8}, gen));
  GradMitigator a = Mitigator(4, layout, 0.1), b = Mitigator(4, layout, 0.1);
  EXPECT_TRUE(torch::equal(a.Combine(grads, 9), b.Combine(grads, 9)));
  EXPECT_TRUE(torch::equal(a.targets(), b.targets()));
  EXPECT_THAT(a.SetTargets(torch::zeros({4, 4, 3}, torch::kFloat64)),
              StatusIs(absl::StatusCode::kInvalidArgument, "expected shape"));
  GCL_EXPECT_OK(b.SetTargets(a.targets()));
  EXPECT_THROW(a.Combine({grads[0]}, 0), c10::Error);
}

TEST(PartnerOrdersTest, PermutationsOfTheOthers) {
  bool differ = false;
  const auto first = PartnerOrders(4, 0);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const auto orders = PartnerOrders(4, seed);
    ASSERT_EQ(orders.size(), 4u);
    for (int m = 0; m < 4; ++m) {
      std::vector<int> sorted = orders[m];
      std::sort(sorted.begin(), sorted.end());
      std::vector<int> want;
      for (int j = 0; j < 4; ++j)
        if (j != m) want.push_back(j);
      EXPECT_EQ(sorted, want);
    }
    differ |= orders != first;
  }
  EXPECT_TRUE(differ);
  EXPECT_EQ(PartnerOrders(4, 123), PartnerOrders(4, 123));
}

// Timing of the encoder-sized case (base 16, depth 5: ~1.9 M params, ~30
// tensors). Run with --gtest_also_run_disabled_tests; no assertions on time.
TEST(GradMitigatorTest, DISABLED_TimingEncoderScale) {
  std::vector<std::vector<int64_t>> shapes;
  int64_t cin = 1;
  for (int64_t c : {16, 32, 64, 128, 256}) {
    shapes.push_back({c, cin, 3, 3});
    shapes.push_back({c});
    shapes.push_back({c});
    shapes.push_back({c, c, 3, 3});
    shapes.push_back({c});
    shapes.push_back({c});
    cin = c;
  }
  GradLayout layout = LayoutOf(shapes);
  std::printf("tensors %ld numel %ld\n", static_cast<long>(layout.num_tensors()),
              static_cast<long>(layout.numel()));
  torch::Generator gen = at::detail::createCPUGenerator(1);
  std::vector<torch::Tensor> grads;
  for (int m = 0; m < 3; ++m) grads.push_back(torch::randn({layout.numel()}, gen));
  GradMitigator gm = Mitigator(3, layout, 0.01);
  auto time_it = [&](const char* name, auto fn) {
    fn();
    const auto t0 = std::chrono::steady_clock::now();
    const int reps = 10;
    for (int i = 0; i < reps; ++i) fn();
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() /
        reps;
    std::printf("%-28s %8.3f ms (threads %d)\n", name, ms, at::get_num_threads());
  };
  ConflictStats s;
  time_it("mitigator", [&] { gm.Combine(grads, 1); });
  time_it("mitigator+stats", [&] { gm.Combine(grads, 1, &s); });
  time_it("pcgrad whole", [&] { PCGradCombine(grads, layout, false, 1); });
  time_it("pcgrad per-tensor", [&] { PCGradCombine(grads, layout, true, 1); });
  time_it("mean", [&] { MeanCombine(grads, layout); });
  time_it("flatten", [&] {
    std::vector<torch::Tensor> parts;
    layout.Unflatten(grads[0], &parts);
    layout.Flatten(parts);
  });
}

}  // namespace
}  // namespace gcl::core
