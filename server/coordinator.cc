#include "server/coordinator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <utility>
#include <vector>

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gcl/base/status_macros.h"
#include "server/auth_interceptor.h"
#include "server/transport_security.h"

namespace gcl::server {

absl::StatusOr<std::unique_ptr<Coordinator>> Coordinator::Create(Options options) {
  if (options.db_path.empty()) return absl::InvalidArgumentError("--db: required (the SQLite registry file)");
  if (options.lease_ms <= 0) return absl::InvalidArgumentError("--lease-seconds: must be > 0");
  if (options.artifacts_dir.empty()) options.artifacts_dir = options.db_path + ".artifacts";
  // The ticker checkpoints the WAL, so no commit (no submit) pays for it.
  options.registry.wal_autocheckpoint = false;
  if (options.tls_cert.empty() != options.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together (the server certificate and its private key)");
  }
  if (options.tls_reload_seconds < 1) {
    return absl::InvalidArgumentError("tls_reload_seconds must be at least 1");
  }
  const bool tls = !options.tls_cert.empty();
  if (!options.tls_client_ca.empty() && !tls) {
    return absl::InvalidArgumentError(
        "--tls-client-ca needs --tls-cert and --tls-key (mTLS runs over TLS)");
  }
  const bool tokens = !options.tokens_file.empty();
  if (!(tls && tokens) && !options.allow_insecure_remote && !IsLoopbackListen(options.listen)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "--listen ", options.listen, " is reachable from other hosts but has no ",
        tls ? "tokens" : tokens ? "TLS" : "TLS and no tokens",
        ": anyone on the network could read, submit and cancel jobs. Add --tls-cert/--tls-key ",
        "(deploy/make-certs.sh makes them) and --tokens FILE, or listen on 127.0.0.1, or pass ",
        "--insecure-allow-remote on a network you trust"));
  }
  std::unique_ptr<TokenStore> token_store;
  if (tokens) {
    GCL_ASSIGN_OR_RETURN(token_store, TokenStore::Open(options.tokens_file));
  }
  std::unique_ptr<tls::TlsReloader> tls_reloader;
  if (tls) {
    GCL_ASSIGN_OR_RETURN(
        tls_reloader,
        tls::TlsReloader::Create(
            {options.tls_cert, options.tls_key, options.tls_client_ca, "--tls-client-ca"},
            options.db_path + ".tls", "gcl-coordinator"));
  }
  GCL_ASSIGN_OR_RETURN(auto registry, storage::Registry::Open(options.db_path, options.registry));
  GCL_ASSIGN_OR_RETURN(auto artifacts, storage::ArtifactStore::Open(options.artifacts_dir));
  auto coordinator = std::unique_ptr<Coordinator>(
      new Coordinator(std::move(options), std::move(registry), std::move(artifacts)));
  coordinator->tokens_ = std::move(token_store);
  coordinator->credentials_ =
      tls_reloader ? tls_reloader->ServerCredentials() : grpc::InsecureServerCredentials();
  coordinator->tls_ = std::move(tls_reloader);
  return coordinator;
}

Coordinator::Coordinator(Options options, std::unique_ptr<storage::Registry> registry,
                         std::unique_ptr<storage::ArtifactStore> artifacts)
    : options_(std::move(options)), registry_(std::move(registry)), artifacts_(std::move(artifacts)) {
  plane_ = std::make_unique<ControlPlane>(registry_.get(), artifacts_.get(), options_.lease_ms,
                                          options_.refresh_interval_ms);
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
  builder.AddListeningPort(options_.listen, credentials_, &port_);
  // One list (SetInterceptorCreators replaces it): RPC timing, then tokens and
  // roles, checked for every call whatever the transport.
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  if (metrics_) interceptors.push_back(metrics_->NewInterceptorFactory());
  interceptors.push_back(std::make_unique<AuthInterceptorFactory>(tokens_.get()));
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  // Long watch streams from workstations: accept client pings every 30 s.
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
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
  // One ticker: debounced scheduling passes (reasons of submitted jobs) and
  // WAL checkpoints every refresh interval, the lease sweep every sweep
  // interval.
  const int64_t tick = std::max<int64_t>(
      1, std::min(options_.sweep_interval_ms, std::max<int64_t>(options_.refresh_interval_ms, 10)));
  auto next_sweep = std::chrono::steady_clock::now();
  auto next_tls = next_sweep + std::chrono::seconds(options_.tls_reload_seconds);
  while (!stop_sweeper_.WaitForNotificationWithTimeout(absl::Milliseconds(tick))) {
    // Failures (a busy database) are retried at the next tick.
    (void)plane_->MaybeRefresh();
    (void)registry_->CheckpointWal();
    if (tls_ != nullptr && std::chrono::steady_clock::now() >= next_tls) {
      next_tls += std::chrono::seconds(options_.tls_reload_seconds);
      (void)ReloadTls();
    }
    if (std::chrono::steady_clock::now() < next_sweep) continue;
    next_sweep += std::chrono::milliseconds(options_.sweep_interval_ms);
    absl::StatusOr<std::vector<std::string>> lost = plane_->SweepLeases();
    if (metrics_ && lost.ok()) metrics_->WorkersLost(static_cast<int64_t>(lost->size()));
  }
}

absl::StatusOr<size_t> Coordinator::ReloadTokens() {
  if (tokens_ == nullptr) {
    return absl::FailedPreconditionError("no --tokens file: auth is off, there is nothing to reload");
  }
  return tokens_->Reload();
}

absl::StatusOr<bool> Coordinator::ReloadTls() {
  if (tls_ == nullptr) {
    return absl::FailedPreconditionError("no --tls-cert/--tls-key: the port is plaintext");
  }
  return tls_->Reload();
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
