#include "gcl/spec/job_spec_validate.h"

#include <algorithm>
#include <cctype>
#include <set>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/job_spec_yaml.h"
#include "gcl/spec/variants.h"

namespace gcl::spec {
namespace {

using gcl::v1::JobSpec;
using gcl::v1::Train;

// Algorithm spec section 8 (pre-training) and section 13.
void FillPretrainDefaults(Train* t) {
  if (!t->has_steps()) t->set_steps(10000);
  if (!t->has_batch()) t->set_batch(32);  // 4 patients x 2 phases x 4 positions
  if (t->optimizer() == gcl::v1::OPTIMIZER_UNSPECIFIED) t->set_optimizer(gcl::v1::OPTIMIZER_SGD);
  if (!t->has_lr()) t->set_lr(0.1);
  if (!t->has_lr_min()) t->set_lr_min(0.0);  // cosine to 0
}

// Algorithm spec section 8 (fine-tuning).
void FillFinetuneDefaults(Train* t) {
  if (!t->has_steps()) t->set_steps(10000);
  if (!t->has_batch()) t->set_batch(10);
  if (t->optimizer() == gcl::v1::OPTIMIZER_UNSPECIFIED) t->set_optimizer(gcl::v1::OPTIMIZER_ADAM);
  if (!t->has_lr()) t->set_lr(1e-3);
  if (!t->has_lr_min()) t->set_lr_min(1e-5);
  if (t->loss() == gcl::v1::LOSS_UNSPECIFIED) t->set_loss(gcl::v1::LOSS_CE_DICE);
}

void FillCommonTrainDefaults(Train* t) {
  if (!t->has_momentum()) t->set_momentum(0.9);
  if (!t->has_weight_decay()) t->set_weight_decay(1e-5);
  if (t->schedule() == gcl::v1::SCHEDULE_UNSPECIFIED) t->set_schedule(gcl::v1::SCHEDULE_COSINE);
  if (!t->has_seed()) t->set_seed(1);
  if (!t->has_checkpoint_every()) t->set_checkpoint_every(100);
  if (!t->has_log_every()) t->set_log_every(10);
  if (!t->has_val_every()) t->set_val_every(500);
  if (!t->has_sync_batch_norm()) t->set_sync_batch_norm(true);
}

// Variant-independent method defaults (sections 8, 13).
void FillMethodDefaults(gcl::v1::Method* m) {
  if (!m->has_tau()) m->set_tau(0.1);
  if (!m->has_pool_k()) m->set_pool_k(10);
  if (!m->has_ema_beta()) m->set_ema_beta(0.01);
  if (m->ema_update() == gcl::v1::EMA_UPDATE_UNSPECIFIED) {
    m->set_ema_update(gcl::v1::EMA_UPDATE_ALWAYS);
  }
  if (!m->has_pixel_weight()) m->set_pixel_weight(1.0);
  if (m->pace() == gcl::v1::PACE_UNSPECIFIED) m->set_pace(gcl::v1::PACE_LINEAR);
  if (!m->has_pace_lambda0()) m->set_pace_lambda0(0.2);
  if (!m->has_pace_gamma()) m->set_pace_gamma(1.0);
  if (m->granularity() == gcl::v1::GRANULARITY_UNSPECIFIED) {
    m->set_granularity(gcl::v1::GRANULARITY_PER_TENSOR);
  }
}

bool HasLabel(const JobSpec& spec, gcl::v1::MetaLabel label) {
  return std::find(spec.meta_labels().begin(), spec.meta_labels().end(), label) !=
         spec.meta_labels().end();
}

// Collects the first failure, located by `where`.
class Checker {
 public:
  explicit Checker(const std::map<std::string, std::string>& where) : where_(where) {}

  // Fails with "<line>:<col>: key: what" (location of key or its nearest
  // written parent).
  absl::Status Fail(const std::string& key, const std::string& what) const {
    std::string k = key;
    while (true) {
      auto it = where_.find(k);
      if (it != where_.end()) {
        return absl::InvalidArgumentError(absl::StrCat(it->second, ": ", key, ": ", what));
      }
      // "a.b[2]" -> "a.b" -> "a"
      const std::size_t cut = k.find_last_of(".[");
      if (cut == std::string::npos) break;
      k.resize(cut);
    }
    return absl::InvalidArgumentError(absl::StrCat(key, ": ", what));
  }

