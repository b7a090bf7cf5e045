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

// "1 device", "2 CUDA devices" (word: "" or the device type).
std::string Devices(int64_t n, const std::string& word = "") {
  return absl::StrCat(n, " ", word, word.empty() ? "" : " ", n == 1 ? "device" : "devices");
}
std::string Workers(int64_t n) { return absl::StrCat(n, n == 1 ? " worker" : " workers"); }
std::string Space(const std::string& word) { return word.empty() ? "" : word + " "; }

std::string GangReason(int64_t nodes, int64_t per_node, int64_t big_enough, int64_t free_enough,
                       const std::string& word = "") {
  if (big_enough < nodes) {
    return absl::StrCat("needs ", Workers(nodes), " with ", Devices(per_node, word), " each; ",
                        big_enough, " registered ", Space(word),
                        big_enough == 1 ? "worker has" : "workers have", " that many");
  }
  return absl::StrCat("needs ", Workers(nodes), " with ", per_node, " free ", Space(word),
                      per_node == 1 ? "device" : "devices", " each; ", free_enough,
                      free_enough == 1 ? " has" : " have");
}

std::string SingleReason(int64_t devices, const std::vector<WorkerCapacity>& workers,
                         const std::string& word) {
  int64_t largest = 0, most_free = 0;
  for (const WorkerCapacity& w : workers) {
    largest = std::max(largest, w.total_devices);
    most_free = std::max(most_free, w.free_devices);
  }
  if (largest < devices) {
    return absl::StrCat("needs ", Devices(devices, word), " on one worker; the largest registered ",
                        Space(word), "worker has ", largest);
  }
  return absl::StrCat("waiting for ", devices, " free ", Space(word),
                      devices == 1 ? "device" : "devices", " (most free on one ", Space(word),
                      "worker: ", most_free, ")");
}

bool OfKind(DeviceKind kind, bool cuda) {
  return kind == DeviceKind::kAny || (kind == DeviceKind::kCuda) == cuda;
}

// Whether a job of `kind` could ever fit the registered workers.
bool Satisfiable(int64_t devices, int64_t nodes, DeviceKind kind,
                 const std::vector<WorkerCapacity>& workers) {
  const int64_t per_node = devices / std::max<int64_t>(1, nodes);
  int64_t big_enough[2] = {0, 0};  // CPU, CUDA workers
  for (const WorkerCapacity& w : workers) {
    const int64_t usable = devices > 1 ? WholeDevices(w).total_devices : w.total_devices;
    if (OfKind(kind, w.cuda) && usable >= per_node) ++big_enough[w.cuda ? 1 : 0];
  }
  return std::max(big_enough[0], big_enough[1]) >= std::max<int64_t>(1, nodes);
}

}  // namespace

WorkerCapacity WholeDevices(WorkerCapacity w) {
  w.total_devices -= w.mig_devices;
  w.free_devices -= w.free_mig_devices;
  w.mig_devices = w.free_mig_devices = 0;
  return w;
}

