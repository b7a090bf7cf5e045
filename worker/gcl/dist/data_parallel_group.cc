#include "worker/gcl/dist/data_parallel_group.h"

#ifdef GCL_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <array>
#include <cstdlib>
#include <map>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace gcl::core {
namespace {

constexpr auto kHeartbeatPeriod = std::chrono::milliseconds(500);

std::string HeartbeatKey(int rank) { return absl::StrCat("gcl/heartbeat/", rank); }

// Adds the time until its destruction to *total_ns.
class BlockedTimer {
 public:
  explicit BlockedTimer(std::atomic<int64_t>* total_ns)
      : total_ns_(total_ns), start_(std::chrono::steady_clock::now()) {}
  ~BlockedTimer() {
    *total_ns_ += std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now() - start_)
                      .count();
  }

 private:
  std::atomic<int64_t>* total_ns_;
  std::chrono::steady_clock::time_point start_;
};

// Steps are 0-based internally, 1-based in messages; -1 is set-up.
std::string StepName(int64_t step) {
  return step < 0 ? "in set-up" : absl::StrCat("at step ", step + 1);
}

#ifdef GCL_C10D_GLOO
bool IsLoopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}
#endif

absl::Status ParseEnvInt(const char* name, int* out) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return absl::OkStatus();
  if (!absl::SimpleAtoi(v, out)) {
    return absl::InvalidArgumentError(absl::StrCat(name, "='", v, "' is not an integer"));
  }
  return absl::OkStatus();
}

// LibTorch 2.4+ asks for the libuv TCPStore by default, and builds without
// libuv (Debian's 2.6) refuse it; the plain backend serves a few dozen ranks
// as well. Older LibTorch has no such option.
template <typename O>
auto DisableLibUv(O& o, int) -> decltype(o.useLibUV = false, true) {
  const bool was = o.useLibUV;
  o.useLibUV = false;
  return was;
}
template <typename O>
bool DisableLibUv(O&, long) {
  return false;
}

c10::intrusive_ptr<c10d::TCPStore> OpenStore(const std::string& host, c10d::TCPStoreOptions so) {
  try {
    return c10::make_intrusive<c10d::TCPStore>(host, so);
  } catch (const std::exception& e) {
    if (std::string(e.what()).find("libuv") == std::string::npos || !DisableLibUv(so, 0)) throw;
    return c10::make_intrusive<c10d::TCPStore>(host, so);
  }
}

// Our waits on NCCL block with the collective timeout and report the lost
// peer. NCCL's watchdog checks the group's own timeout, this much later, as
// a backstop for a host stuck outside our waits.
constexpr auto kNcclWatchdogMargin = std::chrono::seconds(60);

class GroupStatReducer : public BatchStatReducer {
 public:
  explicit GroupStatReducer(DataParallelGroup* group) : group_(group) {}
  void AllReduceSumInPlace(torch::Tensor& t) override {
    group_->AllReduceSum(t, "sync_batch_norm statistics");
  }

 private:
  DataParallelGroup* group_;
};

}  // namespace

absl::StatusOr<DataParallelOptions> DataParallelOptionsFromEnv() {
  DataParallelOptions o;
  if (absl::Status s = ParseEnvInt("GCL_RANK", &o.rank); !s.ok()) return s;
  if (absl::Status s = ParseEnvInt("GCL_WORLD_SIZE", &o.world_size); !s.ok()) return s;
  int timeout_s = static_cast<int>(o.timeout.count() / 1000);
  if (absl::Status s = ParseEnvInt("GCL_COLLECTIVE_TIMEOUT_S", &timeout_s); !s.ok()) return s;
  if (timeout_s <= 0) return absl::InvalidArgumentError("GCL_COLLECTIVE_TIMEOUT_S must be > 0");
  o.timeout = std::chrono::seconds(timeout_s);
  if (const char* r = std::getenv("GCL_RENDEZVOUS")) o.rendezvous = r;
  if (o.world_size < 1) return absl::InvalidArgumentError("GCL_WORLD_SIZE must be >= 1");
  if (o.rank < 0 || o.rank >= o.world_size) {
    return absl::InvalidArgumentError(
        absl::StrCat("GCL_RANK=", o.rank, " is outside [0, GCL_WORLD_SIZE=", o.world_size, ")"));
  }
  return o;
}

DataParallelGroup::DataParallelGroup(const DataParallelOptions& options) : options_(options) {}

