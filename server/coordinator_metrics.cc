#include "server/coordinator_metrics.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"
#include "gcl/base/write_file.h"
#include "prometheus/collectable.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "gcl/base/status_macros.h"
#include "metrics/metrics_endpoint.h"

namespace gcl::server {
namespace {

// A worker's /metrics address as the agent registered it; "" when none.
std::string MetricsAddressOf(const storage::WorkerRecord& w) {
  absl::StatusOr<JsonValue> labels = ParseJson(w.labels_json, "workers.labels_json");
  if (!labels.ok()) return "";
  const JsonValue* a = labels->Find("metrics_address");
  return a != nullptr ? a->string_value() : "";
}

prometheus::MetricFamily GaugeFamily(std::string name, std::string help, std::string label,
                                     const std::vector<std::pair<std::string, double>>& values) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = prometheus::MetricType::Gauge;
  for (const auto& [v, n] : values) {
    prometheus::ClientMetric m;
    m.label.push_back({label, v});
    m.gauge.value = n;
    f.metric.push_back(std::move(m));
  }
  return f;
}

}  // namespace

std::string PrometheusSdJson(const std::vector<storage::WorkerRecord>& workers) {
  std::vector<std::pair<std::string, std::string>> targets;  // worker id, address
  for (const storage::WorkerRecord& w : workers) {
    if (w.state != storage::WorkerState::kAlive) continue;
    std::string addr = MetricsAddressOf(w);
    if (!addr.empty()) targets.emplace_back(w.id, std::move(addr));
  }
  std::sort(targets.begin(), targets.end());
  std::string out = "[";
  for (size_t i = 0; i < targets.size(); ++i) {
    absl::StrAppend(&out, i ? ",\n " : "", "{\"targets\": [", JsonQuote(targets[i].second),
                    "], \"labels\": {\"worker\": ", JsonQuote(targets[i].first), "}}");
  }
  return out + "]\n";
}

class CoordinatorMetrics::Impl : public prometheus::Collectable {
 public:
  Impl(CoordinatorMetricsOptions options, storage::Registry* registry)
      : options_(std::move(options)), registry_(registry) {
    rpc_ = &prometheus::BuildHistogram()
                .Name("gcl_rpc_duration_seconds")
                .Help("Duration of gRPC calls served by the coordinator (streams: their lifetime).")
                .Register(*metrics_);
    queue_wait_ = &prometheus::BuildHistogram()
                       .Name("gcl_job_queue_wait_seconds")
                       .Help("Time a job waited in QUEUED before an attempt started.")
                       .Register(*metrics_)
                       .Add({}, prometheus::Histogram::BucketBoundaries{0.1, 0.5, 1, 2, 5, 10, 30,
                                                                        60, 120, 300, 600, 1800,
                                                                        3600, 7200, 21600, 86400});
    attempts_ = &prometheus::BuildCounter()
                     .Name("gcl_job_attempts_total")
                     .Help("Attempts started (placements of jobs on workers).")
                     .Register(*metrics_)
                     .Add({});
    lost_ = &prometheus::BuildCounter()
                 .Name("gcl_worker_lost_total")
                 .Help("Workers declared LOST because their lease expired.")
                 .Register(*metrics_)
                 .Add({});
  }

  void ObserveRpc(std::string_view method, int code, double seconds) {
    const std::string code_name = absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
    std::lock_guard<std::mutex> lock(mu_);
    auto key = std::make_pair(std::string(method), code_name);
    auto it = rpc_series_.find(key);
    if (it == rpc_series_.end()) {
      static const prometheus::Histogram::BucketBoundaries kBuckets = {
          0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
          0.5,    1,     2.5,    5,     10,   30,    60,   300};
      it = rpc_series_
               .emplace(key, &rpc_->Add({{"method", key.first}, {"code", code_name}}, kBuckets))
               .first;
    }
    it->second->Observe(seconds);
  }

  void AttemptStarted(const storage::JobRecord& job, int64_t now_ms) {
    attempts_->Increment();
    if (job.queued_ms > 0 && now_ms >= job.queued_ms) {
      queue_wait_->Observe(static_cast<double>(now_ms - job.queued_ms) / 1000.0);
    }
  }

