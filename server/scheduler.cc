#include "server/scheduler.h"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace gcl::server {
namespace {

std::string Devices(int64_t n) { return absl::StrCat(n, n == 1 ? " device" : " devices"); }
std::string Workers(int64_t n) { return absl::StrCat(n, n == 1 ? " worker" : " workers"); }

std::string GangReason(int64_t nodes, int64_t per_node, int64_t big_enough, int64_t free_enough) {
  if (big_enough < nodes) {
    return absl::StrCat("needs ", Workers(nodes), " with ", Devices(per_node), " each; ",
                        big_enough, " registered ", big_enough == 1 ? "worker has" : "workers have",
                        " that many");
  }
  return absl::StrCat("needs ", Workers(nodes), " with ", per_node, " free ",
                      per_node == 1 ? "device" : "devices", " each; ", free_enough,
                      free_enough == 1 ? " has" : " have");
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

std::string GangWaitReason(int64_t nodes, int64_t devices_per_node,
                           const std::vector<WorkerCapacity>& workers) {
  if (workers.empty()) return "waiting for a worker (none registered)";
  int64_t big_enough = 0, free_enough = 0;
  for (const WorkerCapacity& w : workers) {
    if (w.total_devices >= devices_per_node) ++big_enough;
    if (w.free_devices >= devices_per_node) ++free_enough;
  }
  return GangReason(nodes, devices_per_node, big_enough, free_enough);
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
  std::vector<int64_t> totals;  // every worker's size, for gangs' unsatisfiable test
  totals.reserve(workers.size());
  for (const WorkerCapacity& w : workers) {
    by_free.insert({w.free_devices, w.id});
    largest = std::max(largest, w.total_devices);
    totals.push_back(w.total_devices);
  }
  std::sort(totals.rbegin(), totals.rend());
  auto most_free = [&] {
    return by_free.empty() ? 0 : std::max<int64_t>(0, by_free.rbegin()->first);
  };
  // Reasons depend only on (devices, most free now): format each once per pass state.
  std::map<int64_t, std::string> reasons;
  int64_t reasons_for_most_free = -1;

  SchedulePlan plan;
  for (const QueuedJob& job : jobs) {
    const int64_t nodes = std::max<int64_t>(1, job.nodes);
    const int64_t per_node = job.devices / nodes;
    if (nodes > 1) {
      // The K tightest fits, all or none.
      std::vector<std::pair<int64_t, std::string>> fits;
      for (auto it = by_free.lower_bound({per_node, std::string()});
           it != by_free.end() && static_cast<int64_t>(fits.size()) < nodes; ++it) {
        fits.push_back(*it);
      }
      if (static_cast<int64_t>(fits.size()) == nodes) {
        Placement p{job.id, fits[0].second, per_node, {}};
        for (auto& w : fits) {
          by_free.erase(w);
          p.workers.push_back(w.second);
          w.first -= per_node;
          by_free.insert(w);
        }
        plan.placements.push_back(std::move(p));
        continue;
      }
      // Workers big enough at all: totals is sorted largest first.
      const int64_t big_enough =
          std::upper_bound(totals.begin(), totals.end(), per_node, std::greater<int64_t>()) -
          totals.begin();
      Waiting wait;
      wait.job_id = job.id;
      wait.position = static_cast<int64_t>(plan.waiting.size()) + 1;
      wait.unsatisfiable = !workers.empty() && big_enough < nodes;
      wait.reason = workers.empty()
                        ? "waiting for a worker (none registered)"
                        : GangReason(nodes, per_node, big_enough, static_cast<int64_t>(fits.size()));
      plan.waiting.push_back(std::move(wait));
      continue;
    }
    auto fit = by_free.lower_bound({job.devices, std::string()});
    if (fit != by_free.end()) {
      std::pair<int64_t, std::string> w = *fit;
      by_free.erase(fit);
      plan.placements.push_back({job.id, w.second, job.devices, {w.second}});
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
