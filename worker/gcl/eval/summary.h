// nnU-Net-compatible summary.json for per-volume scores, so users' nnU-Net
// scripts keep working. Shape (keys in this order; invalid/NaN -> null):
//
// {
//   "metric_per_case": [
//     {"case": "patient001_frame01", "reference_file": "patient001_frame01",
//      "metrics": {"1": {"Dice": 0.91, "HD95": 2.5, "n_ref": 1200, "n_pred": 1187,
//                        "TP": 1100, "FP": 87, "FN": 100}, ...},
//      "mean_dice": 0.88, "mean_hd95": 3.1}, ...],
//   "mean": {"1": {"Dice": .., "HD95": .., "n_cases_dice": .., "n_cases_hd95": ..}, ...},
//   "foreground_mean": {"Dice": .., "HD95": ..},     // nnU-Net: mean of the class means
//   "volume_mean": {"Dice": .., "HD95": ..},         // spec 8.1: mean over volumes of the
//                                                   //   per-volume class means
//   "class_names": ["background", "RV", ...],
//   "hd95_unit": "mm",
//   "num_cases": 20,
//   "empty_mask_rule": "..."
// }
//
// Class keys are the label values as strings ("1", "2", ...), as in nnU-Net.
// Per-class means skip invalid (empty) entries, like nnU-Net's nanmean.
#pragma once

#include <string>
#include <vector>

#include "worker/gcl/eval/dice.h"

namespace gcl::core {

// class_names: index = label value, [0] = background (may be shorter than the
// number of classes; missing names are written as "class<c>").
std::string SummaryJson(const std::vector<VolumeScore>& cases,
                        const std::vector<std::string>& class_names, const std::string& hd95_unit);

}  // namespace gcl::core
