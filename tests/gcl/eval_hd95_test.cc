// HD95 and the exact EDT against independent brute-force references.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <ATen/ATen.h>

#include "gtest/gtest.h"
#include "worker/gcl/eval/dice.h"
#include "worker/gcl/eval/hd95.h"

namespace gcl::core {
namespace {

struct Vox {
  int64_t s, y, x;
};

at::Tensor RandomMask(std::mt19937_64& rng, int64_t S, int64_t H, int64_t W, double p) {
  std::bernoulli_distribution bern(p);
  at::Tensor m = at::zeros({S, H, W}, at::kByte);
  auto a = m.accessor<uint8_t, 3>();
  for (int64_t s = 0; s < S; ++s)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) a[s][y][x] = bern(rng) ? 1 : 0;
  return m;
}

// Reference surface: inside voxels with a face neighbour outside (or out of volume).
std::vector<Vox> BruteSurface(const at::Tensor& mask) {
  auto a = mask.accessor<uint8_t, 3>();
  const int64_t S = mask.size(0), H = mask.size(1), W = mask.size(2);
  std::vector<Vox> out;
  const int64_t d[6][3] = {{1, 0, 0}, {-1, 0, 0}, {0, 1, 0}, {0, -1, 0}, {0, 0, 1}, {0, 0, -1}};
  for (int64_t s = 0; s < S; ++s)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        if (!a[s][y][x]) continue;
        bool surface = false;
        for (const auto& o : d) {
          int64_t ss = s + o[0], yy = y + o[1], xx = x + o[2];
          if (ss < 0 || ss >= S || yy < 0 || yy >= H || xx < 0 || xx >= W || !a[ss][yy][xx]) {
            surface = true;
          }
        }
        if (surface) out.push_back({s, y, x});
      }
  return out;
}

double Dist(const Vox& a, const Vox& b, const std::array<double, 3>& sp) {
  const double dz = (a.s - b.s) * sp[0], dy = (a.y - b.y) * sp[1], dx = (a.x - b.x) * sp[2];
  return std::sqrt(dz * dz + dy * dy + dx * dx);
}

