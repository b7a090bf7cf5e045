// Per-volume preprocessing (spec 2.2, as adapted by the data contract):
// intensity normalisation, square zero-padding and resizing of every slice.
#pragma once

#include <cstdint>

#include <ATen/core/Tensor.h>

#include "worker/gcl/data/volume.h"

namespace gcl::core {

// Percentiles used by NormalizeIntensity (spec 2.2 step 2).
inline constexpr double kClipLowPercentile = 0.5;
inline constexpr double kClipHighPercentile = 99.5;

// q-th percentile (0..100) of all elements, linear interpolation between
// order statistics (numpy's default "linear" method). REQUIRES: numel > 0.
double Percentile(const at::Tensor& x, double q);

// Clips to [P0.5, P99.5] of the whole volume, then min-max scales to [0, 1]
// (spec 2.2 step 2). A constant volume becomes all zeros. Returns float32.
at::Tensor NormalizeIntensity(const at::Tensor& image);

// Returns a copy of `v` with:
//  1. image = NormalizeIntensity(image);
//  2. every slice zero-padded to a centred square M x M, M = max(H, W)
//     (the extra row / column of an odd difference goes to the bottom / right);
//  3. resized to image_size x image_size: bilinear (align_corners = false,
//     antialiased when shrinking) for the image, nearest for the label;
//  4. spacing_zyx[1], [2] scaled by M / image_size (when known).
// The image stays float32 in [0, 1]; the label stays int64 with only values
// present in the input. id, case_id, phase, source are copied.
// REQUIRES: v.image is [S, H, W] with S, H, W >= 1; label (if defined) has the
// same shape; image_size >= 1. Throws c10::Error otherwise.
Volume PreprocessVolume(const Volume& v, int64_t image_size);

}  // namespace gcl::core
