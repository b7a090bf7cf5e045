#include "server/scheduler.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"

namespace gcl::server {
namespace {

std::string Devices(int64_t n) { return absl::StrCat(n, n == 1 ? " device" : " devices"); }

bool Unsatisfiable(int64_t devices, const std::vector<WorkerCapacity>& workers) {
  if (workers.empty()) return false;  // held until a worker registers
  for (const WorkerCapacity& w : workers) {
    if (w.total_devices >= devices) return false;
  }
  return true;
}

}  // namespace

std::string WaitReason(int64_t devices, const std::vector<WorkerCapacity>& workers) {
  if (workers.empty()) return "waiting for a worker (none registered)";
  int64_t largest = 0, most_free = 0;
  for (const WorkerCapacity& w : workers) {
    largest = std::max(largest, w.total_devices);
    most_free = std::max(most_free, w.free_devices);
  }
  if (largest < devices) {
    return absl::StrCat("needs ", Devices(devices), " on one worker; the largest registered worker has ",
                        largest);
  }
  return absl::StrCat("waiting for ", devices, " free ", devices == 1 ? "device" : "devices",
                      " (most free on one worker: ", most_free, ")");
}

SchedulePlan Schedule(std::vector<QueuedJob> jobs, std::vector<WorkerCapacity> workers) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const QueuedJob& a, const QueuedJob& b) {
    return std::make_tuple(-static_cast<int64_t>(a.priority), a.submit_seq, a.id) <
           std::make_tuple(-static_cast<int64_t>(b.priority), b.submit_seq, b.id);
  });
  std::sort(workers.begin(), workers.end(),
            [](const WorkerCapacity& a, const WorkerCapacity& b) { return a.id < b.id; });
  const std::vector<WorkerCapacity> before = workers;  // reasons quote the capacity seen

  SchedulePlan plan;
  for (const QueuedJob& job : jobs) {
    WorkerCapacity* best = nullptr;
    for (WorkerCapacity& w : workers) {
      if (w.free_devices < job.devices) continue;
      // Best fit keeps the biggest holes for the biggest gangs.
      if (best == nullptr || w.free_devices < best->free_devices) best = &w;
    }
    if (best != nullptr) {
      best->free_devices -= job.devices;
      plan.placements.push_back({job.id, best->id, job.devices});
      continue;
    }
    Waiting wait;
    wait.job_id = job.id;
    wait.position = static_cast<int64_t>(plan.waiting.size()) + 1;
    wait.unsatisfiable = Unsatisfiable(job.devices, before);
    // Free counts after this pass's placements: what the job actually waits for.
    wait.reason = WaitReason(job.devices, workers);
    plan.waiting.push_back(std::move(wait));
  }
  return plan;
}

}  // namespace gcl::server