DataParallelGroup::~DataParallelGroup() {
  stop_ = true;
  if (heartbeat_.joinable()) heartbeat_.join();
}

absl::StatusOr<std::unique_ptr<DataParallelGroup>> DataParallelGroup::Join(
    const DataParallelOptions& options) {
  if (options.world_size < 1 || options.rank < 0 || options.rank >= options.world_size) {
    return absl::InvalidArgumentError(absl::StrCat("rank ", options.rank, " is outside world size ",
                                                   options.world_size));
  }
  std::vector<std::string> parts = absl::StrSplit(options.rendezvous, absl::MaxSplits(':', 1));
  int port = 0;
  if (parts.size() != 2 || parts[0].empty() || !absl::SimpleAtoi(parts[1], &port) || port <= 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous '", options.rendezvous, "' is not host:port"));
  }
  std::unique_ptr<DataParallelGroup> g(new DataParallelGroup(options));
  const std::string where = absl::StrCat("rendezvous ", options.rendezvous, " (rank ",
                                         options.rank, " of ", options.world_size, ")");
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(port);
    so.isServer = options.rank == 0;
    so.numWorkers = options.world_size;
    so.waitWorkers = true;
    so.timeout = options.timeout;
    g->store_ = OpenStore(parts[0], so);
    if (options.cuda) {
#ifdef USE_C10D_NCCL
      // By default (mode 3) NCCL's watchdog ends the process on any failed
      // collective, also right after our timed-out wait aborted it, before
      // this rank names the lost peer. Mode 2 still aborts the communicators
      // (which unblocks the GPU) and leaves the report to us. Read by the
      // constructor; a value the user set wins.
      ::setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "2", /*overwrite=*/0);
      auto no = c10d::ProcessGroupNCCL::Options::create();
      no->timeout = options.timeout + kNcclWatchdogMargin;
      g->group_ = c10::make_intrusive<c10d::ProcessGroupNCCL>(g->store_, options.rank,
                                                              options.world_size, no);
#else
      return absl::FailedPreconditionError(
          "this gcl-train was built without NCCL (USE_C10D_NCCL): CUDA ranks cannot communicate");
#endif
    } else {
#ifdef GCL_C10D_GLOO
      auto go = c10d::ProcessGroupGloo::Options::create(options.timeout);
      go->devices.push_back(IsLoopback(parts[0])
                                ? c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1")
                                : c10d::ProcessGroupGloo::createDefaultDevice());
      g->group_ = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store_, options.rank,
                                                              options.world_size, go);
#else
      return absl::FailedPreconditionError(
          "this gcl-train was built without Gloo (its LibTorch ships no gloo headers): CPU ranks "
          "cannot communicate");
#endif
    }
    const std::string first_beat = "0 -1 0";
    g->store_->set(HeartbeatKey(options.rank),
                   std::vector<uint8_t>(first_beat.begin(), first_beat.end()));
  } catch (const std::exception& e) {
    const std::string msg = e.what();
    if (msg.find("imed out") != std::string::npos || msg.find("timeout") != std::string::npos) {
      return absl::DeadlineExceededError(absl::StrCat(where, ": not every rank joined within ",
                                                      options.timeout.count() / 1000, " s: ",
                                                      msg.substr(0, msg.find('\n'))));
    }
    return absl::UnavailableError(absl::StrCat(where, ": ", msg.substr(0, msg.find('\n'))));
  }
  g->stat_reducer_ = std::make_unique<GroupStatReducer>(g.get());
  g->heartbeat_ = std::thread([raw = g.get()] { raw->HeartbeatLoop(); });
  return g;
}

void DataParallelGroup::HeartbeatLoop() {
  // "<counter> <step> <collectives started>": a counter, not a clock, since
  // hosts' clocks need not agree.
  int64_t beat = 0;
  while (!stop_) {
    std::this_thread::sleep_for(kHeartbeatPeriod);
    const std::string value = absl::StrCat(++beat, " ", step_.load(), " ", started_.load());
    try {
      store_->set(HeartbeatKey(options_.rank), std::vector<uint8_t>(value.begin(), value.end()));
    } catch (const std::exception&) {
      return;  // the store host is gone; the next collective reports it
    }
  }
}

