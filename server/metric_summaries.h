// Per-job summaries of the training metrics kept in the registry
// (Registry::PutMetricSummaries) when an attempt ends, so `gclctl results`
// can show the gradient-conflict statistics at the end of pre-training
// beside the Dice tables after the metrics stream is long gone.
//
// Kept: the job's last metrics point's samples named in
// SummarizedMetricNames() (running totals such as gcl_grad_conflicts_total
// are the whole run's; cosines, norms and weights are the last logged step's).
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gcl/v1/job.pb.h"
#include "storage/registry.h"

namespace gcl::server {

// gcl_train_steps_total, gcl_grad_conflicts_total, gcl_grad_modified_total,
// gcl_grad_cosine, gcl_grad_target_cosine, gcl_grad_injection_weight,
// gcl_grad_norm, gcl_update_cosine, gcl_gradfilter_selected.
const std::vector<std::string>& SummarizedMetricNames();

// The summaries of one point: its samples with a summarized name and a
// finite value; labels as a JSON object with sorted keys.
std::vector<storage::MetricSummary> SummariesOf(const gcl::v1::MetricsPoint& point);

// Stores SummariesOf(the job's newest "metrics" event). OK and nothing
// written when the job has no metrics event; kDataLoss for an unreadable
// payload; registry errors as they come.
absl::Status StoreFinalMetricSummaries(storage::Registry& registry, const std::string& job_id);

// Wire form; labels parsed back from labels_json.
gcl::v1::MetricSummary ToProtoMetricSummary(const storage::MetricSummary& summary);

}  // namespace gcl::server
