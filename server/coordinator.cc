#include "server/coordinator.h"

#include <chrono>
#include <utility>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gcl/base/status_macros.h"

namespace gcl::server {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(Options options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("--db: required (the SQLite registry file)");
  if (options.lease_ms <= 0) return absl::InvalidArgumentError("--lease-seconds: must be > 0");
  if (options.artifacts_dir.empty()) options.artifacts_dir = options.db_path + ".artifacts";
  GCL_ASSIGN_OR_RETURN(auto registry, storage::Registry::Open(options.db_path, options.registry));
  GCL_ASSIGN_OR_RETURN(auto artifacts, storage::ArtifactStore::Open(options.artifacts_dir));
  return std::unique_ptr<Coordinator>(
      new Coordinator(std::move(options), std::move(registry), std::move(artifacts)));
}

Coordinator::Coordinator(Options options, std::unique_ptr<storage::Registry> registry,
                         std::unique_ptr<storage::ArtifactStore> artifacts)
    : options_(std::move(options)), registry_(std::move(registry)), artifacts_(std::move(artifacts)) {
  plane_ = std::make_unique<ControlPlane>(registry_.get(), artifacts_.get(), options_.lease_ms);
  job_service_ = std::make_unique<JobServiceImpl>(plane_.get(), &stopping_, options_.watch_poll_ms);
  worker_service_ = std::make_unique<WorkerServiceImpl>(plane_.get());
}

Coordinator::~Coordinator() { Shutdown(); }

absl::Status Coordinator::Start() {
  if (started_.exchange(true)) return absl::FailedPreconditionError("coordinator already started");
  // Recovery: every job is in SQLite. Workers could not renew their leases
  // while the coordinator was down, so each ALIVE one gets a fresh lease
  // rather than being declared LOST for our outage.
  GCL_ASSIGN_OR_RETURN(auto workers, registry_->ListWorkers());
  for (const storage::WorkerRecord& w : workers) {
    if (w.state != storage::WorkerState::kAlive) continue;
    GCL_RETURN_IF_ERROR(registry_->TouchWorker(
        w.id, registry_->NowMs() + options_.lease_ms + options_.restart_grace_ms));
  }
  // Reasons may quote workers that are gone.
  GCL_RETURN_IF_ERROR(plane_->RefreshQueue().status());
  if (!options_.metrics_listen.empty() || !options_.prometheus_sd_file.empty()) {
    GCL_ASSIGN_OR_RETURN(metrics_, CoordinatorMetrics::Create(
                                       {options_.metrics_listen, options_.prometheus_sd_file},
                                       registry_.get()));
    CoordinatorMetrics* m = metrics_.get();
    plane_->set_attempt_started_hook(
        [m](const storage::JobRecord& job, int64_t now_ms) { m->AttemptStarted(job, now_ms); });
    GCL_RETURN_IF_ERROR(metrics_->Start());
  }
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options_.listen, grpc::InsecureServerCredentials(), &port_);
  // Long watch streams from workstations: accept client pings every 30 s.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  if (metrics_) interceptors.push_back(metrics_->NewInterceptorFactory());
  if (!interceptors.empty()) builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.RegisterService(job_service_.get());
  builder.RegisterService(worker_service_.get());
  server_ = builder.BuildAndStart();
  if (server_ == nullptr || port_ == 0) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options_.listen,
                                               " (address in use or not local?)"));
  }
  server_->GetHealthCheckService()->SetServingStatus(true);
  sweeper_ = std::thread([this] { SweepLoop(); });
  return absl::OkStatus();
}

std::string Coordinator::address() const {
  const std::string& l = options_.listen;
  const size_t colon = l.rfind(':');
  return absl::StrCat(colon == std::string::npos ? l : l.substr(0, colon), ":", port_);
}

void Coordinator::SweepLoop() {
  while (!stop_sweeper_.WaitForNotificationWithTimeout(absl::Milliseconds(options_.sweep_interval_ms))) {
    // A failed sweep (busy database) is retried at the next tick.
    absl::StatusOr<std::vector<std::string>> lost = plane_->SweepLeases();
    if (metrics_ && lost.ok()) metrics_->WorkersLost(static_cast<int64_t>(lost->size()));
  }
}

void Coordinator::Shutdown() {
  if (stopping_.exchange(true)) {
    if (started_.load()) shut_down_.WaitForNotification();
    return;
  }
  if (server_ != nullptr) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->Shutdown(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(options_.shutdown_grace_ms));
  }
  if (sweeper_.joinable()) {
    stop_sweeper_.Notify();
    sweeper_.join();
  }
  if (metrics_) metrics_->Shutdown();
  if (!shut_down_.HasBeenNotified()) shut_down_.Notify();
}

void Coordinator::Wait() { shut_down_.WaitForNotification(); }

}  // namespace gcl::server
