#include "gcl/spec/experiment_children.h"

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/job_spec_validate.h"
#include "gcl/spec/variants.h"

namespace gcl::spec {
namespace {

using gcl::v1::JobSpec;
using gcl::v1::Variant;

std::string ChildName(const JobSpec& experiment, Variant v, const char* what) {
  return absl::StrCat(experiment.name().empty() ? "experiment" : experiment.name(), "-",
                      VariantName(v), "-", what);
}

absl::Status Validated(JobSpec* child, const char* what) {
  absl::Status s = ApplyDefaults(child);
  if (s.ok()) s = ValidateJobSpec(*child);
  if (!s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "experiment: the ", what, " job of variant ", VariantName(child->method().variant()),
        " is invalid: ", s.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<JobSpec> PretrainChildSpec(const JobSpec& experiment, Variant variant) {
  if (variant == gcl::v1::VARIANT_FULL_FROZEN) variant = gcl::v1::VARIANT_FULL;
  JobSpec c = experiment;
  c.set_name(ChildName(experiment, variant, "pretrain"));
  c.set_kind(gcl::v1::KIND_PRETRAIN);
  c.mutable_method()->set_variant(variant);
  *c.mutable_train() = experiment.experiment().pretrain();
  c.clear_experiment();
  c.clear_labeled_volumes();
  c.clear_repeats();
  c.clear_init();
  c.clear_frozen_encoder();
  // Only the "all meta labels" variants may narrow the set; the others'
  // labels come from their preset (single_m2 -> position, simclr -> none).
  if (GetVariantPreset(variant, experiment.dataset().format()).meta_labels.size() <= 1) {
    c.clear_meta_labels();
  }
  GCL_RETURN_IF_ERROR(Validated(&c, "pre-training"));
  return c;
}

absl::StatusOr<JobSpec> FinetuneChildSpec(const JobSpec& experiment, Variant variant,
                                          const gcl::v1::Init& init) {
  JobSpec c = experiment;
  c.set_name(ChildName(experiment, variant, "finetune"));
  c.set_kind(gcl::v1::KIND_FINETUNE);
  c.mutable_method()->set_variant(variant);
  *c.mutable_train() = experiment.experiment().finetune();
  c.clear_experiment();
  c.clear_meta_labels();
  if (variant == gcl::v1::VARIANT_RANDOM_INIT) {
    c.mutable_init()->set_random(true);
  } else {
    if (init.source_case() == gcl::v1::Init::SOURCE_NOT_SET || init.has_random()) {
      return absl::InvalidArgumentError("experiment: fine-tuning needs the pre-trained encoder");
    }
    *c.mutable_init() = init;
  }
  GCL_RETURN_IF_ERROR(Validated(&c, "fine-tuning"));
  return c;
}

}  // namespace gcl::spec