 private:
  const std::map<std::string, std::string>& where_;
};

std::string Num(double v) { return absl::StrCat(v); }

absl::Status CheckTrain(const Train& t, const std::string& p, bool pretrain, bool phase,
                        const Checker& c) {
  if (t.has_steps() && t.steps() < 1) {
    return c.Fail(p + ".steps", absl::StrCat("must be >= 1, got ", t.steps()));
  }
  if (t.has_batch()) {
    if (t.batch() < 1) return c.Fail(p + ".batch", absl::StrCat("must be >= 1, got ", t.batch()));
    // Section 2.3: every anchor needs positives for every meta label, so a
    // pre-training batch is patients x (2 phases) x 4 positions.
    const int64_t unit = pretrain ? (phase ? 8 : 4) : 1;
    if (t.batch() % unit != 0) {
      return c.Fail(p + ".batch",
                    absl::StrCat("must be divisible by ", unit,
                                 phase ? " (patients x 2 phases x 4 positions)"
                                       : " (patients x 4 positions)",
                                 ", got ", t.batch()));
    }
  }
  if (t.has_lr() && !(t.lr() > 0)) return c.Fail(p + ".lr", "must be > 0, got " + Num(t.lr()));
  if (t.has_lr_min() && t.lr_min() < 0) {
    return c.Fail(p + ".lr_min", "must be >= 0, got " + Num(t.lr_min()));
  }
  if (t.has_lr_min() && t.has_lr() && t.lr_min() > t.lr()) {
    return c.Fail(p + ".lr_min", absl::StrCat("must be <= lr (", Num(t.lr()), "), got ",
                                              Num(t.lr_min())));
  }
  if (t.has_momentum() && (t.momentum() < 0 || t.momentum() >= 1)) {
    return c.Fail(p + ".momentum", "must be in [0, 1), got " + Num(t.momentum()));
  }
  if (t.has_weight_decay() && t.weight_decay() < 0) {
    return c.Fail(p + ".weight_decay", "must be >= 0, got " + Num(t.weight_decay()));
  }
  if (t.threads() < 0) return c.Fail(p + ".threads", absl::StrCat("must be >= 0, got ", t.threads()));
  if (t.has_checkpoint_every() && t.checkpoint_every() < 0) {
    return c.Fail(p + ".checkpoint_every", absl::StrCat("must be >= 0, got ", t.checkpoint_every()));
  }
  if (t.has_log_every() && t.log_every() < 1) {
    return c.Fail(p + ".log_every", absl::StrCat("must be >= 1, got ", t.log_every()));
  }
  if (t.has_val_every() && t.val_every() < 0) {
    return c.Fail(p + ".val_every", absl::StrCat("must be >= 0, got ", t.val_every()));
  }
  if (pretrain && t.loss() != gcl::v1::LOSS_UNSPECIFIED) {
    return c.Fail(p + ".loss", "is the fine-tuning loss; pre-training has none");
  }
  return absl::OkStatus();
}

absl::Status CheckDataset(const JobSpec& spec, const Checker& c) {
  const gcl::v1::Dataset& d = spec.dataset();
  if (d.format() == gcl::v1::FORMAT_UNSPECIFIED) {
    const auto& type = *gcl::v1::Format_descriptor();
    std::vector<std::string> names;
    for (int i = 1; i < type.value_count(); ++i) names.push_back(YamlEnumName(*type.value(i)));
    return c.Fail("dataset.format", absl::StrCat("required (", absl::StrJoin(names, ", "), ")"));
  }
  const bool synthetic = d.format() == gcl::v1::FORMAT_SYNTHETIC;
  if (!synthetic && d.path().empty()) {
    return c.Fail("dataset.path",
                  absl::StrCat("required for format ",
                               YamlEnumName(*gcl::v1::Format_descriptor()->FindValueByNumber(
                                   d.format()))));
  }
  if (!synthetic && d.has_synthetic()) {
    return c.Fail("dataset.synthetic", "only for format synthetic");
  }
  if (d.has_image_size()) {
    if (d.image_size() < 16 || d.image_size() > 1024) {
      return c.Fail("dataset.image_size",
                    absl::StrCat("must be in [16, 1024], got ", d.image_size()));
    }
    // Each of the depth-1 poolings halves the image (section 3.1).
    const int64_t depth = spec.model().has_depth() ? spec.model().depth() : 5;
    if (depth >= 2 && depth <= 7) {
      const int64_t factor = int64_t{1} << (depth - 1);
      if (d.image_size() % factor != 0) {
        return c.Fail("dataset.image_size",
                      absl::StrCat("must be divisible by 2^(depth-1) = ", factor,
                                   " for model.depth ", depth, ", got ", d.image_size()));
      }
    }
  }
  if (d.has_val_cases() && d.val_cases() < 0) {
    return c.Fail("dataset.val_cases", absl::StrCat("must be >= 0, got ", d.val_cases()));
  }
  if (d.has_test_cases() && d.test_cases() < 0) {
    return c.Fail("dataset.test_cases", absl::StrCat("must be >= 0, got ", d.test_cases()));
  }
  const gcl::v1::Synthetic& s = d.synthetic();
  if (s.has_patients()) {
    const int64_t held_out = d.val_cases() + d.test_cases();
    if (s.patients() < 1 || s.patients() <= held_out) {
      return c.Fail("dataset.synthetic.patients",
                    absl::StrCat("must be >= 1 and > val_cases + test_cases (", held_out,
                                 "), got ", s.patients()));
    }
  }
  if (s.has_slices() && s.slices() < 4) {
    return c.Fail("dataset.synthetic.slices",
                  absl::StrCat("must be >= 4 (one per position quantile), got ", s.slices()));
  }
  if (s.has_size() && (s.size() < 16 || s.size() > 1024)) {
    return c.Fail("dataset.synthetic.size", absl::StrCat("must be in [16, 1024], got ", s.size()));
  }
  return absl::OkStatus();
}

absl::Status CheckMethod(const JobSpec& spec, const Checker& c) {
  const gcl::v1::Method& m = spec.method();
  if (m.has_tau() && !(m.tau() > 0 && m.tau() <= 10)) {
    return c.Fail("method.tau", "must be in (0, 10], got " + Num(m.tau()));
  }
  if (m.has_pool_k() && (m.pool_k() < 1 || m.pool_k() > 4096)) {
    return c.Fail("method.pool_k", absl::StrCat("must be in [1, 4096], got ", m.pool_k()));
  }
  if (m.has_partners() && m.partners() < 1) {
    return c.Fail("method.partners", absl::StrCat("must be >= 1, got ", m.partners()));
  }
  if (m.has_ema_beta() && !(m.ema_beta() >= 0 && m.ema_beta() <= 1)) {
    return c.Fail("method.ema_beta", "must be in [0, 1], got " + Num(m.ema_beta()));
  }
  if (m.has_pixel_weight() && m.pixel_weight() < 0) {
    return c.Fail("method.pixel_weight", "must be >= 0, got " + Num(m.pixel_weight()));
  }
  if (m.has_pace_lambda0() && !(m.pace_lambda0() > 0 && m.pace_lambda0() <= 1)) {
    return c.Fail("method.pace_lambda0", "must be in (0, 1], got " + Num(m.pace_lambda0()));
  }
  if (m.has_pace_gamma() && !(m.pace_gamma() > 0)) {
    return c.Fail("method.pace_gamma", "must be > 0, got " + Num(m.pace_gamma()));
  }
  if (m.s2_every() < 0) {
    return c.Fail("method.s2_every", absl::StrCat("must be >= 0, got ", m.s2_every()));
  }
  if (spec.kind() == gcl::v1::KIND_PRETRAIN) {
    if (m.variant() == gcl::v1::VARIANT_RANDOM_INIT) {
      return c.Fail("method.variant",
                    "random_init has no pre-training; use kind finetune with init: random");
    }
    if (m.has_image() && m.has_pixel() && !m.image() && !m.pixel()) {
      return c.Fail("method.image", "pre-training needs image or pixel (or both) to be true");
    }
  }
  if (spec.kind() == gcl::v1::KIND_EXPERIMENT && m.variant() != gcl::v1::VARIANT_UNSPECIFIED) {
    return c.Fail("method.variant", "kind experiment takes its variants from experiment.variants");
  }
  return absl::OkStatus();
}

absl::Status CheckMetaLabels(const JobSpec& spec, const Checker& c) {
  std::set<int> seen;
  for (int i = 0; i < spec.meta_labels_size(); ++i) {
    const std::string key = absl::StrCat("meta_labels[", i, "]");
    if (!seen.insert(spec.meta_labels(i)).second) return c.Fail(key, "listed twice");
    if (spec.meta_labels(i) == gcl::v1::META_LABEL_PHASE &&
        spec.dataset().format() != gcl::v1::FORMAT_UNSPECIFIED &&
        !FormatHasPhase(spec.dataset().format())) {
      return c.Fail(key, "phase is only defined for acdc, acdc-h5 and synthetic data");
    }
  }
  return absl::OkStatus();
}

absl::Status CheckFinetuneKeys(const JobSpec& spec, const Checker& c) {
  for (int i = 0; i < spec.labeled_volumes_size(); ++i) {
    if (spec.labeled_volumes(i) < 1) {
      return c.Fail(absl::StrCat("labeled_volumes[", i, "]"),
                    absl::StrCat("must be >= 1, got ", spec.labeled_volumes(i)));
    }
  }
  if (spec.has_repeats() && spec.repeats() < 1) {
    return c.Fail("repeats", absl::StrCat("must be >= 1, got ", spec.repeats()));
  }
  if (spec.has_repeat()) {
    if (spec.kind() != gcl::v1::KIND_FINETUNE) return c.Fail("repeat", "only for kind finetune");
    const int64_t repeats = spec.has_repeats() ? spec.repeats() : 1;
    if (spec.repeat() < 0 || spec.repeat() >= repeats) {
      return c.Fail("repeat", absl::StrCat("must be in [0, repeats = ", repeats, "), got ", spec.repeat()));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckInit(const JobSpec& spec, const Checker& c) {
  const gcl::v1::Init& init = spec.init();
  switch (init.source_case()) {
    case gcl::v1::Init::SOURCE_NOT_SET:
      return c.Fail("init", "required for kind finetune: random, {checkpoint: ID} or {job: ID}");
    case gcl::v1::Init::kCheckpoint:
      if (init.checkpoint().empty()) return c.Fail("init.checkpoint", "must not be empty");
      break;
    case gcl::v1::Init::kJob:
      if (init.job().empty()) return c.Fail("init.job", "must not be empty");
      break;
    case gcl::v1::Init::kRandom:
      if (!init.random()) return c.Fail("init.random", "must be true (or give checkpoint/job)");
      break;
  }
  if (spec.method().variant() == gcl::v1::VARIANT_RANDOM_INIT &&
      init.source_case() != gcl::v1::Init::kRandom) {
    return c.Fail("init", "method.variant random_init needs init: random");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ApplyDefaults(JobSpec* spec) {
  if (spec->kind() == gcl::v1::KIND_UNSPECIFIED) {
    return absl::InvalidArgumentError("kind: required (pretrain, finetune or experiment)");
  }
  gcl::v1::Dataset* d = spec->mutable_dataset();
  if (!d->has_image_size()) d->set_image_size(96);
  if (!d->has_val_cases()) d->set_val_cases(2);
  if (!d->has_test_cases()) d->set_test_cases(2);
  if (d->format() == gcl::v1::FORMAT_SYNTHETIC) {
    gcl::v1::Synthetic* s = d->mutable_synthetic();
    if (!s->has_patients()) s->set_patients(12);
    if (!s->has_slices()) s->set_slices(8);
    if (!s->has_size()) s->set_size(d->image_size());
    if (!s->has_seed()) s->set_seed(1);
  }

  gcl::v1::Method* m = spec->mutable_method();
  if (spec->kind() == gcl::v1::KIND_PRETRAIN && m->variant() == gcl::v1::VARIANT_UNSPECIFIED) {
    m->set_variant(gcl::v1::VARIANT_FULL);
  }
  // Experiment children get their variant's preset when expanded; filling it
  // here would make the preset look like explicit overrides.
  if (m->variant() != gcl::v1::VARIANT_UNSPECIFIED) {
    ApplyVariantPreset(spec);
    if (!m->has_partners()) m->set_partners(4);
  }
  FillMethodDefaults(m);

  gcl::v1::Model* model = spec->mutable_model();
  if (!model->has_base_width()) model->set_base_width(16);
  if (!model->has_depth()) model->set_depth(5);
  if (!model->has_proj_dim()) model->set_proj_dim(128);

  switch (spec->kind()) {
    case gcl::v1::KIND_PRETRAIN:
      FillPretrainDefaults(spec->mutable_train());
      FillCommonTrainDefaults(spec->mutable_train());
      break;
    case gcl::v1::KIND_FINETUNE:
      FillFinetuneDefaults(spec->mutable_train());
      FillCommonTrainDefaults(spec->mutable_train());
      if (!spec->has_repeats()) spec->set_repeats(1);
      break;
    case gcl::v1::KIND_EXPERIMENT: {
      gcl::v1::Experiment* e = spec->mutable_experiment();
      FillPretrainDefaults(e->mutable_pretrain());
      FillCommonTrainDefaults(e->mutable_pretrain());
      FillFinetuneDefaults(e->mutable_finetune());
      FillCommonTrainDefaults(e->mutable_finetune());
      if (!spec->has_repeats()) spec->set_repeats(1);
      break;
    }
    default:
      break;
  }
  if (!spec->has_max_attempts()) spec->set_max_attempts(3);
  gcl::v1::Resources* r = spec->mutable_resources();
  if (!r->has_nodes()) r->set_nodes(1);
  // {nodes: K, devices_per_node: D} alone means K x D ranks.
  if (!r->has_devices()) {
    const int64_t per_node = r->has_devices_per_node() ? r->devices_per_node() : 1;
    r->set_devices(r->nodes() >= 1 && per_node >= 1 ? r->nodes() * per_node : 1);
  }
  if (!r->has_devices_per_node() && r->nodes() > 0) {
    r->set_devices_per_node(std::max<int64_t>(1, r->devices() / r->nodes()));
  }
  if (!r->has_collective_timeout_s()) r->set_collective_timeout_s(300);
  if (r->device_type() == gcl::v1::DEVICE_TYPE_UNSPECIFIED) {
    r->set_device_type(gcl::v1::DEVICE_TYPE_AUTO);
  }
  return absl::OkStatus();
}

absl::Status ValidateJobSpec(const JobSpec& spec, const std::map<std::string, std::string>& where) {
  const Checker c(where);
  if (!spec.name().empty()) {
    const bool ok_chars = std::all_of(spec.name().begin(), spec.name().end(), [](char ch) {
      return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' || ch == '_' || ch == '.';
    });
    if (!ok_chars || spec.name().size() > 128 || spec.name()[0] == '.') {
      return c.Fail("name", "use at most 128 letters, digits, '-', '_' or '.' (not first)");
    }
  }
  if (spec.kind() == gcl::v1::KIND_UNSPECIFIED) {
    return c.Fail("kind", "required (pretrain, finetune or experiment)");
  }
  GCL_RETURN_IF_ERROR(CheckDataset(spec, c));
  GCL_RETURN_IF_ERROR(CheckMetaLabels(spec, c));
  GCL_RETURN_IF_ERROR(CheckMethod(spec, c));

  const gcl::v1::Model& model = spec.model();
  if (model.has_depth() && (model.depth() < 2 || model.depth() > 7)) {
    return c.Fail("model.depth", absl::StrCat("must be in [2, 7], got ", model.depth()));
  }
  if (model.has_base_width() && (model.base_width() < 1 || model.base_width() > 512)) {
    return c.Fail("model.base_width",
                  absl::StrCat("must be in [1, 512], got ", model.base_width()));
  }
  if (model.has_proj_dim() && (model.proj_dim() < 1 || model.proj_dim() > 4096)) {
    return c.Fail("model.proj_dim", absl::StrCat("must be in [1, 4096], got ", model.proj_dim()));
  }

  const bool dataset_phase = FormatHasPhase(spec.dataset().format());
  switch (spec.kind()) {
    case gcl::v1::KIND_PRETRAIN:
      GCL_RETURN_IF_ERROR(CheckTrain(spec.train(), "train", /*pretrain=*/true,
                                     HasLabel(spec, gcl::v1::META_LABEL_PHASE), c));
      if (spec.has_init()) return c.Fail("init", "only for kind finetune");
      if (spec.labeled_volumes_size() > 0) {
        return c.Fail("labeled_volumes", "only for kinds finetune and experiment");
      }
      if (spec.has_repeats()) return c.Fail("repeats", "only for kinds finetune and experiment");
      if (spec.has_experiment()) return c.Fail("experiment", "only for kind experiment");
      break;
    case gcl::v1::KIND_FINETUNE:
      GCL_RETURN_IF_ERROR(CheckTrain(spec.train(), "train", /*pretrain=*/false, false, c));
      GCL_RETURN_IF_ERROR(CheckInit(spec, c));
      if (spec.labeled_volumes_size() == 0) {
        return c.Fail("labeled_volumes", "required for kind finetune, e.g. [1, 2, 8]");
      }
      GCL_RETURN_IF_ERROR(CheckFinetuneKeys(spec, c));
      if (spec.has_experiment()) return c.Fail("experiment", "only for kind experiment");
      break;
    case gcl::v1::KIND_EXPERIMENT: {
      const gcl::v1::Experiment& e = spec.experiment();
      if (e.variants_size() == 0) {
        return c.Fail("experiment.variants", "required: the variants to compare, e.g. [simclr, full]");
      }
      std::set<int> seen;
      for (int i = 0; i < e.variants_size(); ++i) {
        if (!seen.insert(e.variants(i)).second) {
          return c.Fail(absl::StrCat("experiment.variants[", i, "]"), "listed twice");
        }
      }
      const bool phase = spec.meta_labels_size() > 0
                             ? HasLabel(spec, gcl::v1::META_LABEL_PHASE)
                             : dataset_phase;
      GCL_RETURN_IF_ERROR(CheckTrain(e.pretrain(), "experiment.pretrain", true, phase, c));
      GCL_RETURN_IF_ERROR(CheckTrain(e.finetune(), "experiment.finetune", false, false, c));
      if (spec.labeled_volumes_size() == 0) {
        return c.Fail("labeled_volumes", "required for kind experiment, e.g. [1, 2, 8]");
      }
      GCL_RETURN_IF_ERROR(CheckFinetuneKeys(spec, c));
      if (spec.has_train()) {
        return c.Fail("train", "kind experiment uses experiment.pretrain and experiment.finetune");
      }
      if (spec.has_init()) return c.Fail("init", "kind experiment pre-trains its own encoders");
      break;
    }
    default:
      return c.Fail("kind", absl::StrCat("unknown kind ", static_cast<int>(spec.kind())));
  }

  if (spec.has_max_attempts() && (spec.max_attempts() < 1 || spec.max_attempts() > 100)) {
    return c.Fail("max_attempts", absl::StrCat("must be in [1, 100], got ", spec.max_attempts()));
  }
  const gcl::v1::Resources& r = spec.resources();
  if (r.has_devices() && r.devices() < 1) {
    return c.Fail("resources.devices", absl::StrCat("must be >= 1, got ", r.devices()));
  }
  if (r.has_nodes() && r.nodes() < 1) {
    return c.Fail("resources.nodes", absl::StrCat("must be >= 1, got ", r.nodes()));
  }
  if (r.has_collective_timeout_s() && r.collective_timeout_s() < 1) {
    return c.Fail("resources.collective_timeout_s",
                  absl::StrCat("must be >= 1, got ", r.collective_timeout_s()));
  }
  if (r.has_devices_per_node() && r.devices_per_node() < 1) {
    return c.Fail("resources.devices_per_node",
                  absl::StrCat("must be >= 1, got ", r.devices_per_node()));
  }
  if (r.has_devices() && r.has_nodes() && r.has_devices_per_node() &&
      r.devices() != r.nodes() * r.devices_per_node()) {
    return c.Fail("resources.devices",
                  absl::StrCat("must equal nodes x devices_per_node (", r.nodes(), " x ",
                               r.devices_per_node(), "), got ", r.devices()));
  }
  return absl::OkStatus();
}

}  // namespace gcl::spec
