#include "worker/trainer/job_runner.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/job_spec_yaml.h"
#include "gcl/spec/variants.h"
#include "worker/gcl/train/metrics_writer.h"
#include "worker/trainer/device_spec.h"
#include "worker/trainer/progress.h"

namespace gcl::trainer {
namespace fs = std::filesystem;
using gcl::v1::JobSpec;

namespace {

std::string ResolvePath(const std::string& p, const std::string& base_dir) {
  if (p.empty() || fs::path(p).is_absolute() || base_dir.empty()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

std::string SpecDir(const std::string& spec_path) {
  auto parent = fs::absolute(spec_path).parent_path();
  return parent.string();
}

std::string OutputDir(const JobSpec& spec, const RunFlags& flags, const std::string& spec_dir) {
  if (!flags.output_dir.empty()) return flags.output_dir;
  if (!spec.output().dir().empty()) return ResolvePath(spec.output().dir(), spec_dir);
  return (fs::path("runs") / (spec.name().empty() ? "job" : spec.name())).string();
}

// Meta labels a variant trains with (algorithm spec section 9).
std::vector<core::MetaLabel> VariantMetaLabels(const JobSpec& spec) {
  using V = gcl::v1::Variant;
  switch (spec.method().variant()) {
    case V::VARIANT_RANDOM_INIT:
    case V::VARIANT_SIMCLR:
    case V::VARIANT_PIXCL:
    case V::VARIANT_PIXCL_GF:
      return {};
    case V::VARIANT_SINGLE_M1:
      return {core::MetaLabel::kPatient};
    case V::VARIANT_SINGLE_M2:
      return {core::MetaLabel::kPosition};
    case V::VARIANT_SINGLE_M3:
      return {core::MetaLabel::kPhase};
    default:
      break;
  }
  std::vector<core::MetaLabel> out;
  for (int m : spec.meta_labels()) {
    switch (static_cast<gcl::v1::MetaLabel>(m)) {
      case gcl::v1::META_LABEL_PATIENT: out.push_back(core::MetaLabel::kPatient); break;
      case gcl::v1::META_LABEL_POSITION: out.push_back(core::MetaLabel::kPosition); break;
      case gcl::v1::META_LABEL_PHASE: out.push_back(core::MetaLabel::kPhase); break;
      default: break;
    }
  }
  return out;
}

core::UNetOptions ModelOptions(const JobSpec& spec, int64_t num_classes) {
  core::UNetOptions m;
  m.base = spec.model().base_width();
  m.depth = spec.model().depth();
  m.num_classes = num_classes;
  return m;
}

absl::StatusOr<std::pair<JobSpec, std::string>> LoadSpec(const RunFlags& flags) {
  if (flags.spec_path.empty()) return absl::InvalidArgumentError("--spec FILE is required");
  GCL_ASSIGN_OR_RETURN(JobSpec spec, gcl::spec::ReadJobSpecFile(flags.spec_path));
  if (flags.threads >= 0) spec.mutable_train()->set_threads(flags.threads);
  return std::make_pair(std::move(spec), SpecDir(flags.spec_path));
}

// Only pre-training runs data-parallel; fine-tuning 1-8 volumes needs one rank.
absl::Status RequireSingleRank(const char* what) {
  GCL_ASSIGN_OR_RETURN(core::DataParallelOptions dp, core::DataParallelOptionsFromEnv());
  if (dp.world_size == 1) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(
      what, " runs on one rank, but GCL_WORLD_SIZE is ", dp.world_size,
      " (resources.devices must be 1 for this kind)"));
}

double Mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? std::nan("") : s / v.size();
}

// Sample standard deviation (n - 1), 0 for a single run.
double Std(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = Mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / (v.size() - 1));
}

}  // namespace

absl::StatusOr<core::Dataset> LoadSpecDataset(const JobSpec& spec, const std::string& spec_dir) {
  GCL_ASSIGN_OR_RETURN(core::DatasetOptions dopt, DatasetOptionsFromSpec(spec, spec_dir));
  std::printf("loading %s dataset %s (image_size %lld)\n", dopt.format.c_str(),
              dopt.format == "synthetic" ? "(generated)" : dopt.path.c_str(),
              static_cast<long long>(dopt.image_size));
  GCL_ASSIGN_OR_RETURN(core::Dataset data, core::LoadDataset(dopt));
  std::printf("  %zu train / %zu val / %zu test volumes, %lld classes\n", data.train.size(),
              data.val.size(), data.test.size(), static_cast<long long>(data.num_classes()));
  return data;
}

