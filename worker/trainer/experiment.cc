#include "worker/trainer/experiment.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/job_spec_validate.h"
#include "gcl/spec/job_spec_yaml.h"
#include "gcl/spec/variants.h"
#include "worker/trainer/results.h"

namespace gcl::trainer {
namespace fs = std::filesystem;
using gcl::v1::JobSpec;
using gcl::v1::Variant;

namespace {

constexpr char kDoneMarker[] = "done";

std::string ResolvePath(const std::string& p, const std::string& base_dir) {
  if (p.empty() || fs::path(p).is_absolute() || base_dir.empty()) return p;
  return (fs::path(base_dir) / p).lexically_normal().string();
}

// Rebuilds a cells.csv row from a finished run's finetune.json (a run killed
// between writing it and appending its row).
absl::StatusOr<CellRow> RowFromFinetuneJson(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return absl::DataLossError(absl::StrCat(path.string(), ": unreadable"));
  absl::StatusOr<JsonValue> doc = ParseJson(text.str(), path.string());
  if (!doc.ok()) return absl::DataLossError(doc.status().message());
  if (!doc->is_object()) return absl::DataLossError(absl::StrCat(path.string(), ": not a JSON object"));
  auto num = [&](const char* key) {
    const JsonValue* v = doc->Find(key);
    return v != nullptr && v->is_number() ? v->number_value() : std::nan("");
  };
  CellRow row;
  row.mean_dice = num("test_mean_dice");
  row.mean_hd95 = num("test_mean_hd95");
  row.best_val_dice = num("best_val_dice");
  row.best_step = static_cast<int64_t>(num("best_step"));
  row.accumulated_dice = num("test_accumulated_dice");
  row.seconds = std::nan("");
  if (const JsonValue* v = doc->Find("hd95_unit")) row.hd95_unit = v->string_value();
  if (const JsonValue* v = doc->Find("labeled_ids")) {
    std::vector<std::string> ids;
    for (const JsonValue& id : v->items()) ids.push_back(id.string_value());
    row.labeled_ids = absl::StrJoin(ids, " ");
  }
  if (const JsonValue* v = doc->Find("per_class_dice")) {
    for (const JsonValue& d : v->items()) {
      row.per_class_dice.push_back(d.is_number() ? d.number_value() : std::nan(""));
    }
  }
  if (std::isnan(row.mean_dice)) return absl::DataLossError(path.string() + ": no test_mean_dice");
  return row;
}

}  // namespace

absl::Status RunExperimentCommand(const RunFlags& flags) {
  if (flags.spec_path.empty()) return absl::InvalidArgumentError("--spec FILE is required");
  GCL_ASSIGN_OR_RETURN(JobSpec spec, gcl::spec::ReadJobSpecFile(flags.spec_path));
  if (spec.kind() != gcl::v1::KIND_EXPERIMENT) {
    return absl::InvalidArgumentError(
        absl::StrCat(flags.spec_path, ": kind: 'experiment' expected for gcl-train experiment"));
  }
  if (flags.threads >= 0) {
    spec.mutable_experiment()->mutable_pretrain()->set_threads(flags.threads);
    spec.mutable_experiment()->mutable_finetune()->set_threads(flags.threads);
  }
  const std::string spec_dir = fs::absolute(flags.spec_path).parent_path().string();
  std::string out = flags.output_dir;
  if (out.empty() && !spec.output().dir().empty()) out = ResolvePath(spec.output().dir(), spec_dir);
  if (out.empty()) out = (fs::path("runs") / (spec.name().empty() ? "experiment" : spec.name())).string();
  const fs::path dir(out);

  // Check every child job before any training (a bad spec fails in seconds).
  const auto& variants = spec.experiment().variants();
  for (int v : variants) {
    const auto variant = static_cast<Variant>(v);
    if (variant != gcl::v1::VARIANT_RANDOM_INIT) {
      GCL_RETURN_IF_ERROR(gcl::spec::PretrainChildSpec(spec, variant).status());
    }
    gcl::v1::Init placeholder;
    placeholder.set_checkpoint("/placeholder.ckpt");
    GCL_RETURN_IF_ERROR(gcl::spec::FinetuneChildSpec(spec, variant, placeholder).status());
  }

  GCL_ASSIGN_OR_RETURN(core::Dataset data, LoadSpecDataset(spec, spec_dir));
  if (data.val.empty() || data.test.empty()) {
    return absl::InvalidArgumentError("dataset: the experiment needs val and test volumes");
  }
  ExperimentPlan plan;
  plan.name = spec.name();
  for (int v : variants) plan.variants.push_back(gcl::spec::VariantName(static_cast<Variant>(v)));
  plan.labeled_volumes.assign(spec.labeled_volumes().begin(), spec.labeled_volumes().end());
  plan.repeats = spec.repeats();
  for (size_t c = 1; c < data.class_names.size(); ++c) plan.classes.push_back(data.class_names[c]);
  {
    // Fail on an M_lab the data cannot satisfy now, not hours in.
    core::FinetuneOptions probe;
    probe.seed = spec.experiment().finetune().seed();
    for (int64_t m : plan.labeled_volumes) {
      probe.labeled_volumes = m;
      auto selected = core::SelectLabeledVolumes(data, probe);
      if (!selected.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("labeled_volumes: ", m, ": ", selected.status().message()));
      }
    }
  }
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::PermissionDeniedError(absl::StrCat(out, ": ", ec.message()));
  {
    std::ofstream f(dir / "experiment.json");
    f << ExperimentPlanJson(plan);
    if (!f) return absl::InternalError(absl::StrCat(out, "/experiment.json: write failed"));
  }

