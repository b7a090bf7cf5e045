#include "worker/gcl/eval/hd95.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <c10/util/Exception.h>

namespace gcl::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

struct Box {
  int64_t z0, z1, y0, y1, x0, x1;  // half-open
  int64_t d() const { return z1 - z0; }
  int64_t h() const { return y1 - y0; }
  int64_t w() const { return x1 - x0; }
};

at::Tensor AsContiguousU8(const at::Tensor& mask) {
  TORCH_CHECK(mask.defined() && mask.dim() == 3, "mask must be a 3D [S, H, W] tensor");
  TORCH_CHECK(mask.device().is_cpu(), "mask must be on CPU");
  return mask.ne(0).to(at::kByte).contiguous();
}

// 1D squared distance transform with weight w (= spacing^2) along a line of n
// samples with stride `stride`: out(q) = min_p w (q - p)^2 + f(p). Lower
// envelope of parabolas (Felzenszwalb & Huttenlocher 2012); +inf samples are
// not in the envelope, so lines without features stay +inf.
void Dt1d(double* data, int64_t n, int64_t stride, double w, std::vector<double>& f,
          std::vector<int64_t>& v, std::vector<double>& z) {
  for (int64_t q = 0; q < n; ++q) f[q] = data[q * stride];
  int64_t k = -1;
  for (int64_t q = 0; q < n; ++q) {
    if (f[q] == kInf) continue;
    if (k < 0) {
      k = 0;
      v[0] = q;
      z[0] = -kInf;
      z[1] = kInf;
      continue;
    }
    // z[0] = -inf, so the pop loop never empties the envelope.
    double s;
    while (true) {
      const int64_t p = v[k];
      s = ((f[q] + w * static_cast<double>(q * q)) - (f[p] + w * static_cast<double>(p * p))) /
          (2.0 * w * static_cast<double>(q - p));
      if (s > z[k]) break;
      --k;
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kInf;
  }
  if (k < 0) return;  // no feature on this line: stays +inf
  k = 0;
  for (int64_t q = 0; q < n; ++q) {
    while (z[k + 1] < static_cast<double>(q)) ++k;
    const double dq = static_cast<double>(q - v[k]);
    data[q * stride] = w * dq * dq + f[v[k]];
  }
}

// Squared EDT in place over a dense [d, h, w] buffer (0 at features, +inf
// elsewhere), separable over the three axes.
void SquaredEdt(std::vector<double>& g, int64_t d, int64_t h, int64_t w,
                const std::array<double, 3>& sp) {
  const int64_t n_max = std::max({d, h, w});
  std::vector<double> f(n_max), z(n_max + 1);
  std::vector<int64_t> v(n_max);
  for (int64_t s = 0; s < d; ++s)
    for (int64_t y = 0; y < h; ++y) Dt1d(&g[(s * h + y) * w], w, 1, sp[2] * sp[2], f, v, z);
  for (int64_t s = 0; s < d; ++s)
    for (int64_t x = 0; x < w; ++x) Dt1d(&g[s * h * w + x], h, w, sp[1] * sp[1], f, v, z);
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) Dt1d(&g[y * w + x], d, h * w, sp[0] * sp[0], f, v, z);
}

// Distances from the voxels of `query` to the nearest voxel of `features`,
// both uint8 [S, H, W] contiguous, restricted to `box` (which must contain
// every feature and query voxel, so the result is exact).
void DirectedDistances(const uint8_t* features, const uint8_t* query, int64_t H, int64_t W,
                       const Box& box, const std::array<double, 3>& sp, std::vector<double>& out) {
  const int64_t d = box.d(), h = box.h(), w = box.w();
  std::vector<double> g(static_cast<size_t>(d * h * w));
  for (int64_t s = 0; s < d; ++s)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int64_t src = ((s + box.z0) * H + (y + box.y0)) * W + (x + box.x0);
        g[(s * h + y) * w + x] = features[src] ? 0.0 : kInf;
      }
  SquaredEdt(g, d, h, w, sp);
  for (int64_t s = 0; s < d; ++s)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) {
        const int64_t src = ((s + box.z0) * H + (y + box.y0)) * W + (x + box.x0);
        if (query[src]) out.push_back(std::sqrt(g[(s * h + y) * w + x]));
      }
}

}  // namespace

std::string Hd95Unit(std::array<double, 3> spacing_zyx) {
  const bool mm = spacing_zyx[0] > 0 && spacing_zyx[1] > 0 && spacing_zyx[2] > 0;
  return mm ? "mm" : "voxel";
}

