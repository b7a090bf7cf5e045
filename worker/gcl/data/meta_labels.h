// Meta labels of a 2D slice (spec 2.1): patient, position quantile along the
// short axis, and cardiac phase. Pre-training contrasts views that share a
// meta label; SliceRef carries these labels from the volumes to the batch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ATen/core/Tensor.h>

#include "absl/status/statusor.h"
#include "worker/gcl/data/volume.h"

namespace gcl::core {

// Spec numbering m = 1, 2, 3 maps to 0, 1, 2 here.
enum class MetaLabel { kPatient = 0, kPosition = 1, kPhase = 2 };

// "patient" | "position" | "phase"; anything else is kInvalidArgument.
absl::StatusOr<MetaLabel> ParseMetaLabel(std::string_view name);
std::string_view MetaLabelName(MetaLabel m);

// Position quantile q(s) = min(floor(4 s / S), 3) of slice `slice` in a volume
// of `num_slices` slices (spec 2.1). REQUIRES: 0 <= slice < num_slices.
int PositionQuantile(int64_t slice, int64_t num_slices);

// One 2D slice of a volume together with its meta labels.
struct SliceRef {
  int32_t volume;    // index into the std::vector<Volume> it was built from
  int32_t slice;     // slice index s in [0, S)
  int32_t patient;   // dense patient index (see IndexSlices)
  int32_t position;  // PositionQuantile(s, S) in [0, 3]
  int32_t phase;     // Volume::phase: 0 = ED, 1 = ES, -1 = unknown

  friend bool operator==(const SliceRef& a, const SliceRef& b) {
    return a.volume == b.volume && a.slice == b.slice && a.patient == b.patient &&
           a.position == b.position && a.phase == b.phase;
  }
};

// One SliceRef per slice of `volumes`, volume-major then slice order.
// patient = dense index of case_id in order of first appearance.
std::vector<SliceRef> IndexSlices(const std::vector<Volume>& volumes);

// [2 * batch.size()] int64 tensor of meta label m for the views built by
// TwoViewAugment: views 2i and 2i+1 both get batch[i]'s label.
at::Tensor ViewLabels(const std::vector<SliceRef>& batch, MetaLabel m);

}  // namespace gcl::core
