// The coordinator's shared state logic over the Registry: scheduling passes
// (Scheduler over the queued jobs and the ALIVE workers' free devices),
// queue reasons and positions, assignments for a heartbeating worker,
// cancellations it must carry out, and the lease sweep. JobServiceImpl and
// WorkerServiceImpl both call it; every piece of state stays in SQLite, so a
// restarted coordinator needs nothing but the Registry.
//
// Thread-safe: passes are serialised by a mutex (the Registry has its own).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gcl/v1/job.pb.h"
#include "gcl/v1/worker.pb.h"
#include "server/job_graph.h"
#include "server/scheduler.h"
#include "storage/artifact_store.h"
#include "storage/registry.h"

namespace gcl::server {

class ControlPlane {
 public:
  // REQUIRES: registry and artifacts outlive this; lease_ms > 0.
  ControlPlane(storage::Registry* registry, storage::ArtifactStore* artifacts, int64_t lease_ms);

  storage::Registry& registry() { return *registry_; }
  storage::ArtifactStore& artifacts() { return *artifacts_; }
  JobGraph& graph() { return graph_; }
  int64_t lease_ms() const { return lease_ms_; }

  // Advances experiment jobs (JobGraph::Advance), then runs the scheduler
  // over the queued jobs that wait for nothing (JobGraph::HoldReason) and the
  // workers, and writes every waiting job's reason (Registry::SetReason; an event only on change).
  // Jobs placed on some worker get "placed on worker W; starting at its next
  // heartbeat" until that worker's heartbeat starts them.
  absl::StatusOr<SchedulePlan> RefreshQueue();

  // A scheduling pass whose placements on `worker_id` are started
  // (Registry::StartAttempt, QUEUED -> RUNNING) and returned as assignments
  // (spec, attempt, device ids "cpu:0".., resume checkpoint when one exists).
  absl::StatusOr<std::vector<gcl::v1::Assignment>> AssignTo(const std::string& worker_id);

  // Jobs the worker must stop: its CANCELLING attempts and the jobs it
  // reports running that the registry no longer places on it. `missing`
  // (may be null) gets the attempts placed on it that it does not report
  // (an assignment lost in transit, or dropped while the job's previous
  // attempt was still ending): they are sent again (ResendAssignment).
  absl::StatusOr<std::vector<std::string>> CancelsFor(const std::string& worker_id,
                                                      const std::vector<std::string>& running,
                                                      std::vector<std::string>* missing = nullptr);
  // The assignment of the job's current RUNNING attempt, as first sent.
  absl::StatusOr<gcl::v1::Assignment> ResendAssignment(const std::string& job_id);

  // The wire Job with queue_position (1-based, 0 unless QUEUED) and the
  // worker of its current attempt.
  absl::StatusOr<gcl::v1::Job> Describe(const storage::JobRecord& record);

  // Marks every ALIVE worker whose lease expired before now as LOST (its
  // jobs are requeued by the Registry), then refreshes the queue. Returns
  // the ids of the workers it marked.
  absl::StatusOr<std::vector<std::string>> SweepLeases();

  // Called by AssignTo for each attempt it starts, with the job as it was
  // before (queued_ms) and the start time. Set before serving (not synchronised).
  using AttemptStartedHook = std::function<void(const storage::JobRecord& job, int64_t now_ms)>;
  void set_attempt_started_hook(AttemptStartedHook hook) { attempt_started_ = std::move(hook); }

 private:
  // ALIVE workers with free = devices - devices of active jobs on them.
  absl::StatusOr<std::vector<WorkerCapacity>> CapacitiesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<SchedulePlan> RefreshQueueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An assignment of `job` (spec with init resolved, resume checkpoint).
  // kFailedPrecondition when its init job cannot be resolved.
  absl::StatusOr<gcl::v1::Assignment> BuildAssignment(const storage::JobRecord& job);
  // Worker of the job's current attempt; "" when it has none.
  absl::StatusOr<std::string> WorkerOf(const storage::JobRecord& record);

  absl::Mutex mu_;
  storage::Registry* registry_;
  storage::ArtifactStore* artifacts_;
  JobGraph graph_;
  int64_t lease_ms_;
  AttemptStartedHook attempt_started_;
};

}  // namespace gcl::server
