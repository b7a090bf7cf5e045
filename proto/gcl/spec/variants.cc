#include "gcl/spec/variants.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gcl/spec/job_spec_yaml.h"

namespace gcl::spec {

using gcl::v1::Combine;
using gcl::v1::Format;
using gcl::v1::JobSpec;
using gcl::v1::MetaLabel;
using gcl::v1::Variant;

std::string VariantName(Variant v) {
  const auto* value = gcl::v1::Variant_descriptor()->FindValueByNumber(v);
  if (value == nullptr) return absl::StrCat("variant_", static_cast<int>(v));
  return YamlEnumName(*value);
}

absl::StatusOr<Variant> ParseVariant(std::string_view name) {
  const auto& type = *gcl::v1::Variant_descriptor();
  if (const auto* value = FindYamlEnumValue(type, name)) {
    return static_cast<Variant>(value->number());
  }
  std::vector<std::string> allowed;
  for (int i = 1; i < type.value_count(); ++i) allowed.push_back(YamlEnumName(*type.value(i)));
  return absl::InvalidArgumentError(absl::StrCat("unknown variant '", std::string(name),
                                                 "' (allowed: ", absl::StrJoin(allowed, ", "), ")"));
}

bool FormatHasPhase(Format format) {
  return format == gcl::v1::FORMAT_ACDC_H5 || format == gcl::v1::FORMAT_ACDC ||
         format == gcl::v1::FORMAT_SYNTHETIC;
}

std::vector<MetaLabel> DefaultMetaLabels(Format format) {
  std::vector<MetaLabel> labels = {gcl::v1::META_LABEL_PATIENT, gcl::v1::META_LABEL_POSITION};
  if (FormatHasPhase(format)) labels.push_back(gcl::v1::META_LABEL_PHASE);
  return labels;
}

VariantPreset GetVariantPreset(Variant v, Format format) {
  VariantPreset p;
  switch (v) {
    case gcl::v1::VARIANT_RANDOM_INIT:
      p.pretrains = false;
      break;
    case gcl::v1::VARIANT_SIMCLR:
      p.image = true;  // label-free NT-Xent: meta_labels stay empty
      break;
    case gcl::v1::VARIANT_SINGLE_M1:
      p.image = true;
      p.meta_labels = {gcl::v1::META_LABEL_PATIENT};
      break;
    case gcl::v1::VARIANT_SINGLE_M2:
      p.image = true;
      p.meta_labels = {gcl::v1::META_LABEL_POSITION};
      break;
    case gcl::v1::VARIANT_SINGLE_M3:
      p.image = true;
      p.meta_labels = {gcl::v1::META_LABEL_PHASE};
      break;
    case gcl::v1::VARIANT_MULTI_NAIVE:
    case gcl::v1::VARIANT_MULTI_GM:
    case gcl::v1::VARIANT_MULTI_PCGRAD:
      p.image = true;
      p.meta_labels = DefaultMetaLabels(format);
      p.combine = v == gcl::v1::VARIANT_MULTI_GM       ? gcl::v1::COMBINE_GRAD_MITIGATOR
                  : v == gcl::v1::VARIANT_MULTI_PCGRAD ? gcl::v1::COMBINE_PCGRAD
                                                       : gcl::v1::COMBINE_MEAN;
      break;
    case gcl::v1::VARIANT_PIXCL:
    case gcl::v1::VARIANT_PIXCL_GF:
      // Section 9: the pixel loss pairs each anchor with its other view only.
      p.image = true;
      p.pixel = true;
      p.partners = 1;
      p.grad_filter = v == gcl::v1::VARIANT_PIXCL_GF;
      break;
    case gcl::v1::VARIANT_FULL_FROZEN:
      p.frozen_encoder = true;
      [[fallthrough]];
    case gcl::v1::VARIANT_FULL:
    default:  // VARIANT_UNSPECIFIED: the method itself.
      p.image = true;
      p.pixel = true;
      p.combine = gcl::v1::COMBINE_GRAD_MITIGATOR;
      p.grad_filter = true;
      p.meta_labels = DefaultMetaLabels(format);
      break;
  }
  return p;
}

std::vector<MetaLabel> VariantMetaLabels(Variant v, Format format) {
  return GetVariantPreset(v, format).meta_labels;
}

void ApplyVariantPreset(JobSpec* spec) {
  const VariantPreset p = GetVariantPreset(spec->method().variant(), spec->dataset().format());
  gcl::v1::Method* m = spec->mutable_method();
  if (!m->has_image()) m->set_image(p.image);
  if (!m->has_pixel()) m->set_pixel(p.pixel);
  if (m->combine() == gcl::v1::COMBINE_UNSPECIFIED) m->set_combine(p.combine);
  if (!m->has_grad_filter()) m->set_grad_filter(p.grad_filter);
  if (!m->has_partners() && p.partners.has_value()) m->set_partners(*p.partners);
  if (spec->meta_labels().empty()) {
    for (MetaLabel label : p.meta_labels) spec->add_meta_labels(label);
  }
  if (p.frozen_encoder) spec->set_frozen_encoder(true);
}

}  // namespace gcl::spec
