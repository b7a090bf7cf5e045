#include "worker/gcl/data/meta_labels.h"

#include <algorithm>
#include <string>
#include <unordered_map>

#include <ATen/ATen.h>

#include "absl/strings/str_cat.h"

namespace gcl::core {

absl::StatusOr<MetaLabel> ParseMetaLabel(std::string_view name) {
  if (name == "patient") return MetaLabel::kPatient;
  if (name == "position") return MetaLabel::kPosition;
  if (name == "phase") return MetaLabel::kPhase;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown meta label \"", std::string(name),
                   "\" (expected patient, position or phase)"));
}

std::string_view MetaLabelName(MetaLabel m) {
  switch (m) {
    case MetaLabel::kPatient:
      return "patient";
    case MetaLabel::kPosition:
      return "position";
    case MetaLabel::kPhase:
      return "phase";
  }
  return "unknown";
}

int PositionQuantile(int64_t slice, int64_t num_slices) {
  // Integer floor(4 s / S): exact, no floating-point edge cases.
  return static_cast<int>(std::min<int64_t>(4 * slice / num_slices, 3));
}

std::vector<SliceRef> IndexSlices(const std::vector<Volume>& volumes) {
  std::vector<SliceRef> out;
  std::unordered_map<std::string, int32_t> patient_of;
  for (size_t v = 0; v < volumes.size(); ++v) {
    const Volume& vol = volumes[v];
    auto [it, inserted] =
        patient_of.emplace(vol.case_id, static_cast<int32_t>(patient_of.size()));
    (void)inserted;
    const int64_t num_slices = vol.image.defined() ? vol.image.size(0) : 0;
    for (int64_t s = 0; s < num_slices; ++s) {
      out.push_back(SliceRef{static_cast<int32_t>(v), static_cast<int32_t>(s), it->second,
                             PositionQuantile(s, num_slices), vol.phase});
    }
  }
  return out;
}

at::Tensor ViewLabels(const std::vector<SliceRef>& batch, MetaLabel m) {
  at::Tensor out = at::empty({static_cast<int64_t>(2 * batch.size())}, at::kLong);
  auto acc = out.accessor<int64_t, 1>();
  for (size_t i = 0; i < batch.size(); ++i) {
    int64_t label = 0;
    switch (m) {
      case MetaLabel::kPatient:
        label = batch[i].patient;
        break;
      case MetaLabel::kPosition:
        label = batch[i].position;
        break;
      case MetaLabel::kPhase:
        label = batch[i].phase;
        break;
    }
    acc[2 * i] = label;
    acc[2 * i + 1] = label;
  }
  return out;
}

}  // namespace gcl::core