absl::StatusOr<core::PretrainResult> RunPretrainJob(const JobSpec& spec, const core::Dataset& data,
                                                    const std::string& output_dir,
                                                    const std::string& metrics_path, bool quiet,
                                                    core::DataParallelGroup* group) {
  GCL_ASSIGN_OR_RETURN(core::PretrainOptions opt, PretrainOptionsFromSpec(spec));
  opt.output_dir = output_dir;
  opt.config_json = spec.ShortDebugString();
  GCL_ASSIGN_OR_RETURN(core::MetricsWriter extra, core::MetricsWriter::Open(metrics_path));
  GCL_ASSIGN_OR_RETURN(auto trainer, core::Pretrainer::Create(data, opt, group));
  std::printf("pre-training %s: %lld steps, batch %lld slices, %lld threads, output %s\n",
              gcl::spec::VariantName(spec.method().variant()).c_str(),
              static_cast<long long>(opt.steps), static_cast<long long>(opt.batch),
              static_cast<long long>(core::ResolveThreads(opt.threads)), opt.output_dir.c_str());
  std::fflush(stdout);
  ProgressLine progress(stderr, "pretrain", opt.log_every);
  absl::Status metrics_status;
  core::PretrainCallbacks cb;
  cb.on_step = [&](int64_t step, int64_t total, double loss, double secs,
                   const core::MetricsRecord& record) {
    if (!quiet) progress.Update(step, total, loss, secs);
    if (!record.samples.empty() && metrics_status.ok()) metrics_status = extra.Write(record);
  };
  GCL_ASSIGN_OR_RETURN(core::PretrainResult result, trainer->Run(cb));
  progress.Finish();
  GCL_RETURN_IF_ERROR(metrics_status);
  return result;
}

absl::StatusOr<core::FinetuneResult> RunFinetuneJob(const core::Dataset& data,
                                                    const core::FinetuneOptions& o,
                                                    core::MetricsWriter* extra, bool quiet) {
  ProgressLine progress(stderr, absl::StrFormat("finetune M=%d r=%d", o.labeled_volumes, o.repeat),
                        50);
  core::FinetuneCallbacks cb;
  absl::Status metrics_status;
  cb.on_step = [&](int64_t step, double loss, double /*lr*/, double secs) {
    if (!quiet) progress.Update(step, o.steps, loss, secs);
    if (extra != nullptr && step % 10 == 0 && metrics_status.ok()) {
      core::MetricsRecord rec;
      rec.step = step;
      rec.Add("gcl_finetune_loss", loss, {{"labeled_volumes", std::to_string(o.labeled_volumes)}});
      metrics_status = extra->Write(rec);
    }
  };
  // Validation Dice reaches the agent's /metrics too (Grafana "GCL training").
  cb.on_validate = [&](int64_t step, double val_dice) {
    if (extra == nullptr || !metrics_status.ok()) return;
    core::MetricsRecord rec;
    rec.step = step;
    rec.Add("gcl_finetune_val_dice", val_dice,
            {{"labeled_volumes", std::to_string(o.labeled_volumes)}});
    metrics_status = extra->Write(rec);
  };
  GCL_ASSIGN_OR_RETURN(core::FinetuneResult res, core::RunFinetune(data, o, cb));
  progress.Finish();
  GCL_RETURN_IF_ERROR(metrics_status);
  return res;
}

absl::StatusOr<core::DatasetOptions> DatasetOptionsFromSpec(const JobSpec& spec,
                                                            const std::string& spec_dir) {
  const auto& d = spec.dataset();
  core::DatasetOptions o;
  switch (d.format()) {
    case gcl::v1::FORMAT_ACDC_H5: o.format = "acdc-h5"; break;
    case gcl::v1::FORMAT_NIFTI: o.format = "nifti"; break;
    case gcl::v1::FORMAT_MSD: o.format = "msd"; break;
    case gcl::v1::FORMAT_SYNTHETIC: o.format = "synthetic"; break;
    default:
      return absl::UnimplementedError(absl::StrCat(
          "dataset.format: ", gcl::v1::Format_Name(d.format()), " is not supported by gcl-train yet"));
  }
  o.path = ResolvePath(d.path(), spec_dir);
  o.image_size = d.image_size();
  if (!d.split().train().empty()) o.train_list = d.split().train();
  if (!d.split().val().empty()) o.val_list = d.split().val();
  if (!d.split().test().empty()) o.test_list = d.split().test();
  o.cache_dir = ResolvePath(d.cache_dir(), spec_dir);
  if (d.has_synthetic()) {
    if (d.synthetic().patients() > 0) o.synthetic.patients = d.synthetic().patients();
    if (d.synthetic().slices() > 0) o.synthetic.slices = d.synthetic().slices();
    if (d.synthetic().size() > 0) o.synthetic.size = d.synthetic().size();
    if (d.synthetic().seed() > 0) o.synthetic.seed = d.synthetic().seed();
  }
  if (d.val_cases() > 0) o.val_cases = d.val_cases();
  if (d.test_cases() > 0) o.test_cases = d.test_cases();
  return o;
}

