#include "worker/gcl/data/augment.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include "worker/gcl/data/rng.h"

namespace gcl::core {
namespace {

constexpr double kPi = 3.14159265358979323846;
// grid_sampler's integer enums.
constexpr int64_t kBilinear = 0;
constexpr int64_t kNearest = 1;
constexpr int64_t kZerosPadding = 0;

// Portable uniform in [lo, hi) (std distributions are implementation-defined).
double Uniform(std::mt19937_64& gen, double lo, double hi) {
  return lo + (hi - lo) * static_cast<double>(gen() >> 11) * 0x1.0p-53;
}

// A 2x2 linear part in normalised coordinates for a rotation by `angle` in
// pixel space, followed by per-axis factors sx, sy (applied first):
// S^-1 R S diag(sx, sy) with S = diag(W, H), so rotations stay rigid on
// non-square images.
void RotationInNormalised(double angle, double sx, double sy, int64_t h, int64_t w,
                          float* m /* 6 floats, row-major 2x3 */) {
  const double c = std::cos(angle), s = std::sin(angle);
  const double hw = static_cast<double>(h) / w;
  m[0] = static_cast<float>(c * sx);
  m[1] = static_cast<float>(-s * hw * sy);
  m[3] = static_cast<float>(s / hw * sx);
  m[4] = static_cast<float>(c * sy);
}

// x: [N, 1, H, W]. Returns (x - mean) * contrast + mean + delta per view
// (mean over each view), clipped to [0, clip_max].
at::Tensor BrightnessContrastClip(const at::Tensor& x, const std::vector<float>& delta,
                                  const std::vector<float>& contrast, double clip_max) {
  const int64_t n = x.size(0);
  at::Tensor d = at::tensor(delta, x.options()).view({n, 1, 1, 1});
  at::Tensor c = at::tensor(contrast, x.options()).view({n, 1, 1, 1});
  at::Tensor mean = x.mean({1, 2, 3}, /*keepdim=*/true);
  return ((x - mean) * c + mean + d).clamp_(0.0, clip_max);
}

// Separable Gaussian blur with a per-view sigma (0 = identity), as two
// grouped convolutions. x: [N, 1, H, W].
at::Tensor PerViewBlur(const at::Tensor& x, const std::vector<double>& sigma,
                       double sigma_max) {
  const int64_t n = x.size(0);
  const int64_t radius = std::max<int64_t>(1, static_cast<int64_t>(std::ceil(3 * sigma_max)));
  const int64_t k = 2 * radius + 1;
  std::vector<float> taps(n * k, 0.0f);
  for (int64_t i = 0; i < n; ++i) {
    float* t = &taps[i * k];
    if (sigma[i] <= 0) {
      t[radius] = 1.0f;
      continue;
    }
    double sum = 0;
    for (int64_t j = -radius; j <= radius; ++j) {
      sum += std::exp(-0.5 * j * j / (sigma[i] * sigma[i]));
    }
    for (int64_t j = -radius; j <= radius; ++j) {
      t[j + radius] = static_cast<float>(std::exp(-0.5 * j * j / (sigma[i] * sigma[i])) / sum);
    }
  }
  at::Tensor kernel = at::tensor(taps, x.options());
  // Views become channels of one image so that groups = N gives each view
  // its own kernel.
  at::Tensor y = at::replication_pad2d(x.view({1, n, x.size(2), x.size(3)}),
                                       {radius, radius, radius, radius});
  const std::vector<int64_t> one = {1, 1}, zero = {0, 0};
  y = at::conv2d(y, kernel.view({n, 1, k, 1}), at::Tensor(), one, at::IntArrayRef(zero), one, n);
  y = at::conv2d(y, kernel.view({n, 1, 1, k}), at::Tensor(), one, at::IntArrayRef(zero), one, n);
  return y.view_as(x);
}

}  // namespace

at::Tensor TwoViewAugment(const at::Tensor& slices, const TwoViewAugmentOptions& options,
                          uint64_t seed, at::Tensor* affines, int64_t first_view) {
  TORCH_CHECK(slices.dim() == 3, "TwoViewAugment: slices must be [B, H, W], got ",
              slices.sizes());
  TORCH_CHECK(first_view >= 0 && first_view % 2 == 0,
              "TwoViewAugment: first_view must be even and >= 0, got ", first_view);
  const int64_t b = slices.size(0), h = slices.size(1), w = slices.size(2);
  const int64_t n = 2 * b;
  // Each view consumes exactly kDrawsPerView draws (below), so a shard skips
  // the draws of the views before it.
  constexpr unsigned long long kDrawsPerView = 11;
  std::mt19937_64 gen(MixSeed(seed));
  gen.discard(static_cast<unsigned long long>(first_view) * kDrawsPerView);
  at::Tensor theta = at::zeros({n, 2, 3}, at::kFloat);
  float* th = theta.data_ptr<float>();
  std::vector<float> delta(n), contrast(n);
  std::vector<double> sigma(n);
  bool any_blur = false;
  const double log_amin = std::log(options.aspect_min), log_amax = std::log(options.aspect_max);
  for (int64_t i = 0; i < n; ++i) {
    // Every view consumes the same number of draws, so view i's parameters
    // do not depend on the outcomes of earlier coin flips.
    const double scale = Uniform(gen, options.crop_scale_min, options.crop_scale_max);
    const double aspect = std::exp(Uniform(gen, log_amin, log_amax));
    const double u_cx = Uniform(gen, -1, 1), u_cy = Uniform(gen, -1, 1);
    const double angle = Uniform(gen, -options.rotation_deg, options.rotation_deg) * kPi / 180;
    const bool flip_x = Uniform(gen, 0, 1) < options.flip_p;
    const bool flip_y = Uniform(gen, 0, 1) < options.flip_p;
    delta[i] = static_cast<float>(Uniform(gen, -options.brightness, options.brightness));
    contrast[i] = static_cast<float>(Uniform(gen, options.contrast_min, options.contrast_max));
    const bool blur = Uniform(gen, 0, 1) < options.blur_p;
    const double s = Uniform(gen, options.blur_sigma_min, options.blur_sigma_max);
    sigma[i] = blur ? s : 0.0;
    any_blur = any_blur || blur;

    // Crop half-extents in normalised units (full image = 1); an aspect that
    // would exceed the image is clamped instead of resampled.
    const double cw = std::min(1.0, std::sqrt(scale * aspect));
    const double ch = std::min(1.0, std::sqrt(scale / aspect));
    float* m = th + i * 6;
    RotationInNormalised(angle, cw * (flip_x ? -1 : 1), ch * (flip_y ? -1 : 1), h, w, m);
    m[2] = static_cast<float>(u_cx * (1 - cw));
    m[5] = static_cast<float>(u_cy * (1 - ch));
  }

  at::Tensor x = slices.to(at::kFloat).repeat_interleave(2, 0).unsqueeze(1);
  at::Tensor t = theta.to(x.device());
  at::Tensor grid = at::affine_grid_generator(t, {n, 1, h, w}, /*align_corners=*/false);
  at::Tensor out = at::grid_sampler(x, grid, kBilinear, kZerosPadding, false);
  out = BrightnessContrastClip(out, delta, contrast, options.clip_max);
  if (any_blur) out = PerViewBlur(out, sigma, options.blur_sigma_max);
  if (affines != nullptr) *affines = theta;
  return out;
}

std::pair<at::Tensor, at::Tensor> FinetuneAugment(const at::Tensor& image,
                                                  const at::Tensor& label,
                                                  const FinetuneAugmentOptions& options,
                                                  uint64_t seed) {
  TORCH_CHECK(image.dim() == 3, "FinetuneAugment: image must be [B, H, W], got ",
              image.sizes());
  TORCH_CHECK(label.sizes() == image.sizes(), "FinetuneAugment: label ", label.sizes(),
              " does not match image ", image.sizes());
  const int64_t b = image.size(0), h = image.size(1), w = image.size(2);
  std::mt19937_64 gen(MixSeed(seed));
  at::Tensor theta = at::zeros({b, 2, 3}, at::kFloat);
  float* th = theta.data_ptr<float>();
  std::vector<float> delta(b), contrast(b);
  for (int64_t i = 0; i < b; ++i) {
    const double angle = Uniform(gen, -options.rotation_deg, options.rotation_deg) * kPi / 180;
    const double zoom = Uniform(gen, options.scale_min, options.scale_max);
    const double tx = Uniform(gen, -options.translate_px, options.translate_px);
    const double ty = Uniform(gen, -options.translate_px, options.translate_px);
    const bool flip = Uniform(gen, 0, 1) < options.flip_p;
    delta[i] = static_cast<float>(Uniform(gen, -options.brightness, options.brightness));
    contrast[i] = static_cast<float>(Uniform(gen, options.contrast_min, options.contrast_max));
    // Sampling map output -> input: zoom > 1 enlarges the content, so the
    // input is sampled at 1/zoom; translation in pixels -> normalised (2/W).
    float* m = th + i * 6;
    RotationInNormalised(angle, (flip ? -1.0 : 1.0) / zoom, 1.0 / zoom, h, w, m);
    m[2] = static_cast<float>(2.0 * tx / w);
    m[5] = static_cast<float>(2.0 * ty / h);
  }
  at::Tensor t = theta.to(image.device());
  at::Tensor grid = at::affine_grid_generator(t, {b, 1, h, w}, /*align_corners=*/false);
  at::Tensor img = at::grid_sampler(image.to(at::kFloat).unsqueeze(1), grid, kBilinear,
                                    kZerosPadding, false);
  // Nearest sampling of the float label returns exact label values.
  at::Tensor lab = at::grid_sampler(label.to(at::kFloat).unsqueeze(1), grid, kNearest,
                                    kZerosPadding, false)
                       .squeeze(1)
                       .round()
                       .to(at::kLong);
  img = BrightnessContrastClip(img, delta, contrast, options.clip_max);
  return {img, lab};
}

}  // namespace gcl::core
