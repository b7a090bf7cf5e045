// The coordinator's shared state logic over the Registry: scheduling passes
// (Scheduler over the queued jobs and the ALIVE workers' free devices),
// queue reasons and positions, assignments for a heartbeating worker,
// cancellations it must carry out, worker leases and the lease sweep.
// JobServiceImpl and WorkerServiceImpl both call it. Jobs, attempts and
// workers live in SQLite, so a restarted coordinator needs nothing but the
// Registry; what is kept in memory is derived or cheap to lose:
//   - the last scheduling plan and the capacity it left over; a "stale" flag
//     (set by RequestRefresh: submit, complete, cancel, register, lost) makes
//     the next pass run, at most once per refresh_interval_ms unless
//     RefreshQueue is called explicitly;
//   - worker leases: a heartbeat renews the lease in memory only; the leases
//     are written back in one transaction per sweep (FlushLeases). After a
//     restart every ALIVE worker gets one fresh lease to reconnect.
//
// Thread-safe. Lock order: mu_ -> lease_mu_ | leftover_mu_ -> the Registry's.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "gcl/v1/job.pb.h"
#include "gcl/v1/worker.pb.h"
#include "server/job_graph.h"
#include "server/scheduler.h"
#include "storage/artifact_store.h"
#include "storage/group_commit.h"
#include "storage/registry.h"

namespace gcl::server {

class ControlPlane {
 public:
  // REQUIRES: registry and artifacts outlive this; lease_ms > 0;
  // refresh_interval_ms >= 0 (0: every stale heartbeat runs a pass).
  ControlPlane(storage::Registry* registry, storage::ArtifactStore* artifacts, int64_t lease_ms,
               int64_t refresh_interval_ms = 150);

  storage::Registry& registry() { return *registry_; }
  storage::ArtifactStore& artifacts() { return *artifacts_; }
  JobGraph& graph() { return graph_; }
  int64_t lease_ms() const { return lease_ms_; }

  // SubmitJob's write path. The job's reason comes from the capacity the
  // last pass left over (no pass per submit): "placed on worker W; ..." when
  // some worker still fits it, else the wait reason; the job is written by
  // the group committer (one fsync per batch of concurrent submits; it is
  // durable when this returns) and the plan is marked stale.
  absl::StatusOr<storage::JobRecord> Submit(storage::NewJob job);

  // Advances experiment jobs (JobGraph::Advance), then runs the scheduler
  // over the queued jobs that wait for nothing (JobGraph::HoldReason) and the
  // workers now, and writes every waiting job's changed reason (one transaction; an event only on
  // change). Jobs placed on some worker get "placed on worker W; starting at
  // its next heartbeat" until that worker's heartbeat starts them.
  absl::StatusOr<SchedulePlan> RefreshQueue();
  // Marks the plan stale; a pass follows within about refresh_interval_ms
  // (MaybeRefresh from the coordinator's ticker, or a heartbeat that can
  // take work).
  void RequestRefresh();
  // A pass if the plan is stale and the last pass is refresh_interval_ms old.
  absl::Status MaybeRefresh();

  // Renews worker_id's lease in memory; returns the new expiry (UTC ms).
  // kNotFound: never registered; kFailedPrecondition: it was LOST (register
  // again).
  absl::StatusOr<int64_t> RenewLease(const std::string& worker_id);
  // Writes the leases renewed since the last flush (one transaction).
  absl::Status FlushLeases();

  // Starts the jobs the current plan places on `worker_id` (Registry::
  // StartGangAttempt, QUEUED -> RUNNING) and returns them as assignments
  // (spec, attempt, device ids, resume checkpoint when one exists). A gang
  // starts for all its members at once when the first of them heartbeats
  // (each member ALIVE; rendezvous port picked on node 0's worker, see
  // rendezvous.h); the others receive their member's assignment at their
  // next heartbeat (CancelsFor's `missing`). No scheduling pass unless the
  // plan is stale (debounced) and the worker has free devices: a heartbeat
  // with nothing new costs one indexed query.
  absl::StatusOr<std::vector<gcl::v1::Assignment>> AssignTo(const std::string& worker_id);

  // Jobs the worker must stop: its CANCELLING attempts and the jobs it
  // reports running that the registry no longer places on it, e.g. the
  // survivors of a gang whose attempt ended (one indexed query of the
  // worker's open attempts). `missing` (may be null) gets the attempts
  // placed on it that it does not report (an assignment lost in transit, a
  // gang member started by another worker's heartbeat, or one dropped while
  // the job's previous attempt was still ending): they are sent again
  // (ResendAssignment). Draining members (attempt ended) that it no longer
  // reports are closed: their devices are free again.
  absl::StatusOr<std::vector<std::string>> CancelsFor(const std::string& worker_id,
                                                      const std::vector<std::string>& running,
                                                      std::vector<std::string>* missing = nullptr);
  // worker_id's assignment of the job's current RUNNING attempt, as first
  // sent. kFailedPrecondition when the job is not running or the worker
  // holds no member of it.
  absl::StatusOr<gcl::v1::Assignment> ResendAssignment(const std::string& job_id,
                                                       const std::string& worker_id);

