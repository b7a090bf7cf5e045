#include "server/metric_summaries.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"
#include "google/protobuf/util/json_util.h"
#include "server/job_convert.h"

namespace gcl::server {

const std::vector<std::string>& SummarizedMetricNames() {
  static const std::vector<std::string> kNames = {
      "gcl_train_steps_total", "gcl_grad_conflicts_total", "gcl_grad_modified_total",
      "gcl_grad_cosine",       "gcl_grad_target_cosine",   "gcl_grad_injection_weight",
      "gcl_grad_norm",         "gcl_update_cosine",        "gcl_gradfilter_selected"};
  return kNames;
}

std::vector<storage::MetricSummary> SummariesOf(const gcl::v1::MetricsPoint& point) {
  const auto& names = SummarizedMetricNames();
  std::vector<storage::MetricSummary> out;
  for (const gcl::v1::MetricSample& s : point.samples()) {
    if (std::find(names.begin(), names.end(), s.name()) == names.end()) continue;
    if (!std::isfinite(s.value())) continue;
    // A std::map gives one spelling per label set (the summaries' primary key).
    const std::map<std::string, std::string> sorted(s.labels().begin(), s.labels().end());
    std::string labels = "{";
    for (const auto& [k, v] : sorted) {
      absl::StrAppend(&labels, labels.size() > 1 ? "," : "", JsonQuote(k), ":", JsonQuote(v));
    }
    labels += "}";
    storage::MetricSummary m;
    m.name = s.name();
    m.labels_json = std::move(labels);
    m.value = s.value();
    out.push_back(std::move(m));
  }
  return out;
}

absl::Status StoreFinalMetricSummaries(storage::Registry& registry, const std::string& job_id) {
  absl::StatusOr<std::optional<storage::JobEvent>> last = registry.LastEvent(job_id, kMetricsEvent);
  if (!last.ok()) return last.status();
  if (!last->has_value()) return absl::OkStatus();
  gcl::v1::MetricsPoint point;
  if (!google::protobuf::util::JsonStringToMessage((*last)->payload_json, &point).ok()) {
    return absl::DataLossError(
        absl::StrCat("job ", job_id, ": metrics event ", (*last)->seq, " is not a MetricsPoint"));
  }
  const std::vector<storage::MetricSummary> rows = SummariesOf(point);
  if (rows.empty()) return absl::OkStatus();
  return registry.PutMetricSummaries(job_id, rows);
}

gcl::v1::MetricSummary ToProtoMetricSummary(const storage::MetricSummary& m) {
  gcl::v1::MetricSummary out;
  // labels_json is a flat object of strings: parse it as the map field.
  if (!google::protobuf::util::JsonStringToMessage("{\"labels\":" + m.labels_json + "}", &out)
           .ok()) {
    out.clear_labels();
  }
  out.set_job_id(m.job_id);
  out.set_name(m.name);
  out.set_value(m.value);
  out.set_updated_ms(m.updated_ms);
  return out;
}

}  // namespace gcl::server
