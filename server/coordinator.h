// gcl-coordinator as a library: the Registry (SQLite), the JobService and
// WorkerService over one grpc::Server, grpc.health.v1 and server reflection,
// and a ticker thread: lease sweep (expired workers go LOST, their jobs
// requeue), debounced scheduling passes and WAL checkpoints.
//
//   GCL_ASSIGN_OR_RETURN(auto c, Coordinator::Create(options));
//   GCL_RETURN_IF_ERROR(c->Start());   // c->port() is the bound port
//   ...
//   c->Shutdown();                     // NOT_SERVING, drain, stop
//
// Security (deploy/README.md): TLS or mTLS on the port when tls_cert/tls_key
// are set; bearer tokens from tokens_file checked for every RPC by the
// AuthInterceptorFactory (server/auth_interceptor.h). Without TLS and tokens
// only a loopback address is served, unless allow_insecure_remote.
// Metrics: with metrics_listen, Prometheus /metrics (coordinator_metrics.h);
// with prometheus_sd_file, a file-SD list of the workers' endpoints.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/notification.h"
#include "server/control_plane.h"
#include "server/coordinator_metrics.h"
#include "server/job_service.h"
#include "server/token_store.h"
#include "server/worker_service.h"
#include "storage/artifact_store.h"
#include "storage/registry.h"
#include "tls/tls_reloader.h"

namespace gcl::server {

class Coordinator {
 public:
  struct Options {
    std::string listen = "127.0.0.1:7070";  // host:port; port 0 picks a free one
    std::string db_path;                   // SQLite file, created when absent (required)
    std::string artifacts_dir;             // checkpoints and logs; default: <db_path>.artifacts
    int64_t lease_ms = 30000;              // worker lease; heartbeat every lease/3
    int64_t restart_grace_ms = 10000;      // extra lease after a restart (agents reconnecting)
    int64_t sweep_interval_ms = 1000;      // expired leases looked for, renewed ones written
    int64_t refresh_interval_ms = 150;     // at most one debounced scheduling pass per this
    int watch_poll_ms = 100;               // WatchJob's event-log poll period
    int64_t shutdown_grace_ms = 5000;      // in-flight calls get this long at Shutdown
    storage::RegistryOptions registry;     // clock injection for tests
    // TLS: certificate chain + private key (PEM); with tls_client_ca too
    // (mTLS), clients must present a certificate signed by that CA.
    std::string tls_cert, tls_key, tls_client_ca;
    int tls_reload_seconds = 60;  // how often the three are read again (rotation); >= 1
    std::string tokens_file;            // TokenTable YAML; "" = auth off (all callers admin)
    bool allow_insecure_remote = false;  // serve a non-loopback address without TLS + tokens
    std::string metrics_listen;            // host:port for /metrics; "" = none
    std::string prometheus_sd_file;        // file-SD JSON of the workers' /metrics; "" = none
  };

  // Opens (and migrates) the registry, loads the tokens and TLS files.
  // kInvalidArgument for a missing db_path, lease_ms <= 0, tls_cert without
  // tls_key (or the reverse), tls_client_ca without TLS, a bad tokens file
  // (FILE:LINE:COL) or bad PEM files (naming flag and file); kNotFound for an
  // unreadable file; kFailedPrecondition for a non-loopback listen address
  // without TLS and tokens (unless allow_insecure_remote), saying how to fix it.
  static absl::StatusOr<std::unique_ptr<Coordinator>> Create(Options options);
  ~Coordinator();  // Shutdown()

  // Binds and starts serving; kUnavailable naming the address when it cannot
  // bind. Recovery after a restart: ALIVE workers get a fresh lease (they
  // could not heartbeat meanwhile) and every queued job's reason is refreshed.
  absl::Status Start();
  // Health NOT_SERVING, watchers end with UNAVAILABLE, in-flight calls get
  // shutdown_grace_ms, sweeper stops. Idempotent.
  void Shutdown();
  // Blocks until Shutdown() has run (from another thread or a signal waiter).
  void Wait();

  int port() const { return port_; }
  std::string address() const;  // host:port actually bound
  storage::Registry& registry() { return *registry_; }
  storage::ArtifactStore& artifacts() { return *artifacts_; }
  ControlPlane& plane() { return *plane_; }
  // Reads tokens_file again (TokenStore::Reload): the number of tokens now;
  // on an error the previous tokens stay. kFailedPrecondition when auth is
  // off (no tokens_file).
  absl::StatusOr<size_t> ReloadTokens();
  // Reads the TLS files again (TlsReloader::Reload: true when they changed
  // and are now used; on an error the previous ones stay). The sweeper does
  // it every tls_reload_seconds; a change or a new error goes to stderr.
  // kFailedPrecondition without TLS.
  absl::StatusOr<bool> ReloadTls();
  // host:port of /metrics after Start(); "" without metrics_listen.
  std::string metrics_address() const { return metrics_ ? metrics_->address() : ""; }

 private:
  Coordinator(Options options, std::unique_ptr<storage::Registry> registry,
              std::unique_ptr<storage::ArtifactStore> artifacts);
  void SweepLoop();

  Options options_;
  std::unique_ptr<storage::Registry> registry_;
  std::unique_ptr<storage::ArtifactStore> artifacts_;
  std::unique_ptr<ControlPlane> plane_;
  std::unique_ptr<TokenStore> tokens_;                     // null: auth off
  std::unique_ptr<tls::TlsReloader> tls_;                  // null: plaintext
  std::shared_ptr<grpc::ServerCredentials> credentials_;   // TLS or insecure
  std::atomic<bool> stopping_{false};
  std::unique_ptr<JobServiceImpl> job_service_;
  std::unique_ptr<WorkerServiceImpl> worker_service_;
  std::unique_ptr<CoordinatorMetrics> metrics_;  // null without metrics flags
  std::unique_ptr<grpc::Server> server_;
  std::thread sweeper_;
  absl::Notification stop_sweeper_;
  absl::Notification shut_down_;
  std::atomic<bool> started_{false};
  int port_ = 0;
};

}  // namespace gcl::server
