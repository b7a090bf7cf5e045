// Control-plane figures over real gRPC on loopback with real SQLite files
// (synchronous=FULL, as in production). Prints tables; never run by ctest.
//
//   control_plane_bench [--quick] [--only floor,submit,reads,fleet,schedule] [--dir DIR]
//       [--submits N] [--threads 1,8,32] [--seconds S]        (a) SubmitJob
//       [--jobs N]                                              (b) GetJob/ListJobs
//       [--workers N] [--fleet-seconds S] [--coordinator BIN]   (c) heartbeat fleet
//       [--queued N] [--sched-workers N]                        (d) scheduling
//
// (0) the disk's commit latency (context for every figure below).
// (a) in-process Coordinator: sequential SubmitJob latency, then throughput
//     with T client threads (one channel each) for S seconds per T.
// (b) 100k jobs bulk-loaded through the Registry (93% SUCCEEDED, 1% FAILED,
//     5% QUEUED, 1% RUNNING on 250 4-device workers), then an in-process
//     Coordinator on that file: GetJob and ListJobs (page 50) latencies.
// (c) the real gcl-coordinator binary as a child process; N simulated workers
//     register and heartbeat once a second each, spread evenly over the
//     second (async stubs, one connection per worker); jobs trickle in, get
//     assigned, "run" 2-6 s and complete. Coordinator CPU from
//     /proc/PID/stat (utime+stime) over the window, heartbeat latency.
// (d) pure Schedule() over N queued jobs and M workers, and a full
//     ControlPlane::RefreshQueue with N queued jobs in SQLite.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "gcl/spec/job_spec_yaml.h"
#include "gcl/v1/job.grpc.pb.h"
#include "gcl/v1/worker.grpc.pb.h"
#include "server/coordinator.h"
#include "server/scheduler.h"
#include "storage/registry.h"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

struct Pct {
  size_t n = 0;
  double p50 = 0, p99 = 0, max = 0;
};

Pct Percentiles(std::vector<double> v) {
  Pct p;
  if (v.empty()) return p;
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<size_t>(q * v.size()))]; };
  p.n = v.size();
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = v.back();
  return p;
}

void Row(const std::string& what, const Pct& p, const std::string& extra = "") {
  std::printf("| %-44s | %6zu | %8.3f | %8.3f | %8.3f | %s\n", what.c_str(), p.n, p.p50, p.p99,
              p.max, extra.c_str());
}

void Header(const char* title) {
  std::printf("\n## %s\n| %-44s | %6s | %8s | %8s | %8s | notes\n", title, "what", "n", "p50 ms",
              "p99 ms", "max ms");
  std::printf("|%s|%s|%s|%s|%s|---\n", std::string(46, '-').c_str(), std::string(8, '-').c_str(),
              std::string(10, '-').c_str(), std::string(10, '-').c_str(),
              std::string(10, '-').c_str());
}

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "control_plane_bench: %s\n", what.c_str());
  std::exit(1);
}

constexpr char kSpec[] =
    "name: bench-pre\n"
    "kind: pretrain\n"
    "dataset: {format: synthetic, image_size: 64}\n"
    "model: {base_width: 8, depth: 3}\n"
    "train: {steps: 200, batch: 16, lr: 0.1}\n"
    "resources: {devices: 1}\n";

std::shared_ptr<grpc::Channel> NewChannel(const std::string& addr) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // one connection per channel
  return grpc::CreateCustomChannel(addr, grpc::InsecureChannelCredentials(), args);
}

struct Options {
  std::string dir = (fs::temp_directory_path() / "gcl_control_plane_bench").string();
  std::string only = "floor,submit,reads,fleet,schedule";
  int submits = 2000;
  std::vector<int> threads = {1, 8, 32};
  double seconds = 4;
  int jobs = 100000;
  int workers = 1000;
  double fleet_seconds = 20;
  std::string coordinator;
  int queued = 10000;
  int sched_workers = 1000;
};