std::array<double, 3> EffectiveSpacing(std::array<double, 3> spacing_zyx) {
  if (Hd95Unit(spacing_zyx) == "mm") return spacing_zyx;
  return {1.0, 1.0, 1.0};
}

at::Tensor SurfaceMask(const at::Tensor& mask) {
  at::Tensor m = AsContiguousU8(mask);
  const int64_t S = m.size(0), H = m.size(1), W = m.size(2);
  at::Tensor out = at::zeros_like(m);
  const uint8_t* in = m.data_ptr<uint8_t>();
  uint8_t* o = out.data_ptr<uint8_t>();
  auto at_ = [&](int64_t s, int64_t y, int64_t x) -> bool {
    // Outside the volume counts as background.
    if (s < 0 || s >= S || y < 0 || y >= H || x < 0 || x >= W) return false;
    return in[(s * H + y) * W + x] != 0;
  };
  for (int64_t s = 0; s < S; ++s)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        if (!in[(s * H + y) * W + x]) continue;
        const bool interior = at_(s - 1, y, x) && at_(s + 1, y, x) && at_(s, y - 1, x) &&
                              at_(s, y + 1, x) && at_(s, y, x - 1) && at_(s, y, x + 1);
        o[(s * H + y) * W + x] = interior ? 0 : 1;
      }
  return out;
}

at::Tensor EuclideanDistanceTransform(const at::Tensor& features,
                                      std::array<double, 3> spacing_zyx) {
  at::Tensor m = AsContiguousU8(features);
  const int64_t S = m.size(0), H = m.size(1), W = m.size(2);
  const uint8_t* in = m.data_ptr<uint8_t>();
  std::vector<double> g(static_cast<size_t>(S * H * W));
  for (size_t i = 0; i < g.size(); ++i) g[i] = in[i] ? 0.0 : kInf;
  SquaredEdt(g, S, H, W, spacing_zyx);
  at::Tensor out = at::empty({S, H, W}, at::kDouble);
  double* o = out.data_ptr<double>();
  for (size_t i = 0; i < g.size(); ++i) o[i] = std::sqrt(g[i]);
  return out;
}

double Percentile(std::vector<double>& values, double q) {
  TORCH_CHECK(!values.empty(), "Percentile of an empty set");
  std::sort(values.begin(), values.end());
  const double rank = q / 100.0 * static_cast<double>(values.size() - 1);
  const auto lo = static_cast<size_t>(std::floor(rank));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  const double frac = rank - static_cast<double>(lo);
  return values[lo] + (values[hi] - values[lo]) * frac;
}

double Hd95(const at::Tensor& pred_mask, const at::Tensor& ref_mask,
            std::array<double, 3> spacing_zyx) {
  TORCH_CHECK(pred_mask.sizes() == ref_mask.sizes(), "Hd95: pred ", pred_mask.sizes(), " and ref ",
              ref_mask.sizes(), " differ in shape");
  at::Tensor sp_mask = SurfaceMask(pred_mask);
  at::Tensor sr_mask = SurfaceMask(ref_mask);
  // A non-empty mask always has a non-empty surface, so this is the empty rule.
  if (!sp_mask.any().item<bool>() || !sr_mask.any().item<bool>()) {
    return std::numeric_limits<double>::quiet_NaN();
  }
  const int64_t S = sp_mask.size(0), H = sp_mask.size(1), W = sp_mask.size(2);
  const uint8_t* sp = sp_mask.data_ptr<uint8_t>();
  const uint8_t* sr = sr_mask.data_ptr<uint8_t>();

  // Bounding box of both surfaces: the EDT restricted to it is still exact.
  Box box{S, 0, H, 0, W, 0};
  for (int64_t s = 0; s < S; ++s)
    for (int64_t y = 0; y < H; ++y)
      for (int64_t x = 0; x < W; ++x) {
        const int64_t i = (s * H + y) * W + x;
        if (!sp[i] && !sr[i]) continue;
        box.z0 = std::min(box.z0, s);
        box.z1 = std::max(box.z1, s + 1);
        box.y0 = std::min(box.y0, y);
        box.y1 = std::max(box.y1, y + 1);
        box.x0 = std::min(box.x0, x);
        box.x1 = std::max(box.x1, x + 1);
      }

  const std::array<double, 3> spacing = EffectiveSpacing(spacing_zyx);
  std::vector<double> distances;
  DirectedDistances(sr, sp, H, W, box, spacing, distances);  // pred surface -> ref
  DirectedDistances(sp, sr, H, W, box, spacing, distances);  // ref surface -> pred
  return Percentile(distances, 95.0);
}

}  // namespace gcl::core