absl::StatusOr<core::PretrainOptions> PretrainOptionsFromSpec(const JobSpec& spec) {
  const auto& m = spec.method();
  const auto& t = spec.train();
  core::PretrainOptions o;
  o.model = ModelOptions(spec, 2);
  o.proj_dim = spec.model().proj_dim();
  o.meta_labels = VariantMetaLabels(spec);
  o.sync_batch_norm = t.sync_batch_norm();
  o.image_loss = m.image();
  o.pixel_loss = m.pixel();
  o.pixel_weight = m.pixel_weight();
  o.tau = m.tau();
  o.pool_k = m.pool_k();
  o.partners = m.partners();
  o.grad_filter = m.grad_filter();
  o.pace = m.pace() == gcl::v1::PACE_ROOT ? core::Pace::kRoot : core::Pace::kLinear;
  o.pace_lambda0 = m.pace_lambda0();
  o.pace_gamma = m.pace_gamma();
  o.s2_every = m.s2_every();
  switch (m.combine()) {
    case gcl::v1::COMBINE_GRAD_MITIGATOR: o.combine = core::CombineMode::kGradMitigator; break;
    case gcl::v1::COMBINE_PCGRAD: o.combine = core::CombineMode::kPCGrad; break;
    default: o.combine = core::CombineMode::kMean; break;
  }
  o.mitigator.beta = m.ema_beta();
  o.mitigator.ema_update = m.ema_update() == gcl::v1::EMA_UPDATE_ON_MODIFY
                               ? core::EmaUpdate::kOnModify
                               : core::EmaUpdate::kAlways;
  o.mitigator.granularity = m.granularity() == gcl::v1::GRANULARITY_WHOLE_MODEL
                                ? core::Granularity::kWholeModel
                                : core::Granularity::kPerTensor;
  o.pcgrad_per_tensor = m.pcgrad_per_tensor();
  o.steps = t.steps();
  o.batch = t.batch();
  o.lr = t.lr();
  o.momentum = t.momentum();
  o.weight_decay = t.weight_decay();
  o.cosine = t.schedule() != gcl::v1::SCHEDULE_CONSTANT;
  o.seed = t.seed();
  o.threads = t.threads();
  o.log_every = t.log_every();
  o.checkpoint_every = t.checkpoint_every();
  o.device = DeviceOptionsFromSpec(spec);
  return o;
}

absl::StatusOr<core::FinetuneOptions> FinetuneOptionsFromSpec(const JobSpec& spec,
                                                              const std::string& spec_dir) {
  const auto& t = spec.train();
  core::FinetuneOptions o;
  o.model.base = spec.model().base_width();
  o.model.depth = spec.model().depth();
  if (spec.init().has_checkpoint()) {
    GCL_ASSIGN_OR_RETURN(o.init_checkpoint,
                         ResolveCheckpoint(ResolvePath(spec.init().checkpoint(), spec_dir)));
  } else if (spec.init().has_job()) {
    return absl::FailedPreconditionError(
        "init.job: naming a job needs the coordinator (gclctl submit); gcl-train takes "
        "init: {checkpoint: PATH}");
  }
  o.frozen_encoder = spec.frozen_encoder() ||
                     spec.method().variant() == gcl::v1::VARIANT_FULL_FROZEN;
  o.steps = t.steps();
  o.batch = t.batch();
  o.lr = t.lr();
  o.lr_min = t.lr_min();
  o.weight_decay = t.weight_decay();
  o.loss = t.loss() == gcl::v1::LOSS_CE ? "ce" : "ce_dice";
  o.val_every = t.val_every();
  o.seed = t.seed();
  o.threads = t.threads();
  o.device = DeviceOptionsFromSpec(spec);
  return o;
}

absl::StatusOr<std::string> ResolveCheckpoint(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return path;
  const fs::path dir = fs::is_directory(fs::path(path) / "checkpoints", ec)
                           ? fs::path(path) / "checkpoints"
                           : fs::path(path);
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(absl::StrCat("init.checkpoint: ", path,
                                            ": no such checkpoint file or run folder"));
  }
  std::string best;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("step-", 0) == 0 && e.path().extension() == ".ckpt" &&
        (best.empty() || name > fs::path(best).filename().string())) {
      best = e.path().string();
    }
  }
  if (best.empty()) {
    return absl::NotFoundError(
        absl::StrCat("init.checkpoint: ", path, ": folder holds no step-*.ckpt checkpoint"));
  }
  return best;
}

