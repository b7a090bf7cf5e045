// The test-set scores a finished fine-tuning attempt left in its output
// folder, as the rows the coordinator's results table is built from.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gcl/v1/job.pb.h"

namespace gcl::agent {

// Reads every run folder out_dir/m<M>-r<R>/ that gcl-train finetune wrote
// (finetune.json: labeled_volumes, repeat, class_names; summary.json:
// per-case scores) into one CaseResult per case and foreground class (name
// from class_names; a class with no valid Dice on a case is skipped) plus a
// "mean" row per case. `variant` labels every row. No run folder: an empty
// list. kDataLoss naming the file when one is malformed.
absl::StatusOr<std::vector<gcl::v1::CaseResult>> ReadCaseResults(const std::string& out_dir,
                                                                const std::string& variant);

}  // namespace gcl::agent