std::string WaitReason(int64_t devices, const std::vector<WorkerCapacity>& workers) {
  if (workers.empty()) return "waiting for a worker (none registered)";
  return SingleReason(devices, workers, "");
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

std::string WaitReason(int64_t devices, int64_t nodes, DeviceKind kind,
                       const std::vector<WorkerCapacity>& workers) {
  if (devices > 1 && std::any_of(workers.begin(), workers.end(),
                                 [](const WorkerCapacity& w) { return w.mig_devices > 0; })) {
    std::vector<WorkerCapacity> whole;
    whole.reserve(workers.size());
    for (const WorkerCapacity& w : workers) whole.push_back(WholeDevices(w));
    return WaitReason(devices, nodes, kind, whole) +
           "; MIG instances do not count: multi-rank jobs need whole GPUs";
  }
  nodes = std::max<int64_t>(1, nodes);
  if (kind == DeviceKind::kAny) {
    return nodes > 1 ? GangWaitReason(nodes, devices / nodes, workers) : WaitReason(devices, workers);
  }
  if (workers.empty()) return "waiting for a worker (none registered)";
  const std::string word = kind == DeviceKind::kCuda ? "CUDA" : "CPU";
  std::vector<WorkerCapacity> typed;
  for (const WorkerCapacity& w : workers) {
    if (OfKind(kind, w.cuda)) typed.push_back(w);
  }
  if (typed.empty()) {
    return absl::StrCat("needs ", Devices(devices, word), "; no registered worker has ", word,
                        " devices");
  }
  if (nodes == 1) return SingleReason(devices, typed, word);
  const int64_t per_node = devices / nodes;
  int64_t big_enough = 0, free_enough = 0;
  for (const WorkerCapacity& w : typed) {
    if (w.total_devices >= per_node) ++big_enough;
    if (w.free_devices >= per_node) ++free_enough;
  }
  return GangReason(nodes, per_node, big_enough, free_enough, word);
}

SchedulePlan Schedule(std::vector<QueuedJob> jobs, std::vector<WorkerCapacity> workers) {
  std::stable_sort(jobs.begin(), jobs.end(), [](const QueuedJob& a, const QueuedJob& b) {
    return std::make_tuple(-static_cast<int64_t>(a.priority), a.submit_seq, a.id) <
           std::make_tuple(-static_cast<int64_t>(b.priority), b.submit_seq, b.id);
  });
  // Best fit in O(log workers) per job: workers ordered by (free, id), so the
  // first one with free >= devices is the tightest fit (ties: lowest id).
  SchedulePlan plan;
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
  std::map<std::string, const WorkerCapacity*> by_id;
  std::map<std::string, int64_t> free_mig;  // workers with MIG instances: how many are free now
  int64_t cuda_workers = 0;
  for (const WorkerCapacity& w : workers) {
    by_id[w.id] = &w;
    cuda_workers += w.cuda ? 1 : 0;
    if (w.mig_devices > 0) free_mig[w.id] = w.free_mig_devices;
  }
  const int64_t cpu_workers = static_cast<int64_t>(workers.size()) - cuda_workers;
  auto is_cuda = [&](const std::string& id) { return by_id.at(id)->cuda; };
  // Free whole devices of a worker with `free` free devices now.
  auto whole_free = [&](const std::string& id, int64_t free) {
    auto it = free_mig.find(id);
    return it == free_mig.end() ? free : free - it->second;
  };
  // The workers' free devices now (after this pass's placements so far), for
  // the reasons of jobs asking for one device type or for whole devices;
  // rebuilt after placements.
  std::vector<WorkerCapacity> now_typed;
  size_t now_typed_at = static_cast<size_t>(-1);
  auto typed_reason = [&](const QueuedJob& job, int64_t nodes, bool* unsatisfiable) {
    if (now_typed_at != plan.placements.size()) {
      now_typed.clear();
      for (const auto& [free, id] : by_free) {
        WorkerCapacity w = *by_id.at(id);
        w.free_devices = free;
        if (w.mig_devices > 0) w.free_mig_devices = free_mig.at(id);
        now_typed.push_back(std::move(w));
      }
      now_typed_at = plan.placements.size();
    }
    *unsatisfiable = !workers.empty() && !Satisfiable(job.devices, nodes, job.device, now_typed);
    return WaitReason(job.devices, nodes, job.device, now_typed);
  };
  // Up to `count` tightest fits with >= need free among the workers of one
  // type (cuda) or of any type (kind kAny and !typed); whole: whole devices.
  auto tightest = [&](int64_t need, int64_t count, bool typed, bool cuda, bool whole) {
    std::vector<std::pair<int64_t, std::string>> fits;
    if (typed && (cuda ? cuda_workers : cpu_workers) == 0) return fits;  // no scan in vain
    for (auto it = by_free.lower_bound({need, std::string()});
         it != by_free.end() && static_cast<int64_t>(fits.size()) < count; ++it) {
      if (typed && is_cuda(it->second) != cuda) continue;
      if (whole && whole_free(it->second, it->first) < need) continue;
      fits.push_back(*it);
    }
    return fits;
  };
  auto most_free = [&] {
    return by_free.empty() ? 0 : std::max<int64_t>(0, by_free.rbegin()->first);
  };
  // Reasons depend only on (devices, most free now): format each once per pass state.
  std::map<int64_t, std::string> reasons;
  int64_t reasons_for_most_free = -1;
  for (const QueuedJob& job : jobs) {
    const int64_t nodes = std::max<int64_t>(1, job.nodes);
    const int64_t per_node = job.devices / nodes;
    // Whole devices only: a multi-rank job while some worker has MIG instances.
    const bool whole = job.devices > 1 && !free_mig.empty();
    if (nodes > 1) {
      // The K tightest fits, all or none, on workers of one type (a gang
      // cannot mix NCCL and Gloo ranks): CUDA ones first for kAny.
      std::vector<std::pair<int64_t, std::string>> fits;
      const bool mixed = cuda_workers > 0 && cpu_workers > 0;
      if (job.device != DeviceKind::kAny || mixed) {
        if (job.device != DeviceKind::kCpu) fits = tightest(per_node, nodes, true, true, whole);
        if (static_cast<int64_t>(fits.size()) < nodes && job.device != DeviceKind::kCuda) {
          auto cpu_fits = tightest(per_node, nodes, true, false, whole);
          if (cpu_fits.size() >= fits.size()) fits = std::move(cpu_fits);
        }
      } else {
        fits = tightest(per_node, nodes, false, false, whole);
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
      if (job.device != DeviceKind::kAny || whole) {
        wait.reason = typed_reason(job, nodes, &wait.unsatisfiable);
        plan.waiting.push_back(std::move(wait));
        continue;
      }
      wait.unsatisfiable = !workers.empty() && big_enough < nodes;
      wait.reason = workers.empty()
                        ? "waiting for a worker (none registered)"
                        : GangReason(nodes, per_node, big_enough, static_cast<int64_t>(fits.size()));
      plan.waiting.push_back(std::move(wait));
      continue;
    }
    auto fit = by_free.lower_bound({job.devices, std::string()});
    const bool cuda = job.device == DeviceKind::kCuda;
    if (job.device != DeviceKind::kAny && (cuda ? cuda_workers : cpu_workers) == 0) {
      fit = by_free.end();
    }
    while (fit != by_free.end() &&
           ((job.device != DeviceKind::kAny && is_cuda(fit->second) != cuda) ||
            (whole && whole_free(fit->second, fit->first) < job.devices))) {
      ++fit;
    }
    if (fit != by_free.end()) {
      std::pair<int64_t, std::string> w = *fit;
      by_free.erase(fit);
      plan.placements.push_back({job.id, w.second, job.devices, {w.second}});
      w.first -= job.devices;
      if (auto mig = free_mig.find(w.second); job.devices == 1 && mig != free_mig.end()) {
        mig->second -= mig->second > 0 ? 1 : 0;  // a MIG instance first
      }
      by_free.insert(std::move(w));
      continue;
    }
    Waiting wait;
    wait.job_id = job.id;
    wait.position = static_cast<int64_t>(plan.waiting.size()) + 1;
    if (job.device != DeviceKind::kAny || whole) {
      wait.reason = typed_reason(job, 1, &wait.unsatisfiable);
      plan.waiting.push_back(std::move(wait));
      continue;
    }
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
  std::map<std::string, int64_t> free_now;
  for (const auto& [free, id] : by_free) free_now[id] = free;
  plan.leftover = std::move(workers);
  for (WorkerCapacity& w : plan.leftover) {
    w.free_devices = free_now[w.id];
    if (w.mig_devices > 0) w.free_mig_devices = free_mig[w.id];
  }
  return plan;
}

}  // namespace gcl::server