  // The wire Job with queue_position (1-based, 0 unless QUEUED) and the
  // worker of its current attempt.
  absl::StatusOr<gcl::v1::Job> Describe(const storage::JobRecord& record);
  // Describe for a page of jobs: the queue positions in one index scan.
  absl::StatusOr<std::vector<gcl::v1::Job>> DescribeAll(
      const std::vector<storage::JobRecord>& records);
  // Fills job->gang with the members of a multi-worker job's current attempt.
  absl::Status AddGang(const storage::JobRecord& record, gcl::v1::Job* job);

  // Marks every ALIVE worker whose lease expired before now as LOST (its
  // jobs are requeued by the Registry), flushes the renewed leases, then
  // refreshes the queue if any was lost. Returns the ids it marked.
  absl::StatusOr<std::vector<std::string>> SweepLeases();

  // Scheduling passes run so far (tests and benches).
  int64_t passes() const;

  // Called by AssignTo for each attempt it starts, with the job as it was
  // before (queued_ms) and the start time. Set before serving (not synchronised).
  using AttemptStartedHook = std::function<void(const storage::JobRecord& job, int64_t now_ms)>;
  void set_attempt_started_hook(AttemptStartedHook hook) { attempt_started_ = std::move(hook); }

 private:
  struct Lease {
    int64_t devices = 0;
    int64_t expiry_ms = 0;
    int64_t last_seen_ms = 0;
    bool alive = true;
    bool unflushed = false;  // renewed since the last FlushLeases
  };

  absl::StatusOr<SchedulePlan> RefreshQueueLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // An assignment of `job` (spec with init resolved, resume checkpoint).
  // kFailedPrecondition when its init job cannot be resolved.
  absl::StatusOr<gcl::v1::Assignment> BuildAssignment(const storage::JobRecord& job);
  // Starts placement p (all its members) and returns worker_id's assignment;
  // nullopt when the job is no longer QUEUED. `a`: BuildAssignment's.
  absl::StatusOr<std::optional<gcl::v1::Assignment>> StartPlacement(
      const Placement& p, const std::string& worker_id, gcl::v1::Assignment a);
  // Merges the workers table into leases_ (registrations and losses that
  // happened through the Registry); returns the ALIVE workers, by id.
  absl::StatusOr<std::vector<storage::WorkerRecord>> SyncWorkers() ABSL_LOCKS_EXCLUDED(lease_mu_);
  // The device type a queued job asks for (its spec's resources.device_type),
  // read once per job and kept while it is queued.
  absl::StatusOr<DeviceKind> JobDeviceKindLocked(const std::string& job_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The worker's registered ids for a member's "dev:N" ids (job_convert.h).
  absl::StatusOr<std::vector<std::string>> MemberDeviceIds(const storage::AttemptMember& m);
  absl::Status LoadLeasesLocked(int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(lease_mu_);
  // The reason a new job needing `devices` gets from the leftover capacity
  // (the scheduler's policy); claims the devices when it fits.
  std::string ReasonForNewLocked(int64_t devices, int64_t nodes, DeviceKind kind)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(leftover_mu_);

  storage::Registry* registry_;
  storage::ArtifactStore* artifacts_;
  JobGraph graph_;
  const int64_t lease_ms_;
  const int64_t refresh_interval_ms_;
  storage::GroupCommitter committer_;

  std::atomic<bool> stale_{true};

  mutable absl::Mutex mu_;  // serialises passes and assignments
  int64_t last_pass_ms_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t passes_ ABSL_GUARDED_BY(mu_) = 0;
  // The last plan's placements not started yet, per worker.
  std::map<std::string, std::vector<Placement>> placed_ ABSL_GUARDED_BY(mu_);
  // JobDeviceKindLocked's cache: the queued jobs' device types.
  std::map<std::string, DeviceKind> job_kinds_ ABSL_GUARDED_BY(mu_);

  // Submissions read this without waiting for a pass in progress.
  absl::Mutex leftover_mu_;
  bool have_plan_ ABSL_GUARDED_BY(leftover_mu_) = false;
  // Free devices per ALIVE worker after the last plan's placements (and
  // after the submissions that claimed some since).
  std::vector<WorkerCapacity> leftover_ ABSL_GUARDED_BY(leftover_mu_);

  absl::Mutex lease_mu_;
  bool leases_loaded_ ABSL_GUARDED_BY(lease_mu_) = false;
  std::map<std::string, Lease> leases_ ABSL_GUARDED_BY(lease_mu_);
  AttemptStartedHook attempt_started_;
};

}  // namespace gcl::server
