#include "server/control_plane.h"

#include <algorithm>
#include <set>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gcl/base/status_macros.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"
#include "server/rendezvous.h"

namespace gcl::server {

using storage::JobRecord;
using storage::JobState;

namespace {

std::string PlacedReason(const std::vector<std::string>& workers) {
  if (workers.size() == 1) {
    return absl::StrCat("placed on worker ", workers[0], "; starting at its next heartbeat");
  }
  return absl::StrCat("placed on workers ", absl::StrJoin(workers, ", "),
                      "; starting at the first one's next heartbeat");
}

// Fills in what differs between the members of one attempt; device_ids are
// the worker's registered ids of the member's devices.
void SetMember(const JobRecord& job, const storage::GangAttempt& gang,
               const storage::AttemptMember& m, const std::vector<std::string>& device_ids,
               gcl::v1::Assignment* a) {
  a->set_attempt(gang.attempt);
  a->set_rank(static_cast<int32_t>(m.node_index * m.devices));
  a->set_world_size(static_cast<int32_t>(std::max<int64_t>(1, job.devices)));
  a->set_rendezvous(gang.rendezvous);
  a->clear_device_ids();
  for (const std::string& id : device_ids) a->add_device_ids(id);
}

DeviceKind KindOf(const gcl::v1::JobSpec& spec) {
  switch (spec.resources().device_type()) {
    case gcl::v1::DEVICE_TYPE_CUDA: return DeviceKind::kCuda;
    case gcl::v1::DEVICE_TYPE_CPU: return DeviceKind::kCpu;
    default: return DeviceKind::kAny;
  }
}

bool OfKind(DeviceKind kind, const WorkerCapacity& w) {
  return kind == DeviceKind::kAny || (kind == DeviceKind::kCuda) == w.cuda;
}

// The worker's devices, those held by `use` (may be null) taken.
WorkerCapacity CapacityOf(const storage::WorkerRecord& w, const storage::DeviceUse* use) {
  WorkerCapacity c{w.id, w.devices, w.devices, HasCudaDevices(w)};
  if (use != nullptr) c.free_devices -= use->devices;
  for (int64_t i : MigDeviceIndices(w)) {
    ++c.mig_devices;
    if (use == nullptr || !std::binary_search(use->indices.begin(), use->indices.end(), i)) {
      ++c.free_mig_devices;
    }
  }
  c.free_mig_devices = std::min(c.free_mig_devices, std::max<int64_t>(0, c.free_devices));
  return c;
}

// The devices a member on `w` may take, in order of preference: none named
// (the lowest free ones) unless w has MIG instances; then whole devices only
// for a multi-rank job, MIG instances first for a single-rank one.
std::vector<int64_t> DeviceOrder(const storage::WorkerRecord& w, bool multi_rank) {
  const std::vector<int64_t> mig = MigDeviceIndices(w);
  if (mig.empty()) return {};
  std::vector<int64_t> order;
  if (!multi_rank) order = mig;
  for (int64_t i = 0; i < w.devices; ++i) {
    if (!std::binary_search(mig.begin(), mig.end(), i)) order.push_back(i);
  }
  return order;
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

absl::StatusOr<std::vector<storage::WorkerRecord>> ControlPlane::SyncWorkers() {
  GCL_ASSIGN_OR_RETURN(auto workers, registry_->ListWorkers());
  const int64_t now = registry_->NowMs();
  absl::MutexLock lock(&lease_mu_);
  GCL_RETURN_IF_ERROR(LoadLeasesLocked(now));
  std::vector<storage::WorkerRecord> alive;
  for (storage::WorkerRecord& w : workers) {
    Lease& l = leases_[w.id];
    l.devices = w.devices;
    if (w.state == storage::WorkerState::kLost) {
      l.alive = false;
      continue;
    }
    if (!l.alive) l.expiry_ms = w.lease_expiry_ms;  // registered again since it was lost
    l.expiry_ms = std::max(l.expiry_ms, w.lease_expiry_ms);
    l.alive = true;
    alive.push_back(std::move(w));
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
  GCL_ASSIGN_OR_RETURN(std::vector<storage::WorkerRecord> alive, SyncWorkers());
  GCL_ASSIGN_OR_RETURN(std::vector<storage::DeviceUse> in_use, registry_->DevicesInUse());
  GCL_ASSIGN_OR_RETURN(std::vector<storage::QueueEntry> queue, registry_->ListQueue());
  std::map<std::string, const storage::DeviceUse*> use_of;
  for (const storage::DeviceUse& use : in_use) use_of[use.worker_id] = &use;
  std::vector<WorkerCapacity> capacities;
  capacities.reserve(alive.size());
  for (const storage::WorkerRecord& w : alive) {
    auto use = use_of.find(w.id);
    capacities.push_back(CapacityOf(w, use == use_of.end() ? nullptr : use->second));
  }
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
    GCL_ASSIGN_OR_RETURN(DeviceKind kind, JobDeviceKindLocked(q.id));
    jobs.push_back({q.id, q.priority, q.submit_seq, q.devices, q.nodes, kind});
  }
  // Forget the jobs that left the queue.
  for (auto it = job_kinds_.begin(); it != job_kinds_.end();) {
    it = current.count(it->first) > 0 ? std::next(it) : job_kinds_.erase(it);
  }
  SchedulePlan plan = Schedule(std::move(jobs), std::move(capacities));

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
    want(p.job_id, PlacedReason(p.workers));
    for (const std::string& w : p.workers) {  // whichever member heartbeats first starts it
      placed[w].push_back(p);
    }
  }
  GCL_RETURN_IF_ERROR(registry_->SetQueuedReasons(changed).status());

  placed_ = std::move(placed);
  {
    absl::MutexLock lock(&leftover_mu_);
    leftover_ = plan.leftover;
    have_plan_ = true;
  }
  last_pass_ms_ = registry_->NowMs();
  ++passes_;
  return plan;
}

absl::StatusOr<DeviceKind> ControlPlane::JobDeviceKindLocked(const std::string& job_id) {
  auto it = job_kinds_.find(job_id);
  if (it != job_kinds_.end()) return it->second;
  GCL_ASSIGN_OR_RETURN(JobRecord job, registry_->GetJob(job_id));
  gcl::v1::JobSpec spec;
  spec.ParseFromString(job.spec_blob);
  return job_kinds_[job_id] = KindOf(spec);
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

std::string ControlPlane::ReasonForNewLocked(int64_t devices, int64_t nodes, DeviceKind kind) {
  nodes = std::max<int64_t>(1, nodes);
  const int64_t per_node = devices / nodes;
  std::vector<WorkerCapacity*> fits;
  for (WorkerCapacity& w : leftover_) {
    const int64_t usable = devices > 1 ? WholeDevices(w).free_devices : w.free_devices;
    if (usable >= per_node && OfKind(kind, w)) fits.push_back(&w);
  }
  if (static_cast<int64_t>(fits.size()) < nodes) return WaitReason(devices, nodes, kind, leftover_);
  // The tightest fits, as Schedule picks them.
  std::partial_sort(fits.begin(), fits.begin() + nodes, fits.end(),
                    [](const WorkerCapacity* a, const WorkerCapacity* b) {
                      return std::tie(a->free_devices, a->id) < std::tie(b->free_devices, b->id);
                    });
  std::vector<std::string> ids;
  for (int64_t i = 0; i < nodes; ++i) {
    fits[i]->free_devices -= per_node;  // the next submission does not count on them
    if (devices == 1 && fits[i]->free_mig_devices > 0) --fits[i]->free_mig_devices;
    ids.push_back(fits[i]->id);
  }
  return PlacedReason(ids);
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
    gcl::v1::JobSpec spec;
    spec.ParseFromString(job.spec_blob);
    job.reason = ReasonForNewLocked(job.devices, job.nodes, KindOf(spec));
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
  int64_t used = 0;  // draining gang members included: their ranks may still run
  for (const storage::OpenAttempt& a : open) used += a.devices;
  // A stale plan is redone (debounced) only for a worker that could take work.
  if (stale_ && used < devices && registry_->NowMs() - last_pass_ms_ >= refresh_interval_ms_) {
    GCL_RETURN_IF_ERROR(RefreshQueueLocked().status());
  }
  std::vector<gcl::v1::Assignment> out;
  auto placed = placed_.find(worker_id);
  if (placed == placed_.end()) return out;
  std::vector<Placement> keep;
  std::vector<Placement> started_gangs;
  for (const Placement& p : placed->second) {
    if (used + p.devices > devices) {
      keep.push_back(p);  // capacity changed since the plan; the next pass decides
      continue;
    }
    bool members_alive = true;
    {
      absl::MutexLock leases(&lease_mu_);
      for (const std::string& w : p.workers) {
        auto it = leases_.find(w);
        members_alive = members_alive && it != leases_.end() && it->second.alive;
      }
    }
    if (!members_alive) continue;  // a member was lost since the plan; the next pass re-places it
    absl::StatusOr<JobRecord> job = registry_->GetJob(p.job_id);
    if (!job.ok()) return job.status();
    absl::StatusOr<gcl::v1::Assignment> a = BuildAssignment(*job);
    if (!a.ok()) {
      GCL_RETURN_IF_ERROR(
          registry_->Transition(job->id, JobState::kFailed, std::string(a.status().message())));
      continue;
    }
    absl::StatusOr<std::optional<gcl::v1::Assignment>> mine =
        StartPlacement(p, worker_id, *std::move(a));
    if (!mine.ok()) {
      // Started ones must reach the worker; the rest stay planned for later.
      if (out.empty()) return mine.status();
      keep.push_back(p);
      continue;
    }
    if (!mine->has_value()) continue;  // cancelled or otherwise no longer QUEUED since the plan
    if (attempt_started_) attempt_started_(*job, registry_->NowMs());
    used += p.devices;
    out.push_back(**std::move(mine));
    if (p.workers.size() > 1) started_gangs.push_back(p);
  }
  if (keep.empty()) {
    placed_.erase(placed);
  } else {
    placed->second = std::move(keep);
  }
  // The other members get theirs as `missing` at their next heartbeat.
  for (const Placement& g : started_gangs) {
    for (const std::string& w : g.workers) {
      auto it = placed_.find(w);
      if (it == placed_.end()) continue;
      auto& list = it->second;
      list.erase(std::remove_if(list.begin(), list.end(),
                                [&](const Placement& q) { return q.job_id == g.job_id; }),
                 list.end());
    }
  }
  return out;
}

absl::StatusOr<std::optional<gcl::v1::Assignment>> ControlPlane::StartPlacement(
    const Placement& p, const std::string& worker_id, gcl::v1::Assignment a) {
  GCL_ASSIGN_OR_RETURN(JobRecord job, registry_->GetJob(p.job_id));
  // The members' worker rows, node order: the rendezvous host, the order of
  // their devices (MIG), their registered device ids.
  std::vector<storage::WorkerRecord> rows;
  std::vector<std::vector<int64_t>> device_order;
  for (const std::string& id : p.workers) {
    GCL_ASSIGN_OR_RETURN(storage::WorkerRecord w, registry_->GetWorker(id));
    device_order.push_back(DeviceOrder(w, job.devices > 1));
    rows.push_back(std::move(w));
  }
  std::string rendezvous;
  if (job.devices > 1) {
    // Rank 0 (node 0's first device) hosts the TCPStore.
    const storage::WorkerRecord& host = rows[0];
    GCL_ASSIGN_OR_RETURN(auto open, registry_->OpenAttemptsOn(host.id));
    std::set<int32_t> in_use;
    for (const storage::OpenAttempt& o : open) {
      if (o.node_index == 0 && !o.rendezvous.empty()) in_use.insert(PortOf(o.rendezvous));
    }
    GCL_ASSIGN_OR_RETURN(int32_t port,
                         PickRendezvousPort(job.id, job.attempt + 1, host.rendezvous_port_min,
                                            host.rendezvous_port_max, in_use));
    rendezvous = JoinHostPort(host.address.empty() ? "127.0.0.1" : host.address, port);
  }
  absl::StatusOr<storage::GangAttempt> gang =
      registry_->StartGangAttempt(p.job_id, p.workers, rendezvous, device_order);
  if (absl::IsFailedPrecondition(gang.status()) || absl::IsNotFound(gang.status())) {
    return std::optional<gcl::v1::Assignment>();
  }
  if (!gang.ok()) return gang.status();
  for (const storage::AttemptMember& m : gang->members) {
    if (m.worker_id != worker_id) continue;
    SetMember(job, *gang, m, ToRegisteredDeviceIds(rows[m.node_index], m.device_ids), &a);
    return std::optional<gcl::v1::Assignment>(std::move(a));
  }
  return absl::InternalError(absl::StrCat("worker ", worker_id, " is no member of its placement"));
}

absl::StatusOr<std::vector<std::string>> ControlPlane::MemberDeviceIds(
    const storage::AttemptMember& m) {
  GCL_ASSIGN_OR_RETURN(storage::WorkerRecord w, registry_->GetWorker(m.worker_id));
  return ToRegisteredDeviceIds(w, m.device_ids);
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
  a.set_world_size(static_cast<int32_t>(std::max<int64_t>(1, job.devices)));
  // Only rank 0 restores it (then broadcasts the state to the other ranks).
  auto ckpt = registry_->NewestCheckpoint(job.id);
  if (ckpt.ok()) a.set_resume_checkpoint_id(storage::CheckpointId(ckpt->id));
  return a;
}

absl::StatusOr<gcl::v1::Assignment> ControlPlane::ResendAssignment(const std::string& job_id,
                                                                   const std::string& worker_id) {
  GCL_ASSIGN_OR_RETURN(JobRecord job, registry_->GetJob(job_id));
  if (job.state != JobState::kRunning) {
    return absl::FailedPreconditionError(absl::StrCat("job ", job_id, " is not running"));
  }
  GCL_ASSIGN_OR_RETURN(storage::GangAttempt gang, registry_->GetGang(job_id, job.attempt));
  GCL_ASSIGN_OR_RETURN(gcl::v1::Assignment a, BuildAssignment(job));
  for (const storage::AttemptMember& m : gang.members) {
    if (m.worker_id != worker_id || m.state != storage::AttemptState::kRunning) continue;
    GCL_ASSIGN_OR_RETURN(std::vector<std::string> ids, MemberDeviceIds(m));
    SetMember(job, gang, m, ids, &a);
    return a;
  }
  return absl::FailedPreconditionError(
      absl::StrCat("worker ", worker_id, " runs no member of job ", job_id));
}

absl::StatusOr<std::vector<std::string>> ControlPlane::CancelsFor(
    const std::string& worker_id, const std::vector<std::string>& running,
    std::vector<std::string>* missing) {
  GCL_ASSIGN_OR_RETURN(auto open, registry_->OpenAttemptsOn(worker_id));
  std::vector<std::string> out;
  std::set<std::string> placed_here;
  std::vector<std::pair<std::string, int32_t>> draining;
  for (const storage::OpenAttempt& a : open) {
    if (!a.current) {
      draining.emplace_back(a.job_id, a.attempt);
    } else if (a.state == JobState::kCancelling) {
      out.push_back(a.job_id);
    } else {
      placed_here.insert(a.job_id);
    }
  }
  // A draining member the worker no longer runs has ended (its Complete was
  // refused as stale, or it never started): its devices are free.
  bool released = false;
  for (const auto& [id, attempt] : draining) {
    if (std::find(running.begin(), running.end(), id) != running.end()) continue;
    storage::AttemptOutcome gone;
    gone.state = storage::AttemptState::kCancelled;
    gone.reason = "ended with its gang";
    GCL_RETURN_IF_ERROR(registry_->CloseMember(id, attempt, worker_id, gone));
    released = true;
  }
  if (released) RequestRefresh();
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

absl::Status ControlPlane::AddGang(const JobRecord& record, gcl::v1::Job* job) {
  if (record.nodes <= 1 || record.attempt == 0) return absl::OkStatus();
  GCL_ASSIGN_OR_RETURN(storage::GangAttempt gang, registry_->GetGang(record.id, record.attempt));
  for (const storage::AttemptMember& m : gang.members) {
    gcl::v1::GangMember* g = job->add_gang();
    g->set_worker_id(m.worker_id);
    g->set_first_rank(static_cast<int32_t>(m.node_index * m.devices));
    g->set_devices(static_cast<int32_t>(m.devices));
  }
  return absl::OkStatus();
}

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
  GCL_RETURN_IF_ERROR(AddGang(record, &job));
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
    GCL_RETURN_IF_ERROR(AddGang(records[i], &out.back()));
  }
  return out;
}

}  // namespace gcl::server
