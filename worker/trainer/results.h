// The experiment's result files and `gcl-train results`: the Dice table over
// variants x M_lab (mean ± std over repeats, n), paired differences against
// random_init, per-class tables, table.csv, and gnuplot PNGs (Dice with error
// bars; gradient-conflict curves over pre-training, algorithm spec section 11).
//
// Experiment folder layout (written by experiment.h):
//   DIR/experiment.json   {"name", "variants": [...], "labeled_volumes": [...],
//                          "repeats", "classes": [foreground class names]}
//   DIR/cells.csv         one row per finished fine-tuning run (CellRow)
//   DIR/<variant>/pretrain/metrics.jsonl   pre-training metrics (pretrain.h)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl::trainer {

// One finished fine-tuning run ("cell repeat"). Missing numbers are NaN.
struct CellRow {
  std::string variant;  // e.g. "multi_gm"
  int64_t m_lab = 0;
  int64_t repeat = 0;
  double mean_dice = 0;  // test, spec 8.1 (classes, then volumes)
  double mean_hd95 = 0;
  std::string hd95_unit;
  double best_val_dice = 0;
  int64_t best_step = 0;
  double accumulated_dice = 0;  // PCL's dataset-level Dice
  double seconds = 0;           // wall time of the run
  std::string labeled_ids;      // space-separated Volume ids
  std::vector<double> per_class_dice;  // foreground classes in `classes` order
};

// cells.csv columns: variant,m_lab,repeat,mean_dice,mean_hd95,hd95_unit,
// best_val_dice,best_step,accumulated_dice,seconds,labeled_ids,dice_<class>...
std::string CellsCsvHeader(const std::vector<std::string>& classes);
std::string CellsCsvLine(const CellRow& row);

// Reads cells.csv (kNotFound when missing; kInvalidArgument naming the line
// for malformed rows). `classes` receives the class names of the header.
absl::StatusOr<std::vector<CellRow>> ReadCellsCsv(const std::string& path,
                                                  std::vector<std::string>* classes);

// Appends `row`, writing the whole file to a temporary and renaming it over
// `path`, so a killed process leaves the old or the new file, never half a row.
absl::Status AppendCellRow(const std::string& path, const std::vector<std::string>& classes,
                           const CellRow& row);

// "experiment.json" contents.
struct ExperimentPlan {
  std::string name;
  std::vector<std::string> variants;
  std::vector<int64_t> labeled_volumes;
  int64_t repeats = 0;
  std::vector<std::string> classes;
};
std::string ExperimentPlanJson(const ExperimentPlan& plan);
absl::StatusOr<ExperimentPlan> ReadExperimentPlan(const std::string& path);

// The pre-training folder a variant's fine-tuning starts from, relative to the
// experiment folder: "<variant>/pretrain"; full_frozen shares "full/pretrain";
// "" for random_init.
std::string PretrainFolderOf(const std::string& variant);

struct ResultsFlags {
  std::string dir;        // experiment folder
  std::string csv_path;   // table.csv; "" = DIR/table.csv
  std::string plots_dir;  // PNGs; "" = DIR/plots; "-" = no plots
  bool per_class = false; // also one table per class
};

// Prints the table(s), writes table.csv (variant,m_lab,metric,mean,std,n with
// metric = dice, dice_<class>, diff_vs_random_init) and renders dice.png,
// conflicts.png, conflict_share.png, pace.png with gnuplot (the last three
// only when some pre-training logged those metrics). kFailedPrecondition
// when gnuplot is not installed.
absl::Status RunResultsCommand(const ResultsFlags& flags);

}  // namespace gcl::trainer
