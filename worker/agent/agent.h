// The gcl-worker agent (architecture.md section 3): registers this host's
// devices with the coordinator, renews its lease with heartbeats, and for
// each Assignment runs one gcl-train child per device id (rank) in a
// per-attempt folder
//   <work_dir>/jobs/<job_id>/attempt-<n>/{spec.yaml,metrics.jsonl,out/}
// forwarding rank 0's metrics and every rank's log lines (ReportProgress),
// uploading each new checkpoint of rank 0 (UploadCheckpoint, 1 MiB chunks,
// sha256 from the .sha256 sidecar, checked while reading), killing the
// ranks on cancel, and reporting how they ended (Complete). A crashing or
// hanging trainer only ends its attempt.
//
// Multi-rank assignments (world_size > 1; issue 6): the ranks rank ..
// rank + D - 1 of the D device ids each get GCL_RANK, GCL_WORLD_SIZE and
// GCL_RENDEZVOUS (the c10d TCPStore, hosted by global rank 0) in their
// environment and their own output folder: global rank 0 keeps out/ and
// metrics.jsonl (the only rank that writes checkpoints and metrics), the
// others get out-rank-<r>/ and metrics-rank-<r>.jsonl. On CPU the ranks
// share the agent's threads (--threads max(1, T / D)); on CUDA each sees one
// GPU (CUDA_VISIBLE_DEVICES=<index> of its "cuda:<index>" id, with
// CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA numbers GPUs as nvidia-smi does). When any local rank ends badly the others are
// killed and Complete names that rank and its last stderr line. A new
// attempt of a job supersedes (kills) the attempt still running here.
//
// A resume_checkpoint_id is downloaded into out/checkpoints/ first (rank 0
// only: it broadcasts the state), so gcl-train continues from its step; an
// init checkpoint id ("c-...") is downloaded into init/ and the spec handed
// to gcl-train points at it. A fine-tuning attempt that exits 0 reports its
// per-case test scores (run_results.h) with Complete.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <utility>
#include <memory>
#include <mutex>
#include <condition_variable>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gcl/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "worker/agent/metrics_exporter.h"

namespace gcl::agent {

struct AgentOptions {
  std::string coordinator;   // host:port
  std::string work_dir;      // REQUIRES: non-empty; created when missing
  std::string trainer_path;  // gcl-train executable
  std::string worker_id;     // empty: the host name
  std::string token;         // sent as "authorization: Bearer <token>" when non-empty
  std::shared_ptr<grpc::ChannelCredentials> credentials;  // null: insecure
  absl::Duration kill_grace = absl::Seconds(30);      // SIGTERM -> SIGKILL on cancel
  absl::Duration stall_timeout = absl::Seconds(600);  // no metrics growth -> killed
  absl::Duration poll_interval = absl::Milliseconds(500);  // metrics/checkpoint scan
  absl::Duration rpc_timeout = absl::Seconds(30);
  int64_t chunk_bytes = int64_t{1} << 20;
  // Prometheus /metrics of the trainers' numbers (metrics_exporter.h) on
  // this host:port; empty: none. The bound address is sent with Register.
  std::string metrics_listen;
  absl::Duration metrics_grace = absl::Minutes(5);  // series kept after an attempt ends
  // Address the coordinator hands to other hosts as the rendezvous host of
  // gangs whose rank 0 runs here; empty: the host name.
  std::string advertise_address;
  // Ports the coordinator may pick a rendezvous port from (inclusive).
  int32_t rendezvous_port_min = 29500, rendezvous_port_max = 29999;
  // CPU threads of this host for training; > 0: every rank gets
  // --threads max(1, threads / D); 0: all cores, and --threads only when
  // D > 1 ranks share the host.
  int threads = 0;
  // CPU devices registered (each one rank of a data-parallel job); 0: not
  // given, i.e. the GPUs when some are found, else 1. A worker offers one
  // type: a given count means CPU devices even where GPUs are.
  int cpu_devices = 0;
  // --gpus: "auto" (what nvidia-smi lists, narrowed by an inherited
  // CUDA_VISIBLE_DEVICES), "none", or nvidia-smi indices "0,2"
  // (gpu_discovery.h). Found GPUs are registered as "cuda:<index>".
  std::string gpus = "auto";
};

class Agent {
 public:
  // Checks the options and builds a channel to options.coordinator.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(AgentOptions options);
  // Same with a given stub (tests: an in-process server's channel).
  static absl::StatusOr<std::unique_ptr<Agent>> Create(
      AgentOptions options, std::unique_ptr<gcl::v1::WorkerService::StubInterface> stub);
  ~Agent();  // Shutdown() and joins every attempt
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Registers (retrying with backoff), then heartbeats until Shutdown().
  // Returns OK after Shutdown(); never fails because of a trainer. Returns
  // kUnauthenticated / kPermissionDenied at once when the first Register is
  // refused for the token (a mistake at start); a later refusal, when it
  // registers again after being declared LOST, is retried with backoff (a
  // token being rotated, SetToken).
  absl::Status Run();
  // Thread-safe: stops Run() and kills running trainers (kill_grace).
  void Shutdown();
  // Thread-safe: the token the next calls send (a rotated worker token).
  void SetToken(std::string token);

  std::vector<std::string> RunningJobIds();
  const std::string& worker_id() const { return options_.worker_id; }
  // host:port of the /metrics endpoint; "" without one.
  std::string metrics_address() const;

  // The devices registered with the coordinator (decided by Create).
  const std::vector<gcl::v1::Device>& devices() const { return devices_; }

  // "cpu:0" (memory = physical RAM).
  static std::vector<gcl::v1::Device> LocalDevices();
  // "cpu:0" .. "cpu:<n-1>", the physical RAM split evenly.
  static std::vector<gcl::v1::Device> LocalDevices(int cpu_devices);

 private:
  struct Attempt;
  Agent(AgentOptions options, std::unique_ptr<gcl::v1::WorkerService::StubInterface> stub);
  absl::Status Register();
  void HandleHeartbeat(const gcl::v1::HeartbeatResponse& response);
  void StartAttempt(const gcl::v1::Assignment& assignment);
  void RunAttempt(Attempt* attempt);
  void ReapFinished();
  void SetupContext(grpc::ClientContext* ctx, bool deadline) const;

  AgentOptions options_;
  std::vector<gcl::v1::Device> devices_;  // immutable after Create
  // Device id -> CUDA_VISIBLE_DEVICES value ("1", "MIG-..."); immutable after Create.
  std::map<std::string, std::string> cuda_pins_;
  std::unique_ptr<gcl::v1::WorkerService::StubInterface> stub_;
  std::unique_ptr<MetricsExporter> metrics_;  // null without --metrics-listen
  absl::Duration heartbeat_interval_ = absl::Seconds(5);

  mutable std::mutex token_mu_;
  std::string token_;  // guarded by token_mu_; from options.token, then SetToken

  std::mutex mu_;
  std::condition_variable cv_;
  bool shutdown_ = false;
  std::map<std::string, std::unique_ptr<Attempt>> attempts_;  // by job id
  // Attempts that ran here and ended: a re-sent assignment of one (crossing
  // its Complete) is ignored, never run twice.
  std::set<std::pair<std::string, int32_t>> ended_;
};

}  // namespace gcl::agent
