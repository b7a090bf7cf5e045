#include "worker/gcl/data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>
#include <torch/nn/functional/padding.h>
#include <torch/nn/functional/upsampling.h>

namespace gcl::core {
namespace {

namespace F = torch::nn::functional;

// Centre zero-padding of the last two dims of [S, 1, H, W] to M x M.
at::Tensor PadSquare(const at::Tensor& x, int64_t m) {
  const int64_t h = x.size(2), w = x.size(3);
  const int64_t top = (m - h) / 2, left = (m - w) / 2;
  if (h == m && w == m) return x;
  return F::pad(x, F::PadFuncOptions({left, m - w - left, top, m - h - top}));
}

// Order statistics by selection (O(n)) instead of a full sort: the volumes
// have up to millions of voxels and a sort dominated the loading time.
std::vector<double> ToVector(const at::Tensor& x) {
  at::Tensor d = x.reshape({-1}).to(at::kDouble).contiguous();
  const double* p = d.data_ptr<double>();
  return std::vector<double>(p, p + d.numel());
}

// Linear interpolation between order statistics (numpy "linear"); reorders v.
double SelectPercentile(std::vector<double>& v, double q) {
  const int64_t n = static_cast<int64_t>(v.size());
  const double pos = std::clamp(q, 0.0, 100.0) / 100.0 * static_cast<double>(n - 1);
  const int64_t lo = std::clamp<int64_t>(static_cast<int64_t>(std::floor(pos)), 0, n - 1);
  std::nth_element(v.begin(), v.begin() + lo, v.end());
  const double a = v[lo];
  if (lo + 1 >= n) return a;
  const double b = *std::min_element(v.begin() + lo + 1, v.end());
  return a + (b - a) * (pos - static_cast<double>(lo));
}

}  // namespace

double Percentile(const at::Tensor& x, double q) {
  TORCH_CHECK(x.numel() > 0, "Percentile of an empty tensor");
  std::vector<double> v = ToVector(x);
  return SelectPercentile(v, q);
}

at::Tensor NormalizeIntensity(const at::Tensor& image) {
  TORCH_CHECK(image.numel() > 0, "NormalizeIntensity of an empty tensor");
  at::Tensor x = image.to(at::kFloat);
  std::vector<double> v = ToVector(x);
  const double lo = SelectPercentile(v, kClipLowPercentile);
  const double hi = SelectPercentile(v, kClipHighPercentile);
  if (!(hi > lo)) return at::zeros_like(x);
  return ((x.clamp(lo, hi) - lo) / (hi - lo)).clamp(0.0, 1.0).contiguous();
}

Volume PreprocessVolume(const Volume& v, int64_t image_size) {
  TORCH_CHECK(v.image.defined() && v.image.dim() == 3, "PreprocessVolume: ", v.id, ": image must be [S, H, W]");
  TORCH_CHECK(v.image.numel() > 0, "PreprocessVolume: ", v.id, ": empty image");
  TORCH_CHECK(image_size >= 1, "PreprocessVolume: image_size must be >= 1");
  TORCH_CHECK(!v.label.defined() || v.label.sizes() == v.image.sizes(), "PreprocessVolume: ", v.id,
              ": label shape differs from image shape");
  Volume out;
  out.id = v.id;
  out.case_id = v.case_id;
  out.phase = v.phase;
  out.source = v.source;
  const int64_t h = v.image.size(1), w = v.image.size(2), m = std::max(h, w);
  const std::vector<int64_t> size = {image_size, image_size};

  at::Tensor img = PadSquare(NormalizeIntensity(v.image).unsqueeze(1), m);
  if (m != image_size) {
    img = F::interpolate(img, F::InterpolateFuncOptions()
                                  .size(size)
                                  .mode(torch::kBilinear)
                                  .align_corners(false)
                                  .antialias(image_size < m));
  }
  // Bilinear overshoot is impossible, antialias weights are >= 0 but rounding
  // can leave -1e-8; clamp keeps the [0, 1] contract exact.
  out.image = img.squeeze(1).clamp(0.0, 1.0).contiguous();

  if (v.label.defined()) {
    at::Tensor lab = PadSquare(v.label.to(at::kFloat).unsqueeze(1), m);
    if (m != image_size) {
      lab = F::interpolate(lab, F::InterpolateFuncOptions().size(size).mode(torch::kNearest));
    }
    out.label = lab.squeeze(1).round().to(at::kLong).contiguous();
  }
  out.spacing_zyx = v.spacing_zyx;
  if (v.has_spacing()) {
    const double scale = static_cast<double>(m) / static_cast<double>(image_size);
    out.spacing_zyx[1] *= scale;
    out.spacing_zyx[2] *= scale;
  }
  return out;
}

}  // namespace gcl::core
