// The agent's Prometheus endpoint (architecture.md section 5): turns the
// MetricsPoints its trainers write (metrics_tail.h) into prometheus-cpp
// series with a `job` label (the GCL job id) plus the sample's own labels,
// and serves them on /metrics. gcl-train cannot serve /metrics itself
// (architecture.md "Measured pitfalls"), so the agent does it for them.
//
// Sample -> series type, by name:
//   *_total                                   counter (the trainer writes running
//                                             totals; the counter advances by the
//                                             increase, never goes back)
//   gcl_train_step_seconds, gcl_finetune_step_seconds
//                                             histogram (one observation per point)
//   gcl_grad_cosine                           gauge, and also a histogram
//                                             gcl_grad_cosine_distribution{pair,stage}
//                                             with 0.1-wide buckets over [-1, 1]
//   anything else                             gauge (last value)
// EndAttempt() adds gcl_dice{job,class} (test Dice, mean over cases) from a
// fine-tuning attempt's case results and starts the job's grace period:
// after `grace` every series of the job is removed (bounded cardinality).
// A new point of the job before that cancels the removal.
//
// Names and label names that are not valid Prometheus identifiers are
// skipped (counted in gcl_agent_metrics_dropped_total); a sample label
// called "job" is dropped (the job id owns it).
//
// Thread-safe: every method and each scrape run under one mutex.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gcl/v1/job.pb.h"
#include "google/protobuf/repeated_field.h"

namespace gcl::agent {

struct MetricsExporterOptions {
  // host:port to serve /metrics on ("127.0.0.1:0" picks a free port);
  // empty: no endpoint (Scrape() still works).
  std::string listen;
  absl::Duration grace = absl::Minutes(5);  // series kept after an attempt ended
  std::function<absl::Time()> now;          // clock; default absl::Now
};

class MetricsExporter {
 public:
  // kUnavailable naming the address when the endpoint cannot be started.
  static absl::StatusOr<std::unique_ptr<MetricsExporter>> Create(MetricsExporterOptions options);
  ~MetricsExporter();
  MetricsExporter(const MetricsExporter&) = delete;
  MetricsExporter& operator=(const MetricsExporter&) = delete;

  // host:port Prometheus can scrape (a wildcard host is replaced by this
  // host's name); "" without an endpoint.
  const std::string& address() const { return address_; }

  void Observe(const std::string& job_id, const gcl::v1::MetricsPoint& point);
  // The attempt of job_id ended; `cases` are its per-case test scores (may be empty).
  void EndAttempt(const std::string& job_id,
                  const google::protobuf::RepeatedPtrField<gcl::v1::CaseResult>& cases);

  // The text exposition format, as /metrics serves it (drops expired jobs first).
  std::string Scrape();
  // Jobs that currently have series.
  std::vector<std::string> Jobs();

 private:
  class Impl;
  MetricsExporter(std::shared_ptr<Impl> impl, std::string address);
  // Shared with the Exposer's weak reference (a scrape in flight keeps it alive).
  std::shared_ptr<Impl> impl_;
  std::string address_;
};

}  // namespace gcl::agent