std::unique_ptr<gcl::server::Coordinator> StartCoordinator(const std::string& db) {
  gcl::server::Coordinator::Options o;
  o.listen = "127.0.0.1:0";
  o.db_path = db;
  o.lease_ms = 3600 * 1000;  // no worker is swept during (a), (b), (d)
  auto c = gcl::server::Coordinator::Create(o);
  if (!c.ok()) Die(std::string(c.status().message()));
  if (absl::Status s = (*c)->Start(); !s.ok()) Die(std::string(s.message()));
  return std::move(*c);
}

// ---------------------------------------------------------------- (0)

// What one durable commit costs on this disk right now (the floor under any
// SubmitJob latency): sequential Registry::CreateJob, synchronous=FULL.
void BenchFloor(const Options& opt) {
  const std::string db = opt.dir + "/floor.db";
  auto reg = gcl::storage::Registry::Open(db);
  if (!reg.ok()) Die(std::string(reg.status().message()));
  gcl::storage::NewJob j;
  j.name = "floor";
  j.kind = "pretrain";
  j.spec_blob = "x";
  std::vector<double> lat;
  for (int i = 0; i < 300; ++i) {
    const auto s = Clock::now();
    if (!(*reg)->CreateJob(j).ok()) Die("floor");
    lat.push_back(Ms(Clock::now() - s));
  }
  Header("Disk: one SQLite commit (synchronous=FULL), no gRPC");
  Row("Registry::CreateJob, sequential", Percentiles(lat));
}

// ---------------------------------------------------------------- (a)