// O(|A| |B|) HD95 with numpy-style linear percentile over pooled distances.
double BruteHd95(const at::Tensor& p, const at::Tensor& g, std::array<double, 3> sp) {
  std::vector<Vox> sp_vox = BruteSurface(p), sg_vox = BruteSurface(g);
  if (sp_vox.empty() || sg_vox.empty()) return std::nan("");
  std::vector<double> d;
  for (const auto& a : sp_vox) {
    double best = INFINITY;
    for (const auto& b : sg_vox) best = std::min(best, Dist(a, b, sp));
    d.push_back(best);
  }
  for (const auto& b : sg_vox) {
    double best = INFINITY;
    for (const auto& a : sp_vox) best = std::min(best, Dist(a, b, sp));
    d.push_back(best);
  }
  std::sort(d.begin(), d.end());
  const double rank = 0.95 * (d.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const size_t hi = std::min(lo + 1, d.size() - 1);
  return d[lo] + (d[hi] - d[lo]) * (rank - lo);
}

TEST(Hd95Test, SurfaceMatchesBruteForce) {
  std::mt19937_64 rng(7);
  at::Tensor m = RandomMask(rng, 5, 6, 7, 0.7);
  at::Tensor s = SurfaceMask(m);
  std::vector<Vox> ref = BruteSurface(m);
  EXPECT_EQ(s.sum().item<int64_t>(), static_cast<int64_t>(ref.size()));
  auto a = s.accessor<uint8_t, 3>();
  for (const auto& v : ref) EXPECT_EQ(a[v.s][v.y][v.x], 1);
}

TEST(Hd95Test, EdtMatchesBruteForceAnisotropic) {
  std::mt19937_64 rng(3);
  const std::array<double, 3> sp = {2.5, 0.7, 1.3};
  for (double p : {0.02, 0.1, 0.5}) {
    at::Tensor f = RandomMask(rng, 6, 9, 8, p);
    at::Tensor edt = EuclideanDistanceTransform(f, sp);
    std::vector<Vox> feats;
    auto fa = f.accessor<uint8_t, 3>();
    for (int64_t s = 0; s < 6; ++s)
      for (int64_t y = 0; y < 9; ++y)
        for (int64_t x = 0; x < 8; ++x)
          if (fa[s][y][x]) feats.push_back({s, y, x});
    ASSERT_FALSE(feats.empty());
    auto ea = edt.accessor<double, 3>();
    for (int64_t s = 0; s < 6; ++s)
      for (int64_t y = 0; y < 9; ++y)
        for (int64_t x = 0; x < 8; ++x) {
          double best = INFINITY;
          for (const auto& v : feats) best = std::min(best, Dist({s, y, x}, v, sp));
          ASSERT_NEAR(ea[s][y][x], best, 1e-9) << s << " " << y << " " << x;
        }
  }
  at::Tensor empty = EuclideanDistanceTransform(at::zeros({2, 3, 4}, at::kByte), sp);
  EXPECT_TRUE(at::isinf(empty).all().item<bool>());
}

TEST(Hd95Test, MatchesBruteForceOnRandomMasks) {
  std::mt19937_64 rng(11);
  const std::array<double, 3> sp = {2.5, 0.7, 1.3};
  for (int trial = 0; trial < 12; ++trial) {
    const double p1 = 0.1 + 0.07 * trial, p2 = 0.85 - 0.06 * trial;
    at::Tensor a = RandomMask(rng, 4 + trial % 3, 10, 9, p1);
    at::Tensor b = RandomMask(rng, 4 + trial % 3, 10, 9, p2);
    // Carve so that surfaces are not the whole mask.
    EXPECT_NEAR(Hd95(a, b, sp), BruteHd95(a, b, sp), 1e-9) << "trial " << trial;
  }
}

TEST(Hd95Test, MatchesBruteForceOnBlobsInLargerVolume) {
  // Compact blobs far from the border exercise the bounding-box crop.
  std::mt19937_64 rng(5);
  const std::array<double, 3> sp = {3.0, 1.25, 0.8};
  at::Tensor a = at::zeros({8, 24, 24}, at::kByte), b = at::zeros({8, 24, 24}, at::kByte);
  a.slice(0, 2, 6).slice(1, 5, 14).slice(2, 6, 12).fill_(1);
  b.slice(0, 3, 7).slice(1, 8, 18).slice(2, 9, 20).fill_(1);
  a.logical_and_(RandomMask(rng, 8, 24, 24, 0.9));
  EXPECT_NEAR(Hd95(a, b, sp), BruteHd95(a, b, sp), 1e-9);
}

TEST(Hd95Test, ParallelPlanesKnownDistanceAndUnits) {
  // Two one-voxel-thick planes x = 2 and x = 7: every surface voxel is 5 voxels
  // from the other plane, so HD95 = 5 * spacing_x (mm) or 5 (voxels).
  at::Tensor a = at::zeros({4, 6, 10}, at::kByte), b = at::zeros({4, 6, 10}, at::kByte);
  a.select(2, 2).fill_(1);
  b.select(2, 7).fill_(1);
  EXPECT_NEAR(Hd95(a, b, {2.0, 3.0, 0.5}), 2.5, 1e-12);
  EXPECT_NEAR(Hd95(a, b, {0.0, 0.0, 0.0}), 5.0, 1e-12);
  EXPECT_NEAR(Hd95(a, b, {2.0, -1.0, 0.5}), 5.0, 1e-12);  // any non-positive -> voxels
  EXPECT_EQ(Hd95Unit({2.0, 3.0, 0.5}), "mm");
  EXPECT_EQ(Hd95Unit({2.0, 0.0, 0.5}), "voxel");
}

TEST(Hd95Test, ConcentricCubes) {
  // Inner cube half-size ai, outer half-size ao (voxels), centre c, isotropic h.
  // Inner-surface voxels are (ao - ai) h from the outer shell; an outer-surface
  // voxel q is at the distance from q to its clamp onto the inner cube.
  const int64_t n = 15, c = 7, ai = 2, ao = 5;
  const double h = 1.5;
  at::Tensor inner = at::zeros({n, n, n}, at::kByte), outer = at::zeros({n, n, n}, at::kByte);
  inner.slice(0, c - ai, c + ai + 1)
      .slice(1, c - ai, c + ai + 1)
      .slice(2, c - ai, c + ai + 1)
      .fill_(1);
  outer.slice(0, c - ao, c + ao + 1)
      .slice(1, c - ao, c + ao + 1)
      .slice(2, c - ao, c + ao + 1)
      .fill_(1);
  std::vector<double> d;
  const int64_t inner_surface =
      (2 * ai + 1) * (2 * ai + 1) * (2 * ai + 1) - (2 * ai - 1) * (2 * ai - 1) * (2 * ai - 1);
  for (int64_t i = 0; i < inner_surface; ++i) d.push_back((ao - ai) * h);
  for (int64_t z = -ao; z <= ao; ++z)
    for (int64_t y = -ao; y <= ao; ++y)
      for (int64_t x = -ao; x <= ao; ++x) {
        if (std::max({std::abs(z), std::abs(y), std::abs(x)}) != ao) continue;
        auto excess = [&](int64_t v) {
          return static_cast<double>(std::max<int64_t>(0, std::abs(v) - ai));
        };
        d.push_back(
            h * std::sqrt(excess(z) * excess(z) + excess(y) * excess(y) + excess(x) * excess(x)));
      }
  std::sort(d.begin(), d.end());
  const double rank = 0.95 * (d.size() - 1);
  const size_t lo = static_cast<size_t>(rank);
  const double expected = d[lo] + (d[lo + 1] - d[lo]) * (rank - lo);
  EXPECT_NEAR(Hd95(inner, outer, {h, h, h}), expected, 1e-9);
  EXPECT_NEAR(Hd95(outer, inner, {h, h, h}), expected, 1e-9);  // symmetric
  EXPECT_GT(expected, (ao - ai) * h);
  EXPECT_LT(expected, std::sqrt(3.0) * (ao - ai) * h);
}

TEST(Hd95Test, EmptyMaskIsNan) {
  at::Tensor a = at::zeros({2, 4, 4}, at::kByte), b = at::zeros({2, 4, 4}, at::kByte);
  b[0][1][1] = 1;
  EXPECT_TRUE(std::isnan(Hd95(a, b, {1, 1, 1})));
  EXPECT_TRUE(std::isnan(Hd95(b, a, {1, 1, 1})));
  EXPECT_TRUE(std::isnan(Hd95(a, a, {1, 1, 1})));
  EXPECT_DOUBLE_EQ(Hd95(b, b, {1, 1, 1}), 0.0);
  EXPECT_ANY_THROW(Hd95(a, at::zeros({2, 4, 5}, at::kByte), {1, 1, 1}));
}

TEST(Hd95Test, ScoreVolumeUsesSpacing) {
  at::Tensor ref = at::zeros({4, 6, 10}, at::kLong), pred = at::zeros({4, 6, 10}, at::kLong);
  ref.select(2, 2).fill_(1);
  pred.select(2, 7).fill_(1);
  VolumeScore mm = ScoreVolume(pred, ref, 2, {2.0, 3.0, 0.5});
  EXPECT_EQ(mm.hd95_unit, "mm");
  EXPECT_TRUE(mm.classes[0].hd95_valid);
  EXPECT_NEAR(mm.classes[0].hd95, 2.5, 1e-12);
  EXPECT_NEAR(mm.mean_hd95, 2.5, 1e-12);
  VolumeScore vox = ScoreVolume(pred, ref, 2, {0, 0, 0});
  EXPECT_EQ(vox.hd95_unit, "voxel");
  EXPECT_NEAR(vox.classes[0].hd95, 5.0, 1e-12);
}

TEST(Hd95Test, PercentileIsNumpyLinear) {
  std::vector<double> v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(Percentile(v, 50), 2.5);
  v = {4, 1, 3, 2};
  EXPECT_DOUBLE_EQ(Percentile(v, 95), 3.85);
  v = {7};
  EXPECT_DOUBLE_EQ(Percentile(v, 95), 7);
}

}  // namespace
}  // namespace gcl::core