absl::Status RunPretrainCommand(const RunFlags& flags) {
  GCL_ASSIGN_OR_RETURN(auto loaded, LoadSpec(flags));
  const auto& [spec, spec_dir] = loaded;
  if (spec.kind() != gcl::v1::KIND_PRETRAIN) {
    return absl::InvalidArgumentError(
        absl::StrCat(flags.spec_path, ": kind: 'pretrain' expected for gcl-train pretrain"));
  }
  if (spec.method().variant() == gcl::v1::VARIANT_RANDOM_INIT) {
    return absl::InvalidArgumentError(absl::StrCat(
        flags.spec_path, ": method.variant: random_init has no pre-training; fine-tune with init: random"));
  }
  GCL_ASSIGN_OR_RETURN(core::Dataset data, LoadSpecDataset(spec, spec_dir));
  GCL_ASSIGN_OR_RETURN(core::DataParallelOptions dp, core::DataParallelOptionsFromEnv());
  if (std::getenv("GCL_COLLECTIVE_TIMEOUT_S") == nullptr) {
    dp.timeout = std::chrono::seconds(spec.resources().collective_timeout_s());
  }
  const core::TrainDevice device = DeviceOptionsFromSpec(spec).device;
  dp.cuda = device == core::TrainDevice::kCuda ||
            (device == core::TrainDevice::kAuto && core::CudaAvailable());
  std::unique_ptr<core::DataParallelGroup> group;
  std::string metrics_path = flags.metrics_path;
  if (dp.world_size > 1) {
    GCL_ASSIGN_OR_RETURN(group, core::DataParallelGroup::Join(dp));
    std::printf("rank %d of %d joined rendezvous %s\n", dp.rank, dp.world_size, dp.rendezvous.c_str());
    if (dp.rank != 0) metrics_path.clear();  // rank 0 reports for the job
  }
  GCL_ASSIGN_OR_RETURN(
      core::PretrainResult result,
      RunPretrainJob(spec, data, OutputDir(spec, flags, spec_dir), metrics_path, flags.quiet,
                     group.get()));
  if (result.resumed_from > 0) {
    std::printf("resumed from step %lld\n", static_cast<long long>(result.resumed_from));
  }
  std::printf("done: %lld steps, loss %.4f -> %.4f\ncheckpoint: %s\nencoder (safetensors): %s\n",
              static_cast<long long>(result.steps_done), result.first_loss, result.last_loss,
              result.final_checkpoint.c_str(), result.encoder_safetensors.c_str());
  return absl::OkStatus();
}