void BenchSubmit(const Options& opt) {
  const std::string db = opt.dir + "/submit.db";
  auto coord = StartCoordinator(db);
  const std::string addr = coord->address();
  Header("SubmitJob over gRPC (in-process coordinator, SQLite synchronous=FULL, no workers)");

  gcl::v1::SubmitJobRequest req;
  req.set_spec_yaml(kSpec);
  {
    auto stub = gcl::v1::JobService::NewStub(NewChannel(addr));
    std::vector<double> lat;
    const auto t0 = Clock::now();
    for (int i = 0; i < opt.submits; ++i) {
      grpc::ClientContext ctx;
      gcl::v1::SubmitJobResponse resp;
      const auto s = Clock::now();
      grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
      lat.push_back(Ms(Clock::now() - s));
      if (!st.ok()) Die("submit: " + st.error_message());
      if (Ms(Clock::now() - t0) > opt.seconds * 5000) break;  // cap a slow build
    }
    const double secs = Ms(Clock::now() - t0) / 1000;
    char extra[64];
    std::snprintf(extra, sizeof extra, "%.0f submits/s", lat.size() / secs);
    Row("sequential (1 client, 1 in flight)", Percentiles(lat), extra);
  }
  for (int t : opt.threads) {
    std::vector<std::vector<double>> lats(t);
    std::atomic<bool> stop{false};
    std::atomic<int> errors{0};
    std::vector<std::thread> pool;
    const auto t0 = Clock::now();
    for (int k = 0; k < t; ++k) {
      pool.emplace_back([&, k] {
        auto stub = gcl::v1::JobService::NewStub(NewChannel(addr));
        while (!stop.load()) {
          grpc::ClientContext ctx;
          gcl::v1::SubmitJobResponse resp;
          const auto s = Clock::now();
          grpc::Status st = stub->SubmitJob(&ctx, req, &resp);
          lats[k].push_back(Ms(Clock::now() - s));
          if (!st.ok()) errors++;
        }
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(opt.seconds));
    stop = true;
    for (auto& th : pool) th.join();
    const double secs = Ms(Clock::now() - t0) / 1000;
    std::vector<double> all;
    for (auto& l : lats) all.insert(all.end(), l.begin(), l.end());
    char what[64], extra[96];
    std::snprintf(what, sizeof what, "%d concurrent clients", t);
    std::snprintf(extra, sizeof extra, "**%.0f submits/s**, %d errors", all.size() / secs,
                  errors.load());
    Row(what, Percentiles(all), extra);
  }
  auto queued = coord->registry().ListQueued();
  std::printf("(jobs QUEUED at the end: %zu)\n", queued.ok() ? queued->size() : 0);
}

// ---------------------------------------------------------------- (b)

// A real serialized JobSpec (GetJob parses it back).
const std::string& SpecBlob() {
  static const std::string* blob = [] {
    auto spec = gcl::spec::ParseJobSpecYaml(kSpec, "bench.yaml");
    if (!spec.ok()) Die(std::string(spec.status().message()));
    return new std::string(spec->SerializeAsString());
  }();
  return *blob;
}

gcl::storage::NewJob MakeJob(int i, int max_attempts = 3) {
  gcl::storage::NewJob j;
  j.name = "bench-" + std::to_string(i);
  j.kind = (i % 3 == 0) ? "finetune" : "pretrain";
  j.owner = (i % 2 == 0) ? "alice" : "bob";
  j.priority = i % 4 == 0 ? 1 : 0;
  j.max_attempts = max_attempts;
  j.spec_blob = SpecBlob();
  j.spec_text = kSpec;
  return j;
}

struct Loaded {
  std::vector<std::string> all, queued, running;
};

// Bulk-loads `total` jobs with the state mix; synchronous=NORMAL while
// loading (the coordinator reopens the file with FULL).
Loaded LoadJobs(const std::string& db, int total, int workers, int devices_per_worker) {
  gcl::storage::RegistryOptions ro;
  ro.synchronous_full = false;
  auto reg = gcl::storage::Registry::Open(db, ro);
  if (!reg.ok()) Die(std::string(reg.status().message()));
  gcl::storage::Registry& r = **reg;
  for (int w = 0; w < workers; ++w) {
    gcl::storage::WorkerRecord rec;
    rec.id = "w-" + std::to_string(w);
    rec.devices = devices_per_worker;
    rec.lease_expiry_ms = r.NowMs() + 3600 * 1000;
    if (auto s = r.UpsertWorker(rec); !s.ok()) Die(std::string(s.message()));
  }
  std::mt19937_64 rng(7);
  Loaded out;
  int running_slots = workers * devices_per_worker;
  const auto t0 = Clock::now();
  for (int done = 0; done < total;) {
    std::vector<gcl::storage::NewJob> batch;
    for (int k = 0; k < 1000 && done + k < total; ++k) batch.push_back(MakeJob(done + k, 1));
    auto js = r.CreateJobs(batch);
    if (!js.ok()) Die(std::string(js.status().message()));
    for (const auto& j : *js) {
      out.all.push_back(j.id);
      const int roll = static_cast<int>(rng() % 100);
      if (roll < 5) {
        out.queued.push_back(j.id);
        continue;
      }
      const std::string worker = "w-" + std::to_string(rng() % workers);
      if (roll < 6 && running_slots > 0) {
        // RUNNING: placed round-robin so no worker holds more than it has.
        const int slot = workers * devices_per_worker - running_slots;
        --running_slots;
        if (!r.StartAttempt(j.id, "w-" + std::to_string(slot % workers)).ok()) Die("start");
        out.running.push_back(j.id);
        continue;
      }
      auto a = r.StartAttempt(j.id, worker);
      if (!a.ok()) Die(std::string(a.status().message()));
      gcl::storage::AttemptOutcome o;
      o.state =
          roll < 7 ? gcl::storage::AttemptState::kFailed : gcl::storage::AttemptState::kSucceeded;
      o.exit_code = roll < 7 ? 1 : 0;
      o.reason = "bench";
      if (!r.FinishAttempt(j.id, *a, o).ok()) Die("finish");
    }
    done += static_cast<int>(batch.size());
  }
  std::printf("(loaded %zu jobs: %zu QUEUED, %zu RUNNING, rest SUCCEEDED/FAILED in %.1f s)\n",
              out.all.size(), out.queued.size(), out.running.size(), Ms(Clock::now() - t0) / 1000);
  return out;
}

void BenchReads(const Options& opt) {
  const std::string db = opt.dir + "/reads.db";
  Loaded ids = LoadJobs(db, opt.jobs, 250, 4);
  auto coord = StartCoordinator(db);
  auto stub = gcl::v1::JobService::NewStub(NewChannel(coord->address()));
  char title[160];
  std::snprintf(title, sizeof title,
                "GetJob / ListJobs over gRPC at %d stored jobs (%zu QUEUED, %zu RUNNING)", opt.jobs,
                ids.queued.size(), ids.running.size());
  Header(title);
  std::mt19937_64 rng(1);
  auto get = [&](const std::vector<std::string>& pool, const char* what) {
    std::vector<double> lat;
    for (int i = 0; i < 2000; ++i) {
      grpc::ClientContext ctx;
      gcl::v1::GetJobRequest r;
      r.set_id(pool[rng() % pool.size()]);
      gcl::v1::Job job;
      const auto s = Clock::now();
      grpc::Status st = stub->GetJob(&ctx, r, &job);
      lat.push_back(Ms(Clock::now() - s));
      if (!st.ok()) Die("get: " + st.error_message());
    }
    Row(what, Percentiles(lat));
  };
  get(ids.all, "GetJob, random job");
  get(ids.queued, "GetJob, random QUEUED job (queue position)");
  get(ids.running, "GetJob, random RUNNING job (worker id)");

  auto list = [&](std::vector<gcl::v1::JobState> states, bool walk, const char* what) {
    std::vector<double> lat;
    std::string token;
    size_t rows = 0;
    for (int i = 0; i < 200; ++i) {
      grpc::ClientContext ctx;
      gcl::v1::ListJobsRequest r;
      r.set_page_size(50);
      for (auto s : states) r.add_states(s);
      if (walk) r.set_page_token(token);
      gcl::v1::ListJobsResponse resp;
      const auto s = Clock::now();
      grpc::Status st = stub->ListJobs(&ctx, r, &resp);
      lat.push_back(Ms(Clock::now() - s));
      if (!st.ok()) Die("list: " + st.error_message());
      rows += resp.jobs_size();
      token = resp.next_page_token();
    }
    Row(what, Percentiles(lat), std::to_string(rows / 200) + " rows/page");
  };
  list({}, false, "ListJobs page 50, no filter, first page");
  list({}, true, "ListJobs page 50, no filter, keyset walk");
  list({gcl::v1::JOB_STATE_QUEUED}, false, "ListJobs page 50, state=QUEUED");
  list({gcl::v1::JOB_STATE_RUNNING}, false, "ListJobs page 50, state=RUNNING");
  list({gcl::v1::JOB_STATE_QUEUED, gcl::v1::JOB_STATE_RUNNING}, true,
       "ListJobs page 50, state=QUEUED|RUNNING, walk");
  list({gcl::v1::JOB_STATE_SUCCEEDED}, true, "ListJobs page 50, state=SUCCEEDED, walk");
}

// ---------------------------------------------------------------- (c)

struct Child {
  pid_t pid = -1;
  std::string addr;
};

Child SpawnCoordinator(const std::string& bin, const std::string& db, int lease_seconds) {
  const std::string log = db + ".log";
  Child c;
  std::fflush(stdout);  // the child must not inherit buffered output
  std::fflush(stderr);
  c.pid = fork();
  if (c.pid < 0) Die("fork");
  if (c.pid == 0) {
    std::freopen(log.c_str(), "w", stdout);
    std::freopen(log.c_str(), "a", stderr);
    const std::string lease = std::to_string(lease_seconds);
    execl(bin.c_str(), bin.c_str(), "--listen", "127.0.0.1:0", "--db", db.c_str(),
          "--lease-seconds", lease.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  for (int i = 0; i < 200 && c.addr.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    std::ifstream in(log);
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("listening on ", 0) == 0) c.addr = line.substr(13);
    }
  }
  if (c.addr.empty()) Die("gcl-coordinator did not start (see " + log + ")");
  return c;
}

// utime + stime of `pid` in seconds.
double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  long long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::atoll(field.c_str());
    if (i == 15) stime = std::atoll(field.c_str());
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct SimWorker {
  std::string id;
  std::unique_ptr<gcl::v1::WorkerService::Stub> stub;
  std::map<std::string, std::pair<int32_t, Clock::time_point>> running;  // job -> attempt, end
  bool in_flight = false;
};

struct Call {
  enum Kind { kHeartbeat, kComplete };
  Call(Kind k, int w) : kind(k), worker(w), sent(Clock::now()) {}
  Kind kind;
  int worker;
  Clock::time_point sent;
  grpc::ClientContext ctx;
  grpc::Status status;
  gcl::v1::HeartbeatResponse hb;
  gcl::v1::CompleteResponse done;
  std::unique_ptr<grpc::ClientAsyncResponseReader<gcl::v1::HeartbeatResponse>> hb_reader;
  std::unique_ptr<grpc::ClientAsyncResponseReader<gcl::v1::CompleteResponse>> done_reader;
};

void BenchFleet(const Options& opt) {
  std::string bin = opt.coordinator;
  if (bin.empty()) Die("--coordinator BIN is required for the fleet section");
  const std::string db = opt.dir + "/fleet.db";
  Child child = SpawnCoordinator(bin, db, /*lease_seconds=*/10);
  const int n = opt.workers;
  std::vector<SimWorker> workers(n);
  for (int i = 0; i < n; ++i) {
    workers[i].id = "sim-" + std::to_string(i);
    workers[i].stub = gcl::v1::WorkerService::NewStub(NewChannel(child.addr));
  }
  auto jobs = gcl::v1::JobService::NewStub(NewChannel(child.addr));
  auto submit = [&] {
    grpc::ClientContext ctx;
    gcl::v1::SubmitJobRequest r;
    r.set_spec_yaml(kSpec);
    gcl::v1::SubmitJobResponse resp;
    return jobs->SubmitJob(&ctx, r, &resp).ok();
  };
  const auto reg0 = Clock::now();
  for (int i = 0; i < n; ++i) {
    grpc::ClientContext ctx;
    gcl::v1::RegisterRequest r;
    r.set_worker_id(workers[i].id);
    r.set_hostname("sim");
    const int devices = 1 + i % 2;
    for (int d = 0; d < devices; ++d) r.add_devices()->set_id("cpu:" + std::to_string(d));
    gcl::v1::RegisterResponse resp;
    grpc::Status st = workers[i].stub->Register(&ctx, r, &resp);
    if (!st.ok()) Die("register: " + st.error_message());
  }
  const double register_s = Ms(Clock::now() - reg0) / 1000;
  for (int i = 0; i < 50; ++i) submit();

  grpc::CompletionQueue cq;
  std::mutex mu;
  std::vector<double> hb_lat;
  int hb_errors = 0, assigned = 0, completed = 0, submitted = 50;
  bool measuring = false;
  std::thread poller([&] {
    void* tag = nullptr;
    bool ok = false;
    while (cq.Next(&tag, &ok)) {
      std::unique_ptr<Call> call(static_cast<Call*>(tag));
      std::lock_guard<std::mutex> lock(mu);
      SimWorker& w = workers[call->worker];
      if (call->kind == Call::kComplete) {
        if (call->status.ok()) completed++;
        continue;
      }
      w.in_flight = false;
      if (measuring) hb_lat.push_back(Ms(Clock::now() - call->sent));
      if (!call->status.ok()) {
        hb_errors++;
        continue;
      }
      for (const auto& a : call->hb.assignments()) {
        const auto run =
            std::chrono::milliseconds(2000 + (std::hash<std::string>()(a.job_id()) % 4000));
        w.running[a.job_id()] = {a.attempt(), Clock::now() + run};
        assigned++;
      }
      for (const auto& id : call->hb.cancel_job_ids()) w.running.erase(id);
    }
  });

  // Heartbeats: worker i at t0 + i/n s + k s. Jobs trickle in at 5/s.
  const double warmup_s = 3;
  const double total_s = warmup_s + opt.fleet_seconds;
  const auto t0 = Clock::now();
  double cpu0 = 0;
  Clock::time_point m0;
  int64_t slot = 0;
  std::atomic<bool> done{false};
  std::atomic<int> trickled{0};
  std::thread submitter([&] {
    while (!done.load()) {
      if (submit()) trickled++;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  while (true) {
    const auto due = t0 + std::chrono::microseconds(static_cast<int64_t>(slot * 1e6 / n));
    std::this_thread::sleep_until(due);
    const double elapsed = Ms(Clock::now() - t0) / 1000;
    if (elapsed >= total_s) break;
    if (!measuring && elapsed >= warmup_s) {
      std::lock_guard<std::mutex> lock(mu);
      measuring = true;
      cpu0 = CpuSeconds(child.pid);
      m0 = Clock::now();
    }
    const int i = static_cast<int>(slot % n);
    ++slot;
    std::lock_guard<std::mutex> lock(mu);
    SimWorker& w = workers[i];
    if (w.in_flight) continue;  // the previous heartbeat has not come back
    for (auto it = w.running.begin(); it != w.running.end();) {
      if (it->second.second > Clock::now()) {
        ++it;
        continue;
      }
      auto* c = new Call(Call::kComplete, i);
      gcl::v1::CompleteRequest r;
      r.set_worker_id(w.id);
      r.set_job_id(it->first);
      r.set_attempt(it->second.first);
      c->done_reader = w.stub->AsyncComplete(&c->ctx, r, &cq);
      c->done_reader->Finish(&c->done, &c->status, c);
      it = w.running.erase(it);
    }
    auto* c = new Call(Call::kHeartbeat, i);
    gcl::v1::HeartbeatRequest r;
    r.set_worker_id(w.id);
    for (const auto& [id, run] : w.running) r.add_running_job_ids(id);
    c->hb_reader = w.stub->AsyncHeartbeat(&c->ctx, r, &cq);
    c->hb_reader->Finish(&c->hb, &c->status, c);
    w.in_flight = true;
  }
  const double cpu = CpuSeconds(child.pid) - cpu0;
  const double wall = Ms(Clock::now() - m0) / 1000;
  done = true;
  submitter.join();
  submitted += trickled.load();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  cq.Shutdown();
  poller.join();
  kill(child.pid, SIGTERM);
  int status = 0;
  waitpid(child.pid, &status, 0);

  char title[160];
  std::snprintf(title, sizeof title,
                "Fleet: %d simulated workers, 1 heartbeat/s each, real gcl-coordinator child", n);
  Header(title);
  std::lock_guard<std::mutex> lock(mu);
  char extra[160];
  std::snprintf(extra, sizeof extra, "%.0f heartbeats/s, %d errors", hb_lat.size() / wall,
                hb_errors);
  Row("Heartbeat latency (client side)", Percentiles(hb_lat), extra);
  std::printf("coordinator CPU over %.1f s: %.2f s = **%.3f cores** (utime+stime)\n", wall, cpu,
              cpu / wall);
  std::printf("registering %d workers took %.1f s; jobs submitted %d, assigned %d, completed %d\n",
              n, register_s, submitted, assigned, completed);
}

// ---------------------------------------------------------------- (d)

void BenchSchedule(const Options& opt) {
  std::mt19937_64 rng(3);
  std::vector<gcl::server::QueuedJob> jobs;
  for (int i = 0; i < opt.queued; ++i) {
    jobs.push_back({"j-" + std::to_string(i), static_cast<int32_t>(rng() % 4), i,
                    static_cast<int64_t>(1 + rng() % 4)});
  }
  std::vector<gcl::server::WorkerCapacity> caps;
  for (int w = 0; w < opt.sched_workers; ++w) {
    const int64_t total = 1 + static_cast<int64_t>(rng() % 8);
    caps.push_back({"w-" + std::to_string(w), total, static_cast<int64_t>(rng() % (total + 1))});
  }
  char title[160];
  std::snprintf(title, sizeof title, "Scheduling decision: %d queued jobs, %d workers", opt.queued,
                opt.sched_workers);
  Header(title);
  std::vector<double> lat;
  size_t placed = 0;
  for (int i = 0; i < 20; ++i) {
    const auto s = Clock::now();
    gcl::server::SchedulePlan plan = gcl::server::Schedule(jobs, caps);
    lat.push_back(Ms(Clock::now() - s));
    placed = plan.placements.size();
  }
  Row("Schedule() (pure, in memory)", Percentiles(lat), std::to_string(placed) + " placed");

  // Full pass over SQLite: queued jobs + workers (2 devices each) loaded, then
  // RefreshQueue on a coordinator with that file.
  const std::string db = opt.dir + "/schedule.db";
  {
    gcl::storage::RegistryOptions ro;
    ro.synchronous_full = false;
    auto reg = gcl::storage::Registry::Open(db, ro);
    if (!reg.ok()) Die(std::string(reg.status().message()));
    for (int w = 0; w < opt.sched_workers; ++w) {
      gcl::storage::WorkerRecord rec;
      rec.id = "w-" + std::to_string(w);
      rec.devices = 2;
      rec.lease_expiry_ms = (*reg)->NowMs() + 3600 * 1000;
      if (!(*reg)->UpsertWorker(rec).ok()) Die("worker");
    }
    for (int done = 0; done < opt.queued;) {
      std::vector<gcl::storage::NewJob> batch;
      for (int k = 0; k < 1000 && done < opt.queued; ++k, ++done) batch.push_back(MakeJob(done));
      if (!(*reg)->CreateJobs(batch).ok()) Die("jobs");
    }
  }
  const auto s0 = Clock::now();
  auto coord = StartCoordinator(db);  // Start() runs the first pass (writes every reason)
  const double first = Ms(Clock::now() - s0);
  lat.clear();
  for (int i = 0; i < 10; ++i) {
    const auto s = Clock::now();
    auto plan = coord->plane().RefreshQueue();
    lat.push_back(Ms(Clock::now() - s));
    if (!plan.ok()) Die(std::string(plan.status().message()));
    placed = plan->placements.size();
  }
  char extra[96];
  std::snprintf(extra, sizeof extra, "%zu placed; first pass (coordinator start) %.0f ms", placed,
                first);
  Row("ControlPlane::RefreshQueue (SQLite), steady", Percentiles(lat), extra);
}

std::vector<int> ParseInts(const std::string& s) {
  std::vector<int> out;
  std::stringstream in(s);
  std::string part;
  while (std::getline(in, part, ',')) out.push_back(std::atoi(part.c_str()));
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  opt.coordinator =
      (fs::path(argv[0]).parent_path() / ".." / "server" / "gcl-coordinator").string();
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) Die(a + " needs a value");
      return argv[++i];
    };
    if (a == "--quick") {
      opt.submits = 300;
      opt.seconds = 1.5;
      opt.jobs = 20000;
      opt.workers = 200;
      opt.fleet_seconds = 5;
      opt.queued = 2000;
      opt.sched_workers = 200;
    } else if (a == "--only") {
      opt.only = next();
    } else if (a == "--dir") {
      opt.dir = next();
    } else if (a == "--submits") {
      opt.submits = std::atoi(next().c_str());
    } else if (a == "--threads") {
      opt.threads = ParseInts(next());
    } else if (a == "--seconds") {
      opt.seconds = std::atof(next().c_str());
    } else if (a == "--jobs") {
      opt.jobs = std::atoi(next().c_str());
    } else if (a == "--workers") {
      opt.workers = std::atoi(next().c_str());
    } else if (a == "--fleet-seconds") {
      opt.fleet_seconds = std::atof(next().c_str());
    } else if (a == "--coordinator") {
      opt.coordinator = next();
    } else if (a == "--queued") {
      opt.queued = std::atoi(next().c_str());
    } else if (a == "--sched-workers") {
      opt.sched_workers = std::atoi(next().c_str());
    } else {
      Die("unknown argument '" + a + "'");
    }
  }
  fs::remove_all(opt.dir);
  fs::create_directories(opt.dir);
  std::printf("control_plane_bench: %u cores, dir %s\n", std::thread::hardware_concurrency(),
              opt.dir.c_str());
  auto want = [&](const char* s) { return opt.only.find(s) != std::string::npos; };
  if (want("floor")) BenchFloor(opt);
  if (want("submit")) BenchSubmit(opt);
  if (want("reads")) BenchReads(opt);
  if (want("fleet")) BenchFleet(opt);
  if (want("schedule")) BenchSchedule(opt);
  fs::remove_all(opt.dir);
  return 0;
}
