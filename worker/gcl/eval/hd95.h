// 95th-percentile Hausdorff distance (HD95) between two binary 3D masks.
//
// Definition (MedPy's `hd95`, the convention of most segmentation papers):
//   * surface of a mask = its voxels that have at least one of the 6 face
//     neighbours outside the mask; voxels on the volume border count as
//     surface (outside the volume is background);
//   * d(p, B) = Euclidean distance from the centre of surface voxel p to the
//     nearest surface voxel of the other mask, with physical voxel sizes;
//   * HD95 = 95th percentile (linear interpolation, numpy's default) of the
//     pooled set {d(p, S_ref) : p in S_pred} ∪ {d(g, S_pred) : g in S_ref}.
// Distances come from an exact separable Euclidean distance transform
// (Felzenszwalb-Huttenlocher lower envelope of parabolas, anisotropic), run on
// the bounding box of both surfaces: O(voxels), not O(|S_pred| |S_ref|).
//
// Units: millimetres when every entry of spacing_zyx is > 0, otherwise voxels
// (spacing 1, 1, 1). Hd95Unit() says which.
//
// Empty-mask rule: if either mask is empty, HD95 is undefined and Hd95()
// returns NaN (callers record the class as skipped, never as 0 or inf).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <ATen/ATen.h>

namespace gcl::core {

// pred_mask, ref_mask: bool or integer (non-zero = inside) [S, H, W] with the
// same shape, on CPU. spacing_zyx: voxel size in mm (slice, row, column).
// Returns HD95 (see above) or NaN when either mask is empty.
// Throws c10::Error on shape mismatch or a non-3D input.
double Hd95(const at::Tensor& pred_mask, const at::Tensor& ref_mask,
            std::array<double, 3> spacing_zyx);

// "mm" when all spacing entries are > 0, else "voxel".
std::string Hd95Unit(std::array<double, 3> spacing_zyx);

// The spacing Hd95() actually uses: spacing_zyx, or {1,1,1} in voxel mode.
std::array<double, 3> EffectiveSpacing(std::array<double, 3> spacing_zyx);

// Building blocks, exposed for tests.

// Surface mask (uint8 [S, H, W], 1 = surface voxel) of a binary mask.
at::Tensor SurfaceMask(const at::Tensor& mask);

// Exact Euclidean distance (in the units of spacing_zyx) from every voxel to
// the nearest non-zero voxel of `features` (uint8/bool [S, H, W]). Returns
// float64 [S, H, W]; +inf everywhere when `features` is empty.
at::Tensor EuclideanDistanceTransform(const at::Tensor& features,
                                      std::array<double, 3> spacing_zyx);

// numpy.percentile(values, q) with linear interpolation; q in [0, 100].
// REQUIRES: !values.empty(). Reorders `values`.
double Percentile(std::vector<double>& values, double q);

}  // namespace gcl::core
