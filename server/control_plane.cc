#include "server/control_plane.h"

#include <algorithm>
#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/base/status_macros.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"

namespace gcl::server {

using storage::JobRecord;
using storage::JobState;

ControlPlane::ControlPlane(storage::Registry* registry, storage::ArtifactStore* artifacts,
                           int64_t lease_ms)
    : registry_(registry), artifacts_(artifacts), graph_(registry), lease_ms_(lease_ms) {}

absl::StatusOr<std::string> ControlPlane::WorkerOf(const JobRecord& record) {
  if (record.attempt <= 0) return std::string();
  GCL_ASSIGN_OR_RETURN(auto attempts, registry_->ListAttempts(record.id));
  for (const storage::AttemptRecord& a : attempts) {
    if (a.attempt == record.attempt) return a.worker_id;
  }
  return std::string();
}

absl::StatusOr<std::vector<WorkerCapacity>> ControlPlane::CapacitiesLocked() {
  GCL_ASSIGN_OR_RETURN(auto workers, registry_->ListWorkers());
  std::map<std::string, WorkerCapacity> alive;
  for (const storage::WorkerRecord& w : workers) {
    if (w.state != storage::WorkerState::kAlive) continue;
    alive[w.id] = WorkerCapacity{w.id, w.devices, w.devices};
  }
  GCL_ASSIGN_OR_RETURN(auto active, registry_->RecoverActive());
  for (const JobRecord& job : active) {
    if (job.state == JobState::kQueued) continue;
    GCL_ASSIGN_OR_RETURN(std::string worker, WorkerOf(job));
    auto it = alive.find(worker);
    if (it != alive.end()) it->second.free_devices -= job.devices;
  }
  std::vector<WorkerCapacity> out;
  for (auto& [id, w] : alive) out.push_back(w);
  return out;
}

absl::StatusOr<SchedulePlan> ControlPlane::RefreshQueueLocked() {
  GCL_RETURN_IF_ERROR(graph_.Advance());
  GCL_ASSIGN_OR_RETURN(auto queued, registry_->ListQueued());
  std::vector<QueuedJob> jobs;
  jobs.reserve(queued.size());
  for (const JobRecord& j : queued) {
    GCL_ASSIGN_OR_RETURN(std::optional<std::string> hold, graph_.HoldReason(j));
    if (hold.has_value()) {
      absl::Status s = registry_->SetReason(j.id, *hold);
      if (!s.ok() && !absl::IsFailedPrecondition(s)) return s;  // failed by HoldReason: terminal
      continue;
    }
    jobs.push_back({j.id, j.priority, j.submit_seq, j.devices});
  }
  GCL_ASSIGN_OR_RETURN(auto capacities, CapacitiesLocked());
  SchedulePlan plan = Schedule(std::move(jobs), std::move(capacities));
  for (const Waiting& w : plan.waiting) GCL_RETURN_IF_ERROR(registry_->SetReason(w.job_id, w.reason));
  for (const Placement& p : plan.placements) {
    GCL_RETURN_IF_ERROR(registry_->SetReason(
        p.job_id, absl::StrCat("placed on worker ", p.worker_id, "; starting at its next heartbeat")));
  }
  return plan;
}

absl::StatusOr<SchedulePlan> ControlPlane::RefreshQueue() {
  absl::MutexLock lock(&mu_);
  return RefreshQueueLocked();
}

absl::StatusOr<std::vector<gcl::v1::Assignment>> ControlPlane::AssignTo(const std::string& worker_id) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(SchedulePlan plan, RefreshQueueLocked());
  // Device ids: the worker's devices not held by its running jobs would need
  // per-device bookkeeping; this slice numbers them from the free count.
  GCL_ASSIGN_OR_RETURN(auto capacities, CapacitiesLocked());
  int64_t used = 0;
  for (const WorkerCapacity& c : capacities) {
    if (c.id == worker_id) used = c.total_devices - c.free_devices;
  }
  std::vector<gcl::v1::Assignment> out;
  for (const Placement& p : plan.placements) {
    if (p.worker_id != worker_id) continue;
    GCL_ASSIGN_OR_RETURN(JobRecord job, registry_->GetJob(p.job_id));
    absl::StatusOr<gcl::v1::Assignment> a = BuildAssignment(job);
    if (!a.ok()) {
      GCL_RETURN_IF_ERROR(registry_->Transition(job.id, JobState::kFailed, std::string(a.status().message())));
      continue;
    }
    GCL_ASSIGN_OR_RETURN(int32_t attempt, registry_->StartAttempt(p.job_id, worker_id));
    if (attempt_started_) attempt_started_(job, registry_->NowMs());
    a->set_attempt(attempt);
    for (int64_t d = 0; d < p.devices; ++d) a->add_device_ids(absl::StrCat("dev:", used + d));
    used += p.devices;
    out.push_back(*std::move(a));
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

absl::StatusOr<std::vector<std::string>> ControlPlane::CancelsFor(const std::string& worker_id,
                                                                  const std::vector<std::string>& running,
                                                                  std::vector<std::string>* missing) {
  std::vector<std::string> out;
  std::set<std::string> placed_here;
  GCL_ASSIGN_OR_RETURN(auto active, registry_->RecoverActive());
  for (const JobRecord& job : active) {
    if (job.state != JobState::kRunning && job.state != JobState::kCancelling) continue;
    GCL_ASSIGN_OR_RETURN(std::string worker, WorkerOf(job));
    if (worker != worker_id) continue;
    if (job.state == JobState::kCancelling) {
      out.push_back(job.id);
    } else {
      placed_here.insert(job.id);
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

absl::StatusOr<gcl::v1::Job> ControlPlane::Describe(const JobRecord& record) {
  gcl::v1::Job job = ToProtoJob(record);
  if (record.state == JobState::kQueued) {
    GCL_ASSIGN_OR_RETURN(int64_t ahead, registry_->QueuePosition(record.id));
    job.set_queue_position(ahead + 1);
  }
  GCL_ASSIGN_OR_RETURN(std::string worker, WorkerOf(record));
  job.set_worker_id(worker);
  if (record.kind == "experiment") {
    GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> children, graph_.Children(record.id));
    for (const JobRecord& c : children) job.add_child_ids(c.id);
  }
  return job;
}

absl::StatusOr<std::vector<std::string>> ControlPlane::SweepLeases() {
  absl::MutexLock lock(&mu_);
  const int64_t now = registry_->NowMs();
  GCL_ASSIGN_OR_RETURN(auto workers, registry_->ListWorkers());
  std::vector<std::string> lost;
  for (const storage::WorkerRecord& w : workers) {
    if (w.state != storage::WorkerState::kAlive || w.lease_expiry_ms >= now) continue;
    GCL_RETURN_IF_ERROR(registry_->MarkWorkerLost(
        w.id, absl::StrCat("worker ", w.id, " stopped sending heartbeats (lease expired ",
                           (now - w.lease_expiry_ms) / 1000, " s ago)"))
                            .status());
    lost.push_back(w.id);
  }
  if (!lost.empty()) GCL_RETURN_IF_ERROR(RefreshQueueLocked().status());
  return lost;
}

}  // namespace gcl::server