  const std::string cells_path = (dir / "cells.csv").string();
  std::set<std::tuple<std::string, int64_t, int64_t>> done;
  {
    std::vector<std::string> classes;
    auto rows = ReadCellsCsv(cells_path, &classes);
    if (rows.ok()) {
      if (classes != plan.classes) {
        return absl::FailedPreconditionError(absl::StrCat(
            cells_path, ": its classes [", absl::StrJoin(classes, ", "),
            "] differ from the dataset's; use another --output"));
      }
      for (const CellRow& r : *rows) done.insert({r.variant, r.m_lab, r.repeat});
    } else if (!absl::IsNotFound(rows.status())) {
      return rows.status();
    }
  }

  std::printf("experiment %s: %d variants x M_lab [%s] x %lld repeats -> %s\n", plan.name.c_str(),
              variants.size(), absl::StrJoin(plan.labeled_volumes, ", ").c_str(),
              static_cast<long long>(plan.repeats), out.c_str());
  int64_t ran = 0, skipped = 0;
  for (int v : variants) {
    const auto variant = static_cast<Variant>(v);
    const std::string name = gcl::spec::VariantName(variant);
    std::vector<std::pair<int64_t, int64_t>> pending;
    for (int64_t m : plan.labeled_volumes) {
      for (int64_t r = 0; r < plan.repeats; ++r) {
        if (done.count({name, m, r})) {
          std::printf("  %s M_lab=%lld repeat %lld: skipped (done)\n", name.c_str(),
                      static_cast<long long>(m), static_cast<long long>(r));
          ++skipped;
          continue;
        }
        const fs::path cell_dir = dir / name / "finetune" / absl::StrFormat("m%d-r%d", m, r);
        if (fs::exists(cell_dir / "finetune.json", ec)) {
          auto row = RowFromFinetuneJson(cell_dir / "finetune.json");
          if (row.ok()) {
            row->variant = name;
            row->m_lab = m;
            row->repeat = r;
            GCL_RETURN_IF_ERROR(AppendCellRow(cells_path, plan.classes, *row));
            done.insert({name, m, r});
            std::printf("  %s M_lab=%lld repeat %lld: skipped (row recovered from finetune.json)\n",
                        name.c_str(), static_cast<long long>(m), static_cast<long long>(r));
            ++skipped;
            continue;
          }
        }
        pending.push_back({m, r});
      }
    }
    if (pending.empty()) continue;

    gcl::v1::Init init;
    if (variant != gcl::v1::VARIANT_RANDOM_INIT) {
      GCL_ASSIGN_OR_RETURN(JobSpec pre, gcl::spec::PretrainChildSpec(spec, variant));
      const fs::path pre_dir = dir / PretrainFolderOf(name);
      const bool finished = fs::exists(pre_dir / kDoneMarker, ec);
      if (finished) {
        std::printf("  %s: pre-training skipped (done: %s)\n", name.c_str(), pre_dir.c_str());
      } else {
        const auto t0 = std::chrono::steady_clock::now();
        GCL_ASSIGN_OR_RETURN(core::PretrainResult res,
                             RunPretrainJob(pre, data, pre_dir.string(), "", flags.quiet));
        if (res.final_checkpoint.empty()) {
          return absl::InternalError(absl::StrCat(name, ": pre-training ended without a final checkpoint"));
        }
        const double secs =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::ofstream(pre_dir / kDoneMarker) << res.final_checkpoint << "\n";
        std::printf("  %s: pre-trained %lld steps%s in %.1f s, loss %.4f -> %.4f\n", name.c_str(),
                    static_cast<long long>(res.steps_done),
                    res.resumed_from > 0 ? absl::StrCat(" (resumed at ", res.resumed_from, ")").c_str()
                                         : "",
                    secs, res.first_loss, res.last_loss);
      }
      GCL_ASSIGN_OR_RETURN(std::string checkpoint, ResolveCheckpoint(pre_dir.string()));
      init.set_checkpoint(fs::absolute(checkpoint).string());
    }
    GCL_ASSIGN_OR_RETURN(JobSpec ft, gcl::spec::FinetuneChildSpec(spec, variant, init));
    GCL_ASSIGN_OR_RETURN(core::FinetuneOptions base, FinetuneOptionsFromSpec(ft, spec_dir));
    base.model.num_classes = data.num_classes();
    for (const auto& [m, r] : pending) {
      core::FinetuneOptions o = base;
      o.labeled_volumes = m;
      o.repeat = r;
      o.output_dir = (dir / name / "finetune" / absl::StrFormat("m%d-r%d", m, r)).string();
      const auto t0 = std::chrono::steady_clock::now();
      GCL_ASSIGN_OR_RETURN(core::FinetuneResult res, RunFinetuneJob(data, o, nullptr, flags.quiet));
      CellRow row;
      row.variant = name;
      row.m_lab = m;
      row.repeat = r;
      row.mean_dice = res.mean_dice;
      row.mean_hd95 = res.mean_hd95;
      row.hd95_unit = res.hd95_unit;
      row.best_val_dice = res.best_val_dice;
      row.best_step = res.best_step;
      row.accumulated_dice = res.accumulated_dice;
      row.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      row.labeled_ids = absl::StrJoin(res.labeled_ids, " ");
      row.per_class_dice = res.per_class_dice;
      GCL_RETURN_IF_ERROR(AppendCellRow(cells_path, plan.classes, row));
      ++ran;
      std::printf("  %s M_lab=%lld repeat %lld: ran, test Dice %.4f (val %.4f, %.1f s; labelled %s)\n",
                  name.c_str(), static_cast<long long>(m), static_cast<long long>(r), res.mean_dice,
                  res.best_val_dice, row.seconds, row.labeled_ids.c_str());
      std::fflush(stdout);
    }
  }
  std::printf("experiment: %lld cells ran, %lld skipped; cells: %s\n\n", static_cast<long long>(ran),
              static_cast<long long>(skipped), cells_path.c_str());
  std::fflush(stdout);
  ResultsFlags rf;
  rf.dir = out;
  rf.plots_dir = "-";  // the table only; `gcl-train results` renders the plots
  return RunResultsCommand(rf);
}

}  // namespace gcl::trainer
