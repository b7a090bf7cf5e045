// The pre-training variants of the algorithm spec, section 9 (ablation and
// baseline configurations), as presets over gcl.v1.Method.
//
//   variant       image loss        pixel loss            combine         meta labels
//   random_init   -                 -                     -               none (no pre-training)
//   simclr        NT-Xent           -                     mean            none (label-free)
//   single_mK     L_I^K             -                     mean            {K}: 1 patient, 2 position, 3 phase
//   multi_naive   all L_I^m         -                     mean (eq. 2)    all
//   multi_gm      all L_I^m         -                     grad_mitigator  all
//   multi_pcgrad  all L_I^m         -                     pcgrad          all
//   pixcl         NT-Xent           L_P, partners 1       mean            none
//   pixcl_gf      NT-Xent           L_P + GradFilter      mean            none
//   full          all L_I^m         all L_P^m + GradFilter grad_mitigator all
//   full_frozen   = full, and frozen_encoder at fine-tuning
// "all" = patient, position, and phase where the dataset has phases (ACDC,
// synthetic).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "gcl/v1/spec.pb.h"

namespace gcl::spec {

// "multi_gm" for VARIANT_MULTI_GM; "unspecified" for VARIANT_UNSPECIFIED.
std::string VariantName(gcl::v1::Variant v);

// Inverse of VariantName (case-insensitive, '-' == '_'); kInvalidArgument
// listing the allowed names otherwise.
absl::StatusOr<gcl::v1::Variant> ParseVariant(std::string_view name);

// True for the formats whose volumes carry a cardiac phase (ED/ES):
// acdc-h5, acdc, synthetic. Only those may use the `phase` meta label.
bool FormatHasPhase(gcl::v1::Format format);

// The default meta labels of a dataset: patient, position (+ phase).
std::vector<gcl::v1::MetaLabel> DefaultMetaLabels(gcl::v1::Format format);

struct VariantPreset {
  bool pretrains = true;  // false for random_init
  bool image = false;     // image-wise loss
  bool pixel = false;     // pixel-wise loss
  gcl::v1::Combine combine = gcl::v1::COMBINE_MEAN;
  bool grad_filter = false;
  std::optional<int64_t> partners;  // set by pixcl/pixcl_gf (1)
  bool frozen_encoder = false;      // full_frozen
  // The meta labels with their own loss; empty = label-free (NT-Xent).
  std::vector<gcl::v1::MetaLabel> meta_labels;
};

// The preset of `v` on a dataset of `format` (which decides whether "all"
// meta labels include phase). VARIANT_UNSPECIFIED gives the `full` preset.
VariantPreset GetVariantPreset(gcl::v1::Variant v, gcl::v1::Format format);

// Which meta labels a variant trains with (single_m2 -> {position}; simclr,
// pixcl, random_init -> {}), for the trainer.
std::vector<gcl::v1::MetaLabel> VariantMetaLabels(gcl::v1::Variant v, gcl::v1::Format format);

// Fills the *unset* fields of spec->method (image, pixel, combine,
// grad_filter, partners) from the preset of spec->method().variant(), the
// meta labels when spec->meta_labels is empty, and sets frozen_encoder for
// full_frozen. Fields already set (explicit YAML keys) are kept.
void ApplyVariantPreset(gcl::v1::JobSpec* spec);

}  // namespace gcl::spec
