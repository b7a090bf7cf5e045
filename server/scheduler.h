// The coordinator's placement policy (architecture.md section 3), as pure
// logic: no gRPC, no SQLite, so it is unit-tested on plain structs.
//
// Policy: jobs are considered in priority order (higher first), then FIFO by
// submission (submit_seq). A job with nodes == 1 is placed only on ONE
// worker that has all the devices it asks for free (a 2-device job is never
// split over two 1-device workers); among those, the worker with the fewest
// free devices that still fits (best fit, ties by worker id) so large holes
// stay open for large jobs. A gang (nodes = K > 1, devices = K x D) is placed
// on K DISTINCT workers with >= D free devices each, all or none (nothing is
// held for a gang that does not fit): the K best fits, in that order (node
// 0, which runs rank 0, is the tightest fit). A job that does not fit does
// not block smaller jobs behind it (backfill); there is no anti-starvation
// aging yet. A job asking for CUDA (CPU) devices only goes to workers with
// CUDA (CPU) devices. MIG instances (GPU slices) run single-rank jobs only,
// as NCCL cannot connect ranks on them: a multi-rank job (devices > 1)
// counts only a worker's whole devices, and a single-rank job takes a free
// MIG instance first, which leaves whole GPUs to multi-rank jobs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace gcl::server {

// The device type a job asks for (resources.device_type) and so the
// workers it may run on: kCuda only on workers with CUDA devices, kCpu only
// on CPU workers, kAny on either (a gang of kAny on workers of one type,
// CUDA ones first).
enum class DeviceKind { kAny, kCuda, kCpu };

struct QueuedJob {
  std::string id;
  int32_t priority = 0;    // higher first
  int64_t submit_seq = 0;  // FIFO within a priority
  int64_t devices = 1;     // in total; REQUIRES >= 0
  int64_t nodes = 1;       // workers it spans; REQUIRES >= 1 and devices % nodes == 0
  DeviceKind device = DeviceKind::kAny;
};

struct WorkerCapacity {
  std::string id;
  int64_t total_devices = 0;
  int64_t free_devices = 0;  // total minus devices of its active jobs
  bool cuda = false;         // its devices are CUDA devices (a worker offers one type)
  int64_t mig_devices = 0;       // of total_devices, MIG instances
  int64_t free_mig_devices = 0;  // of free_devices, MIG instances
};

struct Placement {
  std::string job_id;
  std::string worker_id;  // == workers[0]
  int64_t devices = 0;    // on each worker
  std::vector<std::string> workers;  // node order; one entry unless a gang
};

// A job left QUEUED: its 1-based place among the jobs left queued (in
// scheduling order) and why it waits, in words a lab user understands.
struct Waiting {
  std::string job_id;
  int64_t position = 0;
  std::string reason;
  bool unsatisfiable = false;  // no registered workers could ever hold it
};

struct SchedulePlan {
  std::vector<Placement> placements;  // in scheduling order
  std::vector<Waiting> waiting;       // in scheduling order
  // The workers as the placements leave them, in the order given (what a
  // job submitted before the next pass may count on).
  std::vector<WorkerCapacity> leftover;
};

// Pure function of its inputs (deterministic: ties broken by id).
// Cost: O(J log J + J log W) for J jobs and W workers, plus O(K log W) per
// K-node gang.
SchedulePlan Schedule(std::vector<QueuedJob> jobs, std::vector<WorkerCapacity> workers);

// The reason for a job that needs `devices` on one worker given the
// workers, as Schedule words it ("waiting for a worker (none registered)",
// "needs 4 devices on one worker; the largest registered worker has 2",
// "waiting for 2 free devices (most free on one worker: 1)").
std::string WaitReason(int64_t devices, const std::vector<WorkerCapacity>& workers);
// The same for a gang of `nodes` workers with `devices_per_node` each:
// "needs 2 workers with 1 device each; 1 registered worker has that many"
// (unsatisfiable) or "needs 2 workers with 1 free device each; 1 has".
std::string GangWaitReason(int64_t nodes, int64_t devices_per_node,
                           const std::vector<WorkerCapacity>& workers);
// The same for a job asking for one device type, counting only the workers
// of that type: "needs 2 CUDA devices; no registered worker has CUDA
// devices", "needs 4 CUDA devices on one worker; the largest registered
// CUDA worker has 2", "waiting for 1 free CPU device (most free on one CPU
// worker: 0)". kAny: the untyped reasons above. A multi-rank job (devices
// > 1) while a worker has MIG instances: the reason over whole devices,
// plus "; MIG instances do not count: multi-rank jobs need whole GPUs".
std::string WaitReason(int64_t devices, int64_t nodes, DeviceKind kind,
                       const std::vector<WorkerCapacity>& workers);

// What a multi-rank job may use of a worker: its whole devices only.
WorkerCapacity WholeDevices(WorkerCapacity w);

}  // namespace gcl::server