  void WorkersLost(int64_t n) {
    if (n > 0) lost_->Increment(static_cast<double>(n));
  }

  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out = metrics_->Collect();
    // Job and worker counts come from the registry, so they are right after a
    // restart and never drift from what gclctl shows.
    absl::StatusOr<std::vector<std::pair<storage::JobState, int64_t>>> jobs =
        registry_->CountJobsByState();
    if (jobs.ok()) {
      std::vector<std::pair<std::string, double>> v;
      for (const auto& [state, n] : *jobs) {
        v.emplace_back(absl::AsciiStrToLower(std::string(storage::ToString(state))),
                       static_cast<double>(n));
      }
      out.push_back(GaugeFamily("gcl_jobs", "Jobs per state.", "state", v));
    }
    absl::StatusOr<std::vector<storage::WorkerRecord>> workers = registry_->ListWorkers();
    if (workers.ok()) {
      double alive = 0, lost = 0;
      for (const storage::WorkerRecord& w : *workers) {
        (w.state == storage::WorkerState::kAlive ? alive : lost) += 1;
      }
      out.push_back(GaugeFamily("gcl_workers", "Registered workers per state.", "state",
                                {{"alive", alive}, {"lost", lost}}));
    }
    return out;
  }

  absl::Status RefreshSdFile() {
    if (options_.sd_file.empty()) return absl::OkStatus();
    absl::StatusOr<std::vector<storage::WorkerRecord>> workers = registry_->ListWorkers();
    if (!workers.ok()) return workers.status();
    const std::string doc = PrometheusSdJson(*workers);
    std::lock_guard<std::mutex> lock(sd_mu_);
    if (doc == sd_written_) return absl::OkStatus();
    // Prometheus may read at any time: it must only ever see a whole file.
    if (absl::Status s = WriteFileReplacing(options_.sd_file, doc); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("--prometheus-sd-file: ", s.message()));
    }
    sd_written_ = doc;
    return absl::OkStatus();
  }

  const CoordinatorMetricsOptions& options() const { return options_; }

 private:
  CoordinatorMetricsOptions options_;
  storage::Registry* registry_;
  std::shared_ptr<prometheus::Registry> metrics_ = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Histogram>* rpc_ = nullptr;
  prometheus::Histogram* queue_wait_ = nullptr;
  prometheus::Counter* attempts_ = nullptr;
  prometheus::Counter* lost_ = nullptr;
  std::mutex mu_;  // rpc_series_
  std::map<std::pair<std::string, std::string>, prometheus::Histogram*> rpc_series_;
  std::mutex sd_mu_;
  std::string sd_written_;  // guarded by sd_mu_: the document last written

 public:
  std::unique_ptr<prometheus::Exposer> exposer;  // declared last: stopped first
};

namespace {

// Times one call; reports at the status it sends.
class RpcTimer : public grpc::experimental::Interceptor {
 public:
  RpcTimer(std::weak_ptr<CoordinatorMetrics::Impl> metrics, std::string method)
      : metrics_(std::move(metrics)),
        method_(std::move(method)),
        start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      const grpc::Status status = methods->GetSendStatus();
      const double secs =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
      if (auto m = metrics_.lock()) m->ObserveRpc(method_, status.error_code(), secs);
    }
    methods->Proceed();
  }

 private:
  std::weak_ptr<CoordinatorMetrics::Impl> metrics_;
  std::string method_;
  std::chrono::steady_clock::time_point start_;
};

class RpcTimerFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcTimerFactory(std::weak_ptr<CoordinatorMetrics::Impl> metrics)
      : metrics_(std::move(metrics)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcTimer(metrics_, info->method() != nullptr ? info->method() : "unknown");
  }

 private:
  std::weak_ptr<CoordinatorMetrics::Impl> metrics_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CoordinatorMetrics>> CoordinatorMetrics::Create(
    CoordinatorMetricsOptions options, storage::Registry* registry) {
  if (options.sd_refresh <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("metrics: sd_refresh must be > 0");
  }
  auto impl = std::make_shared<Impl>(std::move(options), registry);
  std::string address;
  const std::string listen = impl->options().listen;
  if (!listen.empty()) {
    GCL_ASSIGN_OR_RETURN(metrics::MetricsEndpoint endpoint, metrics::StartMetricsEndpoint(listen));
    impl->exposer = std::move(endpoint.exposer);
    address = std::move(endpoint.address);
    impl->exposer->RegisterCollectable(std::weak_ptr<prometheus::Collectable>(impl));
  }
  return std::unique_ptr<CoordinatorMetrics>(
      new CoordinatorMetrics(std::move(impl), std::move(address)));
}

CoordinatorMetrics::CoordinatorMetrics(std::shared_ptr<Impl> impl, std::string address)
    : impl_(std::move(impl)), address_(std::move(address)) {}

CoordinatorMetrics::~CoordinatorMetrics() {
  Shutdown();
  impl_->exposer.reset();
}

absl::Status CoordinatorMetrics::Start() {
  if (started_) return absl::FailedPreconditionError("coordinator metrics already started");
  started_ = true;
  absl::Status first = impl_->RefreshSdFile();
  if (!impl_->options().sd_file.empty()) refresher_ = std::thread([this] { RefreshLoop(); });
  return first;
}

void CoordinatorMetrics::RefreshLoop() {
  while (!stop_.WaitForNotificationWithTimeout(impl_->options().sd_refresh)) {
    absl::Status s = impl_->RefreshSdFile();
    if (!s.ok()) std::fprintf(stderr, "gcl-coordinator: %s\n", std::string(s.message()).c_str());
  }
}

void CoordinatorMetrics::Shutdown() {
  if (!stop_.HasBeenNotified()) stop_.Notify();
  if (refresher_.joinable()) refresher_.join();
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
CoordinatorMetrics::NewInterceptorFactory() {
  return std::make_unique<RpcTimerFactory>(impl_);
}

void CoordinatorMetrics::ObserveRpc(std::string_view method, int code, double seconds) {
  impl_->ObserveRpc(method, code, seconds);
}

void CoordinatorMetrics::AttemptStarted(const storage::JobRecord& job, int64_t now_ms) {
  impl_->AttemptStarted(job, now_ms);
}

void CoordinatorMetrics::WorkersLost(int64_t n) { impl_->WorkersLost(n); }

absl::Status CoordinatorMetrics::RefreshSdFile() { return impl_->RefreshSdFile(); }

std::string CoordinatorMetrics::Scrape() {
  return prometheus::TextSerializer().Serialize(impl_->Collect());
}

}  // namespace gcl::server
