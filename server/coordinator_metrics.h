// The coordinator's Prometheus metrics (architecture.md section 5) and the
// Prometheus file-SD file listing the workers' /metrics endpoints.
//
//   gcl_jobs{state}                      gauge, jobs per state (read from the registry at scrape)
//   gcl_workers{state}                   gauge, workers per state (alive | lost), same
//   gcl_job_queue_wait_seconds           histogram, last entry into QUEUED -> attempt start
//   gcl_rpc_duration_seconds{method,code} histogram, every gRPC call (server interceptor)
//   gcl_job_attempts_total               counter, attempts started
//   gcl_worker_lost_total                counter, workers whose lease expired
//
// File SD (`sd_file`): a JSON list of target groups, one per ALIVE worker
// that registered a metrics address (Registry labels_json key
// "metrics_address"), with a `worker` label:
//   [{"targets": ["host:port"], "labels": {"worker": "w1"}}]
// rewritten atomically (tmp + rename) by a background thread whenever it
// changes, so Prometheus (file_sd_configs) follows workers joining and
// being lost.
//
// Thread-safe. Shutdown() joins the refresh thread and stops the endpoint.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "storage/registry.h"

namespace gcl::server {

struct CoordinatorMetricsOptions {
  std::string listen;   // host:port for /metrics ("127.0.0.1:0": a free port); "" = none
  std::string sd_file;  // Prometheus file-SD JSON to keep up to date; "" = none
  absl::Duration sd_refresh = absl::Seconds(1);
};

// The file-SD document for `workers` (ALIVE ones with a metrics_address), sorted by worker id.
std::string PrometheusSdJson(const std::vector<storage::WorkerRecord>& workers);

class CoordinatorMetrics {
 public:
  // REQUIRES: registry outlives this. kUnavailable naming the address when
  // the endpoint cannot start; kInvalidArgument for sd_refresh <= 0.
  static absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> Create(
      CoordinatorMetricsOptions options, storage::Registry* registry);
  ~CoordinatorMetrics();  // Shutdown()
  CoordinatorMetrics(const CoordinatorMetrics&) = delete;
  CoordinatorMetrics& operator=(const CoordinatorMetrics&) = delete;

  // Starts the SD refresh thread (writes the file once first; its error is returned).
  absl::Status Start();
  void Shutdown();

  // host:port bound for /metrics; "" without an endpoint.
  const std::string& address() const { return address_; }

  // For ServerBuilder::experimental().SetInterceptorCreators: times every
  // call into gcl_rpc_duration_seconds{method,code}.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> NewInterceptorFactory();

  // method: "/gcl.v1.JobService/SubmitJob"; code: grpc::StatusCode.
  void ObserveRpc(std::string_view method, int code, double seconds);
  // `job` as it was before the attempt started (its queued_ms); now_ms: start time.
  void AttemptStarted(const storage::JobRecord& job, int64_t now_ms);
  void WorkersLost(int64_t n);
  // Rewrites the SD file if its content changed (no-op without sd_file).
  absl::Status RefreshSdFile();

  // The text exposition format, as /metrics serves it.
  std::string Scrape();

  class Impl;  // implementation detail (shared with the interceptors)

 private:
  CoordinatorMetrics(std::shared_ptr<Impl> impl, std::string address);
  void RefreshLoop();

  std::shared_ptr<Impl> impl_;  // also held weakly by the Exposer
  std::string address_;
  std::thread refresher_;
  absl::Notification stop_;
  bool started_ = false;
};

}  // namespace gcl::server