absl::Status RunFinetuneCommand(const RunFlags& flags) {
  GCL_ASSIGN_OR_RETURN(auto loaded, LoadSpec(flags));
  const auto& [spec, spec_dir] = loaded;
  if (spec.kind() != gcl::v1::KIND_FINETUNE) {
    return absl::InvalidArgumentError(
        absl::StrCat(flags.spec_path, ": kind: 'finetune' expected for gcl-train finetune"));
  }
  GCL_RETURN_IF_ERROR(RequireSingleRank("fine-tuning"));
  GCL_ASSIGN_OR_RETURN(core::Dataset data, LoadSpecDataset(spec, spec_dir));
  GCL_ASSIGN_OR_RETURN(core::FinetuneOptions base, FinetuneOptionsFromSpec(spec, spec_dir));
  base.model.num_classes = data.num_classes();
  const std::string out = OutputDir(spec, flags, spec_dir);
  GCL_ASSIGN_OR_RETURN(core::MetricsWriter extra, core::MetricsWriter::Open(flags.metrics_path));
  std::printf("fine-tuning from %s, %lld steps, labelled volumes [%s] x %lld repeats\n",
              base.init_checkpoint.empty() ? "random init" : base.init_checkpoint.c_str(),
              static_cast<long long>(base.steps), absl::StrJoin(spec.labeled_volumes(), ", ").c_str(),
              static_cast<long long>(spec.repeats()));

  struct Cell {
    int64_t m_lab;
    std::vector<double> dice;
    std::vector<std::vector<double>> per_class;
  };
  std::vector<Cell> cells;
  std::string csv = "labeled_volumes,repeat,mean_dice,mean_hd95,hd95_unit,best_val_dice,best_step";
  for (size_t c = 1; c < data.class_names.size(); ++c) absl::StrAppend(&csv, ",dice_", data.class_names[c]);
  csv += "\n";
  for (int64_t m_lab : spec.labeled_volumes()) {
    Cell cell{m_lab, {}, {}};
    const int64_t first = spec.has_repeat() ? spec.repeat() : 0;
    const int64_t last = spec.has_repeat() ? spec.repeat() + 1 : spec.repeats();
    for (int64_t r = first; r < last; ++r) {
      core::FinetuneOptions o = base;
      o.labeled_volumes = m_lab;
      o.repeat = r;
      o.output_dir = (fs::path(out) / absl::StrFormat("m%d-r%d", m_lab, r)).string();
      GCL_ASSIGN_OR_RETURN(core::FinetuneResult res, RunFinetuneJob(data, o, &extra, flags.quiet));
      cell.dice.push_back(res.mean_dice);
      cell.per_class.push_back(res.per_class_dice);
      absl::StrAppend(&csv, m_lab, ",", r, ",", JsonNumber(res.mean_dice), ",",
                      JsonNumber(res.mean_hd95), ",", res.hd95_unit, ",",
                      JsonNumber(res.best_val_dice), ",", res.best_step);
      for (double d : res.per_class_dice) absl::StrAppend(&csv, ",", JsonNumber(d));
      csv += "\n";
      std::printf("  M_lab=%lld repeat %lld: test Dice %.4f (labelled: %s)\n",
                  static_cast<long long>(m_lab), static_cast<long long>(r), res.mean_dice,
                  absl::StrJoin(res.labeled_ids, " ").c_str());
    }
    cells.push_back(std::move(cell));
  }
  std::error_code ec;
  fs::create_directories(out, ec);
  std::ofstream(fs::path(out) / "results.csv") << csv;

  // The Dice table: mean ± std over repeats per M_lab, and per class.
  std::printf("\n%-8s %-16s", "M_lab", "Dice (mean±std)");
  for (size_t c = 1; c < data.class_names.size(); ++c) std::printf(" %-14s", data.class_names[c].c_str());
  std::printf("\n");
  for (const auto& cell : cells) {
    std::printf("%-8lld %.3f ± %.3f    ", static_cast<long long>(cell.m_lab), Mean(cell.dice),
                Std(cell.dice));
    for (size_t c = 0; c + 1 < data.class_names.size(); ++c) {
      std::vector<double> v;
      for (const auto& pc : cell.per_class) {
        if (c < pc.size()) v.push_back(pc[c]);
      }
      std::printf(" %.3f ± %.3f  ", Mean(v), Std(v));
    }
    std::printf("\n");
  }
  std::printf("results: %s\n", (fs::path(out) / "results.csv").c_str());
  return absl::OkStatus();
}

absl::Status RunValidateCommand(const RunFlags& flags) {
  GCL_ASSIGN_OR_RETURN(auto loaded, LoadSpec(flags));
  const auto& [spec, spec_dir] = loaded;
  std::printf("%s: spec OK (kind %s, variant %s)\n", flags.spec_path.c_str(),
              gcl::v1::Kind_Name(spec.kind()).c_str(),
              gcl::spec::VariantName(spec.method().variant()).c_str());
  GCL_ASSIGN_OR_RETURN(core::Dataset data, LoadSpecDataset(spec, spec_dir));
  if (spec.kind() == gcl::v1::KIND_PRETRAIN) {
    GCL_ASSIGN_OR_RETURN(core::PretrainOptions opt, PretrainOptionsFromSpec(spec));
    // Building the sampler checks that the batch can be formed from this data.
    opt.steps = 0;
    GCL_ASSIGN_OR_RETURN(auto trainer, core::Pretrainer::Create(data, opt));
  } else if (spec.kind() == gcl::v1::KIND_FINETUNE) {
    GCL_ASSIGN_OR_RETURN(core::FinetuneOptions opt, FinetuneOptionsFromSpec(spec, spec_dir));
    if (data.val.empty() || data.test.empty()) {
      return absl::InvalidArgumentError("dataset: fine-tuning needs val and test volumes");
    }
    // The same selection the runs will make, so a count the data cannot
    // satisfy fails here and not hours into an experiment.
    for (int64_t m : spec.labeled_volumes()) {
      opt.labeled_volumes = m;
      auto selected = core::SelectLabeledVolumes(data, opt);
      if (!selected.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("labeled_volumes: ", m, ": ", selected.status().message()));
      }
    }
  }
  std::printf("dataset OK\n");
  return absl::OkStatus();
}

}  // namespace gcl::trainer
