#include "server/control_plane.h"

#include <algorithm>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/base/status_macros.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"

namespace gcl::server {

using storage::JobRecord;
using storage::JobState;

namespace {

std::string PlacedReason(const std::string& worker_id) {
  return absl::StrCat("placed on worker ", worker_id, "; starting at its next heartbeat");
}

}  // namespace

ControlPlane::ControlPlane(storage::Registry* registry, storage::ArtifactStore* artifacts,
                           int64_t lease_ms, int64_t refresh_interval_ms)
    : registry_(registry),
      artifacts_(artifacts),
      graph_(registry),
      lease_ms_(lease_ms),
      refresh_interval_ms_(std::max<int64_t>(0, refresh_interval_ms)),
      committer_(registry) {}

int64_t ControlPlane::passes() const {
  absl::MutexLock lock(&mu_);
  return passes_;
}

// ---------------------------------------------------------------- leases

absl::Status ControlPlane::LoadLeasesLocked(int64_t now) {
  if (leases_loaded_) return absl::OkStatus();
  GCL_ASSIGN_OR_RETURN(auto workers, registry_->ListWorkers());
  for (const storage::WorkerRecord& w : workers) {
    Lease& l = leases_[w.id];
    l.devices = w.devices;
    l.alive = w.state == storage::WorkerState::kAlive;
    // A (re)started coordinator cannot know who is still there: one lease to reconnect.
    l.expiry_ms = std::max(w.lease_expiry_ms, now + lease_ms_);
    l.last_seen_ms = w.last_seen_ms;
  }
  leases_loaded_ = true;
  return absl::OkStatus();
}

absl::StatusOr<std::map<std::string, int64_t>> ControlPlane::SyncWorkers() {
  GCL_ASSIGN_OR_RETURN(auto workers, registry_->ListWorkers());
  const int64_t now = registry_->NowMs();
  absl::MutexLock lock(&lease_mu_);
  GCL_RETURN_IF_ERROR(LoadLeasesLocked(now));
  std::map<std::string, int64_t> alive;
  for (const storage::WorkerRecord& w : workers) {
    Lease& l = leases_[w.id];
    l.devices = w.devices;
    if (w.state == storage::WorkerState::kLost) {
      l.alive = false;
      continue;
    }
    if (!l.alive) l.expiry_ms = w.lease_expiry_ms;  // registered again since it was lost
    l.expiry_ms = std::max(l.expiry_ms, w.lease_expiry_ms);
    l.alive = true;
    alive[w.id] = w.devices;
  }
  return alive;
}

absl::StatusOr<int64_t> ControlPlane::RenewLease(const std::string& worker_id) {
  const int64_t now = registry_->NowMs();
  const int64_t expiry = now + lease_ms_;
  {
    absl::MutexLock lock(&lease_mu_);
    GCL_RETURN_IF_ERROR(LoadLeasesLocked(now));
    auto it = leases_.find(worker_id);
    if (it != leases_.end() && it->second.alive) {
      it->second.expiry_ms = expiry;
      it->second.last_seen_ms = now;
      it->second.unflushed = true;
      return expiry;
    }
  }
  // Unknown or LOST here: the workers table decides (a Register may have
  // happened since the last pass merged it).
  GCL_ASSIGN_OR_RETURN(storage::WorkerRecord w, registry_->GetWorker(worker_id));
  if (w.state == storage::WorkerState::kLost) {
    return absl::FailedPreconditionError(
        absl::StrCat("worker ", worker_id, " is LOST; re-register"));
  }
  absl::MutexLock lock(&lease_mu_);
  Lease& l = leases_[worker_id];
  l.devices = w.devices;
  l.alive = true;
  l.expiry_ms = expiry;
  l.last_seen_ms = now;
  l.unflushed = true;
  return expiry;
}

absl::Status ControlPlane::FlushLeases() {
  std::vector<storage::LeaseRenewal> batch;
  {
    absl::MutexLock lock(&lease_mu_);
    for (auto& [id, l] : leases_) {
      if (!l.unflushed || !l.alive) continue;
      batch.push_back({id, l.last_seen_ms, l.expiry_ms});
      l.unflushed = false;
    }
  }
  return registry_->RenewLeases(batch);
}

absl::StatusOr<std::vector<std::string>> ControlPlane::SweepLeases() {
  const int64_t now = registry_->NowMs();
  std::vector<std::string> lost;
  {
    // Held across MarkWorkerLost so a racing heartbeat cannot revive the worker
    // in memory between the decision and the write.
    absl::MutexLock lock(&lease_mu_);
    GCL_RETURN_IF_ERROR(LoadLeasesLocked(now));
    for (auto& [id, l] : leases_) {
      if (!l.alive || l.expiry_ms >= now) continue;
      GCL_RETURN_IF_ERROR(
          registry_
              ->MarkWorkerLost(id, absl::StrCat("worker ", id,
                                                " stopped sending heartbeats (lease "
                                                "expired ",
                                                (now - l.expiry_ms) / 1000, " s ago)"))
              .status());
      l.alive = false;
      lost.push_back(id);
    }
  }
  if (!lost.empty()) {
    RequestRefresh();  // retried by the ticker if this pass fails
    absl::MutexLock lock(&mu_);
    GCL_RETURN_IF_ERROR(RefreshQueueLocked().status());
  }
  GCL_RETURN_IF_ERROR(FlushLeases());
  return lost;
}

// ---------------------------------------------------------------- passes

absl::StatusOr<SchedulePlan> ControlPlane::RefreshQueueLocked() {
  // Cleared first: a change that lands while this pass reads marks it again.
  stale_ = false;
  GCL_RETURN_IF_ERROR(graph_.Advance());
  GCL_ASSIGN_OR_RETURN(auto alive, SyncWorkers());
  GCL_ASSIGN_OR_RETURN(auto in_use, registry_->DevicesInUse());
  GCL_ASSIGN_OR_RETURN(std::vector<storage::QueueEntry> queue, registry_->ListQueue());
  std::map<std::string, int64_t> free = alive;
  for (const auto& [worker, devices] : in_use) {
    auto it = free.find(worker);
    if (it != free.end()) it->second -= devices;
  }
  std::vector<WorkerCapacity> capacities;
  capacities.reserve(alive.size());
  for (const auto& [id, devices] : alive) capacities.push_back({id, devices, free[id]});
  std::vector<QueuedJob> jobs;
  jobs.reserve(queue.size());
  std::unordered_map<std::string, const std::string*> current;  // id -> stored reason
  current.reserve(queue.size());
  std::vector<std::pair<std::string, std::string>> held;  // jobs that wait for another job
  for (const storage::QueueEntry& q : queue) {
    current[q.id] = &q.reason;
    GCL_ASSIGN_OR_RETURN(JobGraph::Hold hold, graph_.HoldOf(q.id, q.kind));
    if (hold.state == JobGraph::Hold::kFailed) continue;  // HoldOf ended it
    if (hold.state == JobGraph::Hold::kWaiting) {
      held.emplace_back(q.id, std::move(hold.reason));
      continue;
    }
    jobs.push_back({q.id, q.priority, q.submit_seq, q.devices});
  }
  SchedulePlan plan = Schedule(std::move(jobs), capacities);

  // Only the reasons that changed are written, in one transaction.
  std::vector<std::pair<std::string, std::string>> changed;
  auto want = [&](const std::string& id, std::string reason) {
    auto it = current.find(id);
    if (it == current.end() || *it->second != reason) changed.emplace_back(id, std::move(reason));
  };
  for (const Waiting& w : plan.waiting) want(w.job_id, w.reason);
  for (auto& [id, reason] : held) want(id, std::move(reason));
  std::map<std::string, std::vector<Placement>> placed;
  for (const Placement& p : plan.placements) {
    want(p.job_id, PlacedReason(p.worker_id));
    placed[p.worker_id].push_back(p);
    free[p.worker_id] -= p.devices;
  }
  GCL_RETURN_IF_ERROR(registry_->SetQueuedReasons(changed).status());

  placed_ = std::move(placed);
  std::vector<WorkerCapacity> leftover;
  leftover.reserve(alive.size());
  for (const auto& [id, devices] : alive) leftover.push_back({id, devices, free[id]});
  {
    absl::MutexLock lock(&leftover_mu_);
    leftover_ = std::move(leftover);
    have_plan_ = true;
  }
  last_pass_ms_ = registry_->NowMs();
  ++passes_;
  return plan;
}

absl::StatusOr<SchedulePlan> ControlPlane::RefreshQueue() {
  absl::MutexLock lock(&mu_);
  return RefreshQueueLocked();
}

void ControlPlane::RequestRefresh() { stale_ = true; }

absl::Status ControlPlane::MaybeRefresh() {
  if (!stale_) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  if (!stale_ || registry_->NowMs() - last_pass_ms_ < refresh_interval_ms_) {
    return absl::OkStatus();
  }
  return RefreshQueueLocked().status();
}

// ---------------------------------------------------------------- submit

std::string ControlPlane::ReasonForNewLocked(int64_t devices) {
  WorkerCapacity* best = nullptr;
  for (WorkerCapacity& w : leftover_) {
    if (w.free_devices < devices) continue;
    if (best == nullptr || w.free_devices < best->free_devices) best = &w;
  }
  if (best == nullptr) return WaitReason(devices, leftover_);
  best->free_devices -= devices;  // the next submission does not count on them
  return PlacedReason(best->id);
}

absl::StatusOr<JobRecord> ControlPlane::Submit(storage::NewJob job) {
  bool have_plan = false;
  {
    absl::MutexLock lock(&leftover_mu_);
    have_plan = have_plan_;
  }
  if (!have_plan) GCL_RETURN_IF_ERROR(RefreshQueue().status());  // once, before Start's pass
  {
    absl::MutexLock lock(&leftover_mu_);
    job.reason = ReasonForNewLocked(job.devices);
  }
  absl::StatusOr<JobRecord> created = committer_.CreateJob(std::move(job));
  RequestRefresh();  // claimed devices go back at the next pass even when this failed
  return created;
}

// ---------------------------------------------------------------- heartbeats

absl::StatusOr<std::vector<gcl::v1::Assignment>> ControlPlane::AssignTo(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  int64_t devices = 0;
  {
    absl::MutexLock leases(&lease_mu_);
    auto it = leases_.find(worker_id);
    if (it == leases_.end() || !it->second.alive) return std::vector<gcl::v1::Assignment>();
    devices = it->second.devices;
  }
  GCL_ASSIGN_OR_RETURN(auto open, registry_->OpenAttemptsOn(worker_id));
  int64_t used = 0;
  for (const storage::OpenAttempt& a : open) used += a.devices;
  // A stale plan is redone (debounced) only for a worker that could take work.
  if (stale_ && used < devices && registry_->NowMs() - last_pass_ms_ >= refresh_interval_ms_) {
    GCL_RETURN_IF_ERROR(RefreshQueueLocked().status());
  }
  std::vector<gcl::v1::Assignment> out;
  auto placed = placed_.find(worker_id);
  if (placed == placed_.end()) return out;
  std::vector<Placement> keep;
  for (const Placement& p : placed->second) {
    // Device ids: the worker's devices not held by its running jobs would need
    // per-device bookkeeping; this slice numbers them from the used count.
    if (used + p.devices > devices) {
      keep.push_back(p);  // capacity changed since the plan; the next pass decides
      continue;
    }
    absl::StatusOr<JobRecord> job = registry_->GetJob(p.job_id);
    if (!job.ok()) return job.status();
    absl::StatusOr<gcl::v1::Assignment> a = BuildAssignment(*job);
    if (!a.ok()) {
      GCL_RETURN_IF_ERROR(
          registry_->Transition(job->id, JobState::kFailed, std::string(a.status().message())));
      continue;
    }
    absl::StatusOr<int32_t> attempt = registry_->StartAttempt(p.job_id, worker_id);
    if (absl::IsFailedPrecondition(attempt.status()) || absl::IsNotFound(attempt.status())) {
      continue;  // cancelled or otherwise no longer QUEUED since the plan
    }
    if (!attempt.ok()) {
      // Started ones must reach the worker; the rest stay planned for later.
      if (out.empty()) return attempt.status();
      keep.push_back(p);
      continue;
    }
    if (attempt_started_) attempt_started_(*job, registry_->NowMs());
    a->set_attempt(*attempt);
    for (int64_t d = 0; d < p.devices; ++d) a->add_device_ids(absl::StrCat("dev:", used + d));
    used += p.devices;
    out.push_back(*std::move(a));
  }
  if (keep.empty()) {
    placed_.erase(placed);
  } else {
    placed->second = std::move(keep);
  }
  return out;
}

absl::StatusOr<gcl::v1::Assignment> ControlPlane::BuildAssignment(const JobRecord& job) {
  gcl::v1::Assignment a;
  a.set_job_id(job.id);
  a.set_attempt(job.attempt);
  a.mutable_spec()->ParseFromString(job.spec_blob);
  if (absl::Status s = graph_.ResolveInit(a.mutable_spec()); !s.ok()) {
    return absl::FailedPreconditionError(absl::StrCat("cannot resolve init.job: ", s.message()));
  }
  a.set_rank(0);
  a.set_world_size(1);
  auto ckpt = registry_->NewestCheckpoint(job.id);
  if (ckpt.ok()) a.set_resume_checkpoint_id(storage::CheckpointId(ckpt->id));
  return a;
}

absl::StatusOr<gcl::v1::Assignment> ControlPlane::ResendAssignment(const std::string& job_id) {
  GCL_ASSIGN_OR_RETURN(JobRecord job, registry_->GetJob(job_id));
  if (job.state != JobState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is not running"));
  }
  GCL_ASSIGN_OR_RETURN(gcl::v1::Assignment a, BuildAssignment(job));
  for (int64_t d = 0; d < job.devices; ++d) a.add_device_ids(absl::StrCat("dev:", d));
  return a;
}

absl::StatusOr<std::vector<std::string>> ControlPlane::CancelsFor(
    const std::string& worker_id, const std::vector<std::string>& running,
    std::vector<std::string>* missing) {
  GCL_ASSIGN_OR_RETURN(auto open, registry_->OpenAttemptsOn(worker_id));
  std::vector<std::string> out;
  std::set<std::string> placed_here;
  for (const storage::OpenAttempt& a : open) {
    if (a.state == JobState::kCancelling) {
      out.push_back(a.job_id);
    } else {
      placed_here.insert(a.job_id);
    }
  }
  for (const std::string& id : running) {
    if (placed_here.count(id) == 0 && std::find(out.begin(), out.end(), id) == out.end()) {
      out.push_back(id);  // requeued or finished meanwhile: a stale attempt
    }
  }
  if (missing != nullptr) {
    for (const std::string& id : placed_here) {
      if (std::find(running.begin(), running.end(), id) == running.end()) missing->push_back(id);
    }
  }
  return out;
}

// ---------------------------------------------------------------- reads

absl::StatusOr<gcl::v1::Job> ControlPlane::Describe(const JobRecord& record) {
  gcl::v1::Job job = ToProtoJob(record);
  if (record.state == JobState::kQueued) {
    absl::StatusOr<int64_t> ahead = registry_->QueuePosition(record.id);
    if (ahead.ok()) {
      job.set_queue_position(*ahead + 1);
    } else if (!absl::IsFailedPrecondition(ahead.status())) {  // started meanwhile: 0
      return ahead.status();
    }
  }
  job.set_worker_id(record.worker_id);
  if (record.kind == "experiment") {
    GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> children, graph_.Children(record.id));
    for (const JobRecord& c : children) job.add_child_ids(c.id);
  }
  return job;
}

absl::StatusOr<std::vector<gcl::v1::Job>> ControlPlane::DescribeAll(
    const std::vector<JobRecord>& records) {
  GCL_ASSIGN_OR_RETURN(std::vector<int64_t> ahead, registry_->QueuePositions(records));
  std::vector<gcl::v1::Job> out;
  out.reserve(records.size());
  for (size_t i = 0; i < records.size(); ++i) {
    out.push_back(ToProtoJob(records[i]));
    if (ahead[i] >= 0) out.back().set_queue_position(ahead[i] + 1);
    out.back().set_worker_id(records[i].worker_id);
  }
  return out;
}

}  // namespace gcl::server
