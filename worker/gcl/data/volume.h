// One 3D image volume (stack of 2D slices) with its optional label map and
// the metadata the meta labels need (spec 2.1, 2.2 step 4).
#pragma once

#include <array>
#include <string>

#include <ATen/core/Tensor.h>
#include <torch/types.h>

namespace gcl::core {

struct Volume {
  std::string id;       // volume id, e.g. "patient001_frame01"
  std::string case_id;  // patient / subject id, e.g. "patient001"
  int phase = -1;       // 0 = ED (frame01), 1 = ES (frame02), -1 = unknown
  // float32 [S, H, W]; S = slices along the axis closest to world z.
  // After PreprocessVolume: per-volume normalised to [0, 1], H = W = image_size.
  torch::Tensor image;
  // int64 [S, H, W] class indices; undefined (!label.defined()) when unlabelled.
  torch::Tensor label;
  // Voxel size in mm along (slice, row, column); all zeros when unknown.
  std::array<double, 3> spacing_zyx{0.0, 0.0, 0.0};
  std::string source;  // file path(s), for error messages

  bool has_spacing() const {
    return spacing_zyx[0] > 0.0 && spacing_zyx[1] > 0.0 && spacing_zyx[2] > 0.0;
  }
  bool has_label() const { return label.defined(); }
  int64_t num_slices() const { return image.defined() ? image.size(0) : 0; }
};

}  // namespace gcl::core
