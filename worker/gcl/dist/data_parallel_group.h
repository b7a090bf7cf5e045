// The ranks of one synchronous data-parallel job and their collectives, on
// PyTorch's c10d: a TCPStore rendezvous served by rank 0, ProcessGroupGloo
// for CPU tensors and ProcessGroupNCCL for CUDA tensors (only in builds whose
// LibTorch has it, USE_C10D_NCCL).
#pragma once

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/Store.hpp>
#include <torch/csrc/distributed/c10d/Work.hpp>
#include <torch/types.h>
#include <torch/version.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/gcl/model/sync_batch_norm.h"

namespace gcl::core {

// LibTorch 2.x moved the collectives of ProcessGroupGloo/NCCL to c10d::Backend.
#if TORCH_VERSION_MAJOR >= 2
using CollectiveBackend = c10d::Backend;
#else
using CollectiveBackend = c10d::ProcessGroup;
#endif

struct DataParallelOptions {
  int rank = 0;
  int world_size = 1;
  // host:port of the rendezvous TCPStore; rank 0 listens on the port.
  std::string rendezvous;
  // Bound on joining and on every collective: a dead or hung peer surfaces as
  // an error after at most this long, never as a hang.
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};
  bool cuda = false;  // collectives on CUDA tensors (NCCL); CPU tensors use Gloo
};

// The environment the worker agent sets for each rank process: GCL_RANK,
// GCL_WORLD_SIZE, GCL_RENDEZVOUS and optionally GCL_COLLECTIVE_TIMEOUT_S
// (seconds). Absent GCL_WORLD_SIZE (or 1): a single-rank job.
// kInvalidArgument naming the variable for malformed values.
absl::StatusOr<DataParallelOptions> DataParallelOptionsFromEnv();

class DataParallelGroup {
 public:
  // Joins the job: all world_size ranks must connect within options.timeout.
  // kInvalidArgument for a bad rank/world/rendezvous, kDeadlineExceeded or
  // kUnavailable (naming the address) when the rendezvous fails.
  static absl::StatusOr<std::unique_ptr<DataParallelGroup>> Join(const DataParallelOptions& options);
  ~DataParallelGroup();

  int rank() const { return options_.rank; }
  int world_size() const { return options_.world_size; }

  // The collectives. All ranks must issue the same collectives in the same
  // order with the same shapes. Each throws c10::Error on failure or timeout
  // whose message names this rank, `what`, the current step and which peers
  // stopped answering (see Describe); the trainer turns it into a Status.
  //
  // In place: t = Σ_ranks t. Started now; Wait() finishes it, so the caller
  // can overlap it with other work (ProcessGroupGloo runs it on its threads).
  c10::intrusive_ptr<c10d::Work> StartAllReduceSum(torch::Tensor& t);
  void Wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what);
  void AllReduceSum(torch::Tensor& t, const std::string& what);
  // In place, from rank 0 (CPU tensors too, also with NCCL).
  void Broadcast(std::vector<torch::Tensor>& tensors, const std::string& what);
  // Every rank's `local` (same shape everywhere) concatenated along dim 0 in
  // rank order.
  torch::Tensor AllGather(const torch::Tensor& local, const std::string& what);

  // Records the 0-based training step this rank is in (for failure reports
  // here and on the peers, through the heartbeat).
  void SetStep(int64_t step) { step_.store(step); }

  // Seconds this rank has spent blocked in collectives (waiting for the data
  // and for slower ranks): the exposed communication time.
  double blocked_seconds() const { return blocked_ns_.load() * 1e-9; }

  // Σ over ranks for SyncBatchNorm2d.
  BatchStatReducer* stat_reducer() { return stat_reducer_.get(); }

 private:
  explicit DataParallelGroup(const DataParallelOptions& options);
  // Waits for `work` to finish, within options_.timeout; throws on failure.
  void Block(const c10::intrusive_ptr<c10d::Work>& work);
  [[noreturn]] void Fail(const std::string& what, const std::string& error);
  // Which peers' heartbeats stopped: reads every rank's heartbeat key, waits
  // a few heartbeat periods and reads again.
  std::string DescribePeers();
  void HeartbeatLoop();

  DataParallelOptions options_;
  c10::intrusive_ptr<c10d::Store> store_;
  c10::intrusive_ptr<CollectiveBackend> group_;
  std::unique_ptr<BatchStatReducer> stat_reducer_;
  std::atomic<int64_t> step_{-1};     // 0-based training step; -1: set-up
  std::atomic<int64_t> started_{0};   // collectives started by this rank
  std::atomic<int64_t> blocked_ns_{0};
  std::atomic<bool> stop_{false};
  std::thread heartbeat_;
};

}  // namespace gcl::core