std::string DataParallelGroup::DescribePeers() {
  auto read = [&] {
    std::map<int, std::array<int64_t, 3>> beats;  // rank -> (counter, step, collectives)
    for (int r = 0; r < options_.world_size; ++r) {
      if (r == options_.rank) continue;
      const std::vector<uint8_t> v = store_->get(HeartbeatKey(r));
      std::vector<std::string> parts = absl::StrSplit(std::string(v.begin(), v.end()), ' ');
      std::array<int64_t, 3> beat = {-1, -1, -1};
      for (size_t i = 0; i < parts.size() && i < 3; ++i) (void)absl::SimpleAtoi(parts[i], &beat[i]);
      beats[r] = beat;
    }
    return beats;
  };
  try {
    store_->setTimeout(std::chrono::seconds(3));
    const auto before = read();
    std::this_thread::sleep_for(4 * kHeartbeatPeriod);
    const auto after = read();
    std::vector<std::string> findings;
    for (const auto& [r, beat] : after) {
      if (beat[0] == before.at(r)[0]) {
        findings.push_back(absl::StrCat("rank ", r, " stopped sending heartbeats (dead or hung)"));
      } else if (beat[2] < started_.load()) {
        findings.push_back(absl::StrCat("rank ", r, " is alive ", StepName(beat[1]),
                                        " but has not started this collective (stuck, or slower "
                                        "than the timeout)"));
      }
    }
    if (findings.empty()) return "every peer is alive and has started this collective";
    return absl::StrJoin(findings, "; ");
  } catch (const std::exception&) {
    return options_.rank == 0 ? "the peers cannot be reached"
                              : "rank 0 (the rendezvous store host) is not answering (dead or hung)";
  }
}

void DataParallelGroup::Fail(const std::string& what, const std::string& error) {
  const std::string first_line = error.substr(0, error.find('\n'));
  const std::string peers = options_.world_size > 1 ? DescribePeers() : "";
  TORCH_CHECK(false, "rank ", options_.rank, " of ", options_.world_size, ": collective ", what, " ",
              StepName(step_.load()), " failed: ", first_line, "; ", peers);
}

c10::intrusive_ptr<c10d::Work> DataParallelGroup::StartAllReduceSum(torch::Tensor& t) {
  ++started_;
  std::vector<torch::Tensor> ts = {t};
  return group_->allreduce(ts);
}

void DataParallelGroup::Block(const c10::intrusive_ptr<c10d::Work>& work) {
  // NCCL's wait() only orders the current CUDA stream after the collective;
  // with an explicit timeout it blocks this thread and throws on expiry.
  // Gloo's work enforces the group's timeout itself.
  if (options_.cuda) {
    work->wait(options_.timeout);
  } else {
    work->wait();
  }
}

void DataParallelGroup::Wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
  const BlockedTimer timer(&blocked_ns_);
  try {
    Block(work);
  } catch (const std::exception& e) {
    Fail(what, e.what());
  }
}

void DataParallelGroup::AllReduceSum(torch::Tensor& t, const std::string& what) {
  c10::intrusive_ptr<c10d::Work> work;
  try {
    work = StartAllReduceSum(t);
  } catch (const std::exception& e) {
    Fail(what, e.what());
  }
  Wait(work, what);
}

void DataParallelGroup::Broadcast(std::vector<torch::Tensor>& tensors, const std::string& what) {
  const BlockedTimer timer(&blocked_ns_);
  try {
    for (auto& t : tensors) {
      ++started_;
      // NCCL moves CUDA tensors only; host state takes a trip through the device.
      const bool stage = options_.cuda && !t.is_cuda();
      std::vector<torch::Tensor> one = {stage ? t.to(torch::kCUDA) : t};
      Block(group_->broadcast(one));
      if (stage) t.copy_(one[0].cpu());
    }
  } catch (const std::exception& e) {
    Fail(what, e.what());
  }
}

torch::Tensor DataParallelGroup::AllGather(const torch::Tensor& local, const std::string& what) {
  std::vector<std::vector<torch::Tensor>> out(1);
  for (int r = 0; r < options_.world_size; ++r) out[0].push_back(torch::empty_like(local));
  std::vector<torch::Tensor> in = {local.contiguous()};
  ++started_;
  const BlockedTimer timer(&blocked_ns_);
  try {
    Block(group_->allgather(out, in));
  } catch (const std::exception& e) {
    Fail(what, e.what());
  }
  return torch::cat(out[0], 0);
}

}  // namespace gcl::core
