// Augmentations: the two-view pre-training pipeline (spec 2.4) and the
// fine-tuning pipeline (spec 2.5). Both are batched (one affine_grid and one
// grid_sample call per batch) and deterministic in their `seed` argument;
// callers derive it from StreamSeed(run_seed, kAugment / kFinetune, step).
#pragma once

#include <cstdint>
#include <utility>

#include <ATen/core/Tensor.h>

namespace gcl::core {

struct TwoViewAugmentOptions {
  // Random resized crop: area fraction and aspect (width / height) of the
  // crop, resized back to the input size.
  double crop_scale_min = 0.5;
  double crop_scale_max = 1.0;
  double rotation_deg = 20;  // uniform in [-rotation_deg, rotation_deg]
  double flip_p = 0.5;       // horizontal and vertical flip, each independently
  double brightness = 0.2;   // additive delta ~ U[-brightness, brightness]
  double contrast_min = 0.7;  // deviation from the view's mean times c ~ U[min, max]
  double contrast_max = 1.3;
  double clip_max = 1.5;      // then clip to [0, clip_max]
  double blur_p = 0.3;        // Gaussian blur with probability blur_p ...
  double blur_sigma_min = 0.1;  // ... and sigma ~ U[min, max] pixels
  double blur_sigma_max = 1.0;
  double aspect_min = 3.0 / 4.0;  // crop aspect, log-uniform in [min, max]
  double aspect_max = 4.0 / 3.0;
};

// slices: float32 [B, H, W]. Returns float32 [2B, 1, H, W]; rows 2i and 2i+1
// are two independent augmentations of slice i (spec 2.4), in this order:
// crop + rotation + flips (one bilinear grid_sample, zero padding), brightness
// and contrast, clip to [0, clip_max], optional blur (replicate padding, so
// values stay in [0, clip_max]). Deterministic in `seed`.
// If `affines` is non-null it receives the float32 [2B, 2, 3] matrices theta
// used with affine_grid (align_corners = false): the normalised input point
// sampled for normalised output point p is theta[:, :2] p + theta[:, 2].
// first_view: `slices` are rows first_view/2 ... of a larger batch (a
// data-parallel rank's shard); the result is exactly those rows of the larger
// batch's augmentation with the same seed. REQUIRES first_view even, >= 0.
// Throws c10::Error on a wrong shape.
at::Tensor TwoViewAugment(const at::Tensor& slices, const TwoViewAugmentOptions& options,
                          uint64_t seed, at::Tensor* affines = nullptr, int64_t first_view = 0);

struct FinetuneAugmentOptions {
  double rotation_deg = 15;  // uniform in [-rotation_deg, rotation_deg]
  double scale_min = 0.9;    // zoom factor ~ U[min, max]
  double scale_max = 1.1;
  double translate_px = 10;  // per axis, uniform in [-translate_px, translate_px]
  double flip_p = 0.5;       // horizontal flip
  double brightness = 0.2;   // as in TwoViewAugmentOptions (image only)
  double contrast_min = 0.7;
  double contrast_max = 1.3;
  double clip_max = 1.5;     // image clipped to [0, clip_max]
};

// image float32 [B, H, W], label int64 [B, H, W] -> (image float32
// [B, 1, H, W], label int64 [B, H, W]). One random affine per sample, applied
// identically to image (bilinear) and label (nearest); outside the input the
// image is 0 and the label background (0). Then brightness/contrast and clip
// on the image (spec 2.5). Deterministic in `seed`. Throws c10::Error on
// mismatched shapes.
std::pair<at::Tensor, at::Tensor> FinetuneAugment(const at::Tensor& image,
                                                  const at::Tensor& label,
                                                  const FinetuneAugmentOptions& options,
                                                  uint64_t seed);

}  // namespace gcl::core
