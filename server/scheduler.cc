#include "server/scheduler.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace gcl::server {
namespace {

std::string Devices(int64_t n) { return absl::StrCat(n, n == 1 ? " device" : " devices"); }

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
  // Best fit in O(log workers) per job: workers ordered by (free, id), so the
  // first one with free >= devices is the tightest fit (ties: lowest id).
  std::set<std::pair<int64_t, std::string>> by_free;
  int64_t largest = 0;
  for (const WorkerCapacity& w : workers) {
    by_free.insert({w.free_devices, w.id});
    largest = std::max(largest, w.total_devices);
  }
  auto most_free = [&] {
    return by_free.empty() ? 0 : std::max<int64_t>(0, by_free.rbegin()->first);
  };
  // Reasons depend only on (devices, most free now): format each once per pass state.
  std::map<int64_t, std::string> reasons;
  int64_t reasons_for_most_free = -1;

  SchedulePlan plan;
  for (const QueuedJob& job : jobs) {
    auto fit = by_free.lower_bound({job.devices, std::string()});
    if (fit != by_free.end()) {
      std::pair<int64_t, std::string> w = *fit;
      by_free.erase(fit);
      plan.placements.push_back({job.id, w.second, job.devices});
      w.first -= job.devices;
      by_free.insert(std::move(w));
      continue;
    }
    Waiting wait;
    wait.job_id = job.id;
    wait.position = static_cast<int64_t>(plan.waiting.size()) + 1;
    wait.unsatisfiable = !workers.empty() && largest < job.devices;
    // Free counts after this pass's placements: what the job actually waits for.
    if (most_free() != reasons_for_most_free) {
      reasons.clear();
      reasons_for_most_free = most_free();
    }
    auto [it, fresh] = reasons.try_emplace(job.devices);
    if (fresh) {
      std::vector<WorkerCapacity> now;
      if (!workers.empty()) now.push_back({"", largest, reasons_for_most_free});
      it->second = WaitReason(job.devices, now);
    }
    wait.reason = it->second;
    plan.waiting.push_back(std::move(wait));
  }
  return plan;
}

}  // namespace gcl::server
