#include "worker/agent/agent.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gcl/base/sha256.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/variants.h"
#include "worker/agent/checkpoint_fetch.h"
#include "worker/agent/gpu_discovery.h"
#include "worker/agent/metrics_tail.h"
#include "worker/agent/process_supervisor.h"
#include "worker/agent/run_results.h"
#include "worker/agent/spec_yaml_writer.h"

namespace gcl::agent {
namespace fs = std::filesystem;
using gcl::v1::Assignment;

namespace {

int64_t NowMs() { return absl::ToUnixMillis(absl::Now()); }

absl::Status FromGrpc(const grpc::Status& s, const std::string& what) {
  if (s.ok()) return absl::OkStatus();
  // absl and gRPC share the code numbering (ecosystem-notes.md section 1).
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                      absl::StrCat(what, ": ", s.error_message()));
}

void AgentLog(const std::string& text) { std::fprintf(stderr, "gcl-worker: %s\n", text.c_str()); }

std::string HostName() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

const char* KindCommand(gcl::v1::Kind kind) {
  switch (kind) {
    case gcl::v1::KIND_PRETRAIN: return "pretrain";
    case gcl::v1::KIND_FINETUNE: return "finetune";
    case gcl::v1::KIND_EXPERIMENT: return "experiment";
    default: return nullptr;
  }
}

// "step-00000100.ckpt" -> 100; -1 when not a checkpoint name.
int64_t CheckpointStep(const std::string& name) {
  if (name.rfind("step-", 0) != 0 || name.size() <= 10 ||
      name.compare(name.size() - 5, 5, ".ckpt") != 0) {
    return -1;
  }
  int64_t step = 0;
  for (size_t i = 5; i < name.size() - 5; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

// The CUDA_VISIBLE_DEVICES value for a device id this agent registered.
std::string CudaPinOf(const std::map<std::string, std::string>& pins, const std::string& id) {
  auto it = pins.find(id);
  if (it != pins.end()) return it->second;
  const size_t colon = id.rfind(':');  // "cuda:3" -> "3"
  return colon == std::string::npos ? id : id.substr(colon + 1);
}

// The first of `asg`'s devices that is a MIG instance; "" when none.
std::string FirstMigDevice(const std::map<std::string, std::string>& pins, const Assignment& asg) {
  for (const std::string& id : asg.device_ids()) {
    if (absl::StartsWith(CudaPinOf(pins, id), "MIG-")) return id;
  }
  return "";
}

// GPU ranks are pinned to one device each; CPU ranks split the threads.
bool UsesCuda(const Assignment& asg) {
  if (asg.spec().resources().device_type() == gcl::v1::DEVICE_TYPE_CUDA) return true;
  for (const std::string& id : asg.device_ids()) {
    if (id.rfind("cuda:", 0) == 0) return true;
  }
  return false;
}

}  // namespace

struct Agent::Attempt {
  Assignment assignment;
  std::thread thread;
  std::atomic<bool> finished{false};
  std::mutex mu;
  // One per local rank, in rank order. Guarded by mu.
  std::vector<std::unique_ptr<ProcessSupervisor>> processes;
  bool cancelled = false;                      // guarded by mu
  std::vector<gcl::v1::LogLine> logs;          // guarded by mu: queued for ReportProgress
  absl::Time last_activity = absl::Now();      // guarded by mu
};

std::vector<gcl::v1::Device> Agent::LocalDevices() { return LocalDevices(1); }

std::vector<gcl::v1::Device> Agent::LocalDevices(int cpu_devices) {
  cpu_devices = std::max(1, cpu_devices);
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  std::vector<gcl::v1::Device> out;
  for (int i = 0; i < cpu_devices; ++i) {
    gcl::v1::Device cpu;
    cpu.set_id(absl::StrCat("cpu:", i));
    cpu.set_type(gcl::v1::DEVICE_TYPE_CPU);
    if (pages > 0 && page > 0) {
      cpu.set_memory_bytes(static_cast<int64_t>(pages) * page / cpu_devices);
    }
    out.push_back(std::move(cpu));
  }
  return out;
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(AgentOptions options) {
  if (options.coordinator.empty()) return absl::InvalidArgumentError("--coordinator is required");
  auto creds = options.credentials ? options.credentials : grpc::InsecureChannelCredentials();
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // A restarted coordinator must be found within seconds, not after gRPC's
  // default reconnect backoff (up to 120 s).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 500);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 3000);
  auto channel = grpc::CreateCustomChannel(options.coordinator, creds, args);
  return Create(std::move(options), gcl::v1::WorkerService::NewStub(channel));
}

absl::StatusOr<std::unique_ptr<Agent>> Agent::Create(
    AgentOptions options, std::unique_ptr<gcl::v1::WorkerService::StubInterface> stub) {
  if (options.work_dir.empty()) return absl::InvalidArgumentError("--work-dir is required");
  if (options.trainer_path.empty()) return absl::InvalidArgumentError("--trainer is required");
  if (::access(options.trainer_path.c_str(), X_OK) != 0) {
    return absl::NotFoundError(
        absl::StrCat("trainer ", options.trainer_path, " is not an executable file"));
  }
  std::error_code ec;
  fs::create_directories(options.work_dir, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot create work dir ", options.work_dir, ": ", ec.message()));
  }
  // Trainers run inside their attempt folder, so every path handed to them
  // (spec, output, metrics) must not depend on the agent's working directory.
  options.work_dir = fs::absolute(options.work_dir).lexically_normal().string();
  if (options.worker_id.empty()) options.worker_id = HostName();
  if (options.chunk_bytes <= 0) return absl::InvalidArgumentError("chunk_bytes must be > 0");
  if (options.rendezvous_port_min < 1 || options.rendezvous_port_max > 65535 ||
      options.rendezvous_port_min > options.rendezvous_port_max) {
    return absl::InvalidArgumentError(absl::StrCat("rendezvous ports ", options.rendezvous_port_min,
                                                   "-", options.rendezvous_port_max,
                                                   ": not a port range"));
  }
  if (options.threads < 0 || options.cpu_devices < 0) {
    return absl::InvalidArgumentError("threads and cpu devices must be >= 0");
  }
  GCL_ASSIGN_OR_RETURN(GpuRequest gpu_request, ParseGpuRequest(options.gpus));
  std::vector<gcl::v1::Device> devices;
  std::map<std::string, std::string> cuda_pins;
  if (options.cpu_devices > 0) {
    if (gpu_request.mode == GpuRequest::Mode::kList) {
      return absl::InvalidArgumentError(
          "--gpus LIST and --cpu-devices exclude each other (a worker offers one device type)");
    }
    devices = LocalDevices(options.cpu_devices);
  } else {
    GCL_ASSIGN_OR_RETURN(std::vector<GpuInfo> gpus,
                         DiscoverGpus(gpu_request, std::getenv("CUDA_VISIBLE_DEVICES"), AgentLog));
    devices = gpus.empty() ? LocalDevices(1) : ToDevices(gpus);
    for (const GpuInfo& g : gpus) cuda_pins[DeviceId(g)] = CudaPin(g);
  }
  std::unique_ptr<MetricsExporter> metrics;
  if (!options.metrics_listen.empty()) {
    GCL_ASSIGN_OR_RETURN(metrics, MetricsExporter::Create({options.metrics_listen,
                                                           options.metrics_grace, nullptr}));
    AgentLog(absl::StrCat("serving /metrics on ", metrics->address()));
  }
  auto agent = std::unique_ptr<Agent>(new Agent(std::move(options), std::move(stub)));
  agent->metrics_ = std::move(metrics);
  agent->devices_ = std::move(devices);
  agent->cuda_pins_ = std::move(cuda_pins);
  return agent;
}

std::string Agent::metrics_address() const { return metrics_ ? metrics_->address() : ""; }

Agent::Agent(AgentOptions options, std::unique_ptr<gcl::v1::WorkerService::StubInterface> stub)
    : options_(std::move(options)), stub_(std::move(stub)), token_(options_.token) {}

Agent::~Agent() {
  Shutdown();
  std::map<std::string, std::unique_ptr<Attempt>> attempts;
  {
    std::lock_guard<std::mutex> lock(mu_);
    attempts.swap(attempts_);
  }
  for (auto& [id, a] : attempts) {
    if (a->thread.joinable()) a->thread.join();
  }
}

void Agent::SetToken(std::string token) {
  std::lock_guard<std::mutex> lock(token_mu_);
  token_ = std::move(token);
}

void Agent::SetupContext(grpc::ClientContext* ctx, bool deadline) const {
  std::string token;
  {
    std::lock_guard<std::mutex> lock(token_mu_);
    token = token_;
  }
  if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
  if (deadline) ctx->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
}

void Agent::Shutdown() {
  std::vector<Attempt*> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shutdown_ = true;
    for (auto& [id, a] : attempts_) running.push_back(a.get());
  }
  cv_.notify_all();
  for (Attempt* a : running) {
    std::lock_guard<std::mutex> lock(a->mu);
    a->cancelled = true;
    for (auto& p : a->processes) p->Kill(options_.kill_grace, "agent shutting down: killed");
  }
}

std::vector<std::string> Agent::RunningJobIds() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::string> ids;
  for (auto& [id, a] : attempts_) {
    if (!a->finished) ids.push_back(id);
  }
  return ids;
}

absl::Status Agent::Register() {
  gcl::v1::RegisterRequest req;
  req.set_worker_id(options_.worker_id);
  req.set_hostname(HostName());
  req.set_advertise_address(options_.advertise_address.empty() ? HostName()
                                                               : options_.advertise_address);
  req.set_rendezvous_port_min(options_.rendezvous_port_min);
  req.set_rendezvous_port_max(options_.rendezvous_port_max);
  for (const auto& d : devices_) *req.add_devices() = d;
  (*req.mutable_labels())["cpu_cores"] = absl::StrCat(std::thread::hardware_concurrency());
  for (const auto& id : RunningJobIds()) req.add_running_job_ids(id);
  req.set_metrics_address(metrics_address());
  gcl::v1::RegisterResponse resp;
  grpc::ClientContext ctx;
  SetupContext(&ctx, true);
  GCL_RETURN_IF_ERROR(FromGrpc(stub_->Register(&ctx, req, &resp), "Register"));
  if (resp.heartbeat_seconds() > 0) heartbeat_interval_ = absl::Seconds(resp.heartbeat_seconds());
  return absl::OkStatus();
}

absl::Status Agent::Run() {
  bool registered = false, ever_registered = false;
  absl::Duration backoff = absl::Seconds(1);
  while (true) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (shutdown_) break;
    }
    absl::Duration wait = heartbeat_interval_;
    if (!registered) {
      absl::Status s = Register();
      if (s.ok()) {
        registered = ever_registered = true;
        backoff = absl::Seconds(1);
        AgentLog(absl::StrCat("registered as ", options_.worker_id, " with ",
                              options_.coordinator));
        wait = absl::ZeroDuration();
      } else if ((absl::IsUnauthenticated(s) || absl::IsPermissionDenied(s)) && !ever_registered) {
        // At start, retrying cannot fix a token: stop with the coordinator's
        // reason. Later (re-registering after LOST) the token may be being
        // rotated: --token-file or a new tokens file fixes it without a
        // restart, so keep trying, and keep the running trainers.
        return absl::Status(s.code(), absl::StrCat(s.message(), " (gcl-worker needs a token with ",
                                                   "role worker or admin: --token, --token-file or GCL_TOKEN)"));
      } else {
        AgentLog(absl::StrCat(s.message(), "; retrying in ", absl::FormatDuration(backoff)));
        wait = backoff;
        backoff = std::min(backoff * 2, absl::Seconds(30));
      }
    } else {
      gcl::v1::HeartbeatRequest req;
      req.set_worker_id(options_.worker_id);
      for (const auto& id : RunningJobIds()) req.add_running_job_ids(id);
      gcl::v1::HeartbeatResponse resp;
      grpc::ClientContext ctx;
      SetupContext(&ctx, true);
      const grpc::Status s = stub_->Heartbeat(&ctx, req, &resp);
      if (s.ok()) {
        HandleHeartbeat(resp);
      } else if (s.error_code() == grpc::StatusCode::NOT_FOUND ||
                 s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) {
        // Forgotten, or declared LOST (its attempts were requeued): register again.
        AgentLog(absl::StrCat("Heartbeat: ", s.error_message(), "; registering again"));
        registered = false;
        wait = absl::ZeroDuration();
      } else {
        AgentLog(absl::StrCat("Heartbeat: ", s.error_message()));
      }
    }
    ReapFinished();
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, absl::ToChronoNanoseconds(wait), [this] { return shutdown_; });
  }
  return absl::OkStatus();
}

void Agent::HandleHeartbeat(const gcl::v1::HeartbeatResponse& response) {
  for (const Assignment& a : response.assignments()) StartAttempt(a);
  for (const std::string& id : response.cancel_job_ids()) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = attempts_.find(id);
    if (it == attempts_.end()) continue;
    Attempt* a = it->second.get();
    std::lock_guard<std::mutex> alock(a->mu);
    a->cancelled = true;
    for (auto& p : a->processes) p->Kill(options_.kill_grace, "cancelled: killed");
  }
}

void Agent::StartAttempt(const Assignment& assignment) {
  std::lock_guard<std::mutex> lock(mu_);
  if (shutdown_) return;
  if (ended_.count({assignment.job_id(), assignment.attempt()}) > 0) return;
  auto it = attempts_.find(assignment.job_id());
  if (it != attempts_.end()) {
    if (it->second->assignment.attempt() == assignment.attempt()) return;  // already running
    // The old attempt is still ending: the coordinator sends this one again.
    if (!it->second->finished) {
      // Only the current attempt is ever assigned: the old one is stale (e.g.
      // the survivor of a gang whose attempt ended) and must not hold the devices.
      Attempt* old = it->second.get();
      if (old->assignment.attempt() < assignment.attempt()) {
        std::lock_guard<std::mutex> alock(old->mu);
        old->cancelled = true;
        for (auto& p : old->processes) {
          p->Kill(options_.kill_grace,
                  absl::StrCat("superseded by attempt ", assignment.attempt(), ": killed"));
        }
      }
      return;
    }
    it->second->thread.join();
    attempts_.erase(it);
  }
  auto a = std::make_unique<Attempt>();
  a->assignment = assignment;
  Attempt* raw = a.get();
  attempts_[assignment.job_id()] = std::move(a);
  raw->thread = std::thread([this, raw] { RunAttempt(raw); });
}

void Agent::ReapFinished() {
  std::vector<std::unique_ptr<Attempt>> done;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = attempts_.begin(); it != attempts_.end();) {
      if (it->second->finished) {
        done.push_back(std::move(it->second));
        it = attempts_.erase(it);
      } else {
        ++it;
      }
    }
  }
  for (auto& a : done) a->thread.join();
}

void Agent::RunAttempt(Attempt* attempt) {
  const Assignment& asg = attempt->assignment;
  const std::string& job_id = asg.job_id();
  const int32_t n = asg.attempt();
  auto log = [attempt, n](const std::string& stream, std::string_view text) {
    gcl::v1::LogLine line;
    line.set_attempt(n);
    line.set_time_ms(NowMs());
    line.set_stream(stream);
    line.set_text(std::string(text));
    std::lock_guard<std::mutex> lock(attempt->mu);
    attempt->logs.push_back(std::move(line));
  };

  // Progress stream, (re)opened lazily: a broken stream must not stop the trainer.
  std::unique_ptr<grpc::ClientContext> stream_ctx;
  std::unique_ptr<grpc::ClientWriterInterface<gcl::v1::ProgressReport>> stream;
  gcl::v1::ReportProgressResponse stream_resp;
  bool stale = false;  // the coordinator no longer wants this attempt
  bool stream_failing = false;
  auto close_stream = [&]() {
    if (!stream) return;
    stream->WritesDone();
    const grpc::Status s = stream->Finish();
    if (s.error_code() == grpc::StatusCode::FAILED_PRECONDITION) stale = true;
    // One line per outage, not one per dropped report.
    if (!s.ok() && !stream_failing) {
      AgentLog(absl::StrCat(job_id, ": ReportProgress: ", s.error_message(),
                            "; reports are dropped until the coordinator answers"));
    }
    stream_failing = !s.ok();
    stream.reset();
    stream_ctx.reset();
  };
  auto send = [&](gcl::v1::ProgressReport report) {
    report.set_job_id(job_id);
    report.set_attempt(n);
    if (!stream) {
      stream_ctx = std::make_unique<grpc::ClientContext>();
      SetupContext(stream_ctx.get(), false);
      stream = stub_->ReportProgress(stream_ctx.get(), &stream_resp);
    }
    if (!stream->Write(report)) close_stream();  // report dropped; reopened on the next one
  };
  auto drain_logs = [&]() {
    std::vector<gcl::v1::LogLine> logs;
    {
      std::lock_guard<std::mutex> lock(attempt->mu);
      logs.swap(attempt->logs);
    }
    for (auto& l : logs) {
      gcl::v1::ProgressReport r;
      *r.mutable_log() = std::move(l);
      send(std::move(r));
    }
  };

  const fs::path dir = fs::path(options_.work_dir) / "jobs" / job_id / absl::StrCat("attempt-", n);
  const fs::path out_dir = dir / "out";
  const std::string metrics_path = (dir / "metrics.jsonl").string();
  ExitInfo exit;
  exit.exit_code = -1;
  const int local_ranks = std::max(1, asg.device_ids_size());
  const int world_size = std::max(1, asg.world_size());
  const bool gpu = UsesCuda(asg);
  // Declared before the processes whose reader threads write it.
  std::vector<std::string> last_stderr(static_cast<size_t>(local_ranks));  // guarded by attempt->mu
  std::vector<std::unique_ptr<ProcessSupervisor>> processes;
  std::error_code ec;
  fs::create_directories(out_dir, ec);
  const char* command = KindCommand(asg.spec().kind());
  gcl::v1::JobSpec spec = asg.spec();
  std::set<std::string> uploaded;  // checkpoint files the coordinator already has
  auto setup = [this](grpc::ClientContext* ctx) { SetupContext(ctx, false); };
  if (!ec && command != nullptr && !asg.resume_checkpoint_id().empty() && asg.rank() == 0) {
    // Into the folder gcl-train resumes from; a failed fetch costs progress, not correctness.
    absl::StatusOr<std::string> path = FetchCheckpoint(*stub_, setup, asg.resume_checkpoint_id(),
                                                       (out_dir / "checkpoints").string());
    if (path.ok()) {
      uploaded.insert(*path);
      log("agent", absl::StrCat("resuming from checkpoint ", asg.resume_checkpoint_id(), " (",
                                fs::path(*path).filename().string(), ")"));
    } else {
      log("agent", absl::StrCat("cannot fetch checkpoint ", asg.resume_checkpoint_id(), ": ",
                                path.status().message(), "; starting from step 0"));
    }
  }
  std::string fetch_error;
  if (!ec && spec.init().has_checkpoint() && spec.init().checkpoint().rfind("c-", 0) == 0) {
    absl::StatusOr<std::string> path =
        FetchCheckpoint(*stub_, setup, spec.init().checkpoint(), (dir / "init").string());
    if (path.ok()) {
      log("agent", absl::StrCat("initialising from checkpoint ", spec.init().checkpoint()));
      spec.mutable_init()->set_checkpoint(*path);
    } else {
      fetch_error = absl::StrCat("agent: init checkpoint: ", path.status().message());
    }
  }
  if (ec) {
    exit.reason = absl::StrCat("agent: cannot create ", out_dir.string(), ": ", ec.message());
  } else if (command == nullptr) {
    exit.reason = "agent: the job spec has no kind";
  } else if (!fetch_error.empty()) {
    exit.reason = fetch_error;
  } else if (const std::string mig = FirstMigDevice(cuda_pins_, asg);
             world_size > 1 && !mig.empty()) {
    exit.reason = absl::StrCat("agent: rank ", asg.rank(), " of ", world_size,
                               " was placed on MIG instance ", mig,
                               ", and NCCL cannot connect ranks on MIG instances: multi-rank "
                               "jobs need whole GPUs");
  } else {
    const std::string spec_path = (dir / "spec.yaml").string();
    std::ofstream(spec_path, std::ios::trunc) << JobSpecToYaml(spec);
    for (int i = 0; i < local_ranks && exit.reason.empty(); ++i) {
      const int rank = asg.rank() + i;
      // Only global rank 0 writes into out/ and metrics.jsonl (the trainer
      // contract); the others get folders of their own all the same.
      const fs::path rank_out = rank == 0 ? out_dir : dir / absl::StrCat("out-rank-", rank);
      const std::string rank_metrics =
          rank == 0 ? metrics_path : (dir / absl::StrCat("metrics-rank-", rank, ".jsonl")).string();
      fs::create_directories(rank_out, ec);
      LaunchOptions lo;
      lo.argv = {options_.trainer_path, command, "--spec", spec_path, "--output", rank_out.string(),
                 "--metrics", rank_metrics, "--quiet"};
      if (!gpu && (local_ranks > 1 || options_.threads > 0)) {
        const int threads = options_.threads > 0
                                ? options_.threads
                                : static_cast<int>(std::thread::hardware_concurrency());
        lo.argv.push_back("--threads");
        lo.argv.push_back(absl::StrCat(std::max(1, threads / local_ranks)));
      }
      lo.env = {absl::StrCat("GCL_JOB_ID=", job_id), absl::StrCat("GCL_ATTEMPT=", n),
                absl::StrCat("GCL_RANK=", rank), absl::StrCat("GCL_LOCAL_RANK=", i),
                absl::StrCat("GCL_WORLD_SIZE=", world_size),
                absl::StrCat("GCL_RENDEZVOUS=", asg.rendezvous())};
      if (gpu) {
        // nvidia-smi's index (PCI bus order; CUDA's default order is fastest
        // first) or a MIG instance's uuid.
        lo.env.push_back(
            absl::StrCat("CUDA_VISIBLE_DEVICES=", CudaPinOf(cuda_pins_, asg.device_ids(i))));
        lo.env.push_back("CUDA_DEVICE_ORDER=PCI_BUS_ID");
      }
      lo.working_dir = dir.string();
      const std::string prefix = world_size > 1 ? absl::StrCat("[rank ", rank, "] ") : "";
      lo.on_stdout = [log, prefix](std::string_view l) { log("stdout", prefix + std::string(l)); };
      lo.on_stderr = [log, prefix, attempt, &last_stderr, i](std::string_view l) {
        {
          std::lock_guard<std::mutex> lock(attempt->mu);
          last_stderr[i] = std::string(l);
        }
        log("stderr", prefix + std::string(l));
      };
      auto launched = ProcessSupervisor::Launch(std::move(lo));
      if (!launched.ok()) {
        exit.reason = absl::StrCat("agent: ", world_size > 1 ? absl::StrCat("rank ", rank, ": ") : "",
                                   launched.status().message());
      } else {
        processes.push_back(*std::move(launched));
      }
    }
    if (!exit.reason.empty()) processes.clear();  // all ranks or none (kills those started)
  }

  MetricsTail tail(metrics_path);
  std::map<std::string, int> upload_failures;
  auto forward_metrics = [&](bool final) {
    absl::StatusOr<std::vector<gcl::v1::MetricsPoint>> points;
    {
      // tail.last_growth() is read by the watchdog thread under this lock.
      std::lock_guard<std::mutex> lock(attempt->mu);
      points = final ? tail.Flush() : tail.Poll();
    }
    if (!points.ok()) return;
    for (auto& p : *points) {
      gcl::v1::ProgressReport progress;
      auto* pr = progress.mutable_progress();
      pr->set_step(p.step());
      pr->set_total_steps(asg.spec().train().steps());
      pr->set_phase(command != nullptr ? command : "");
      for (const auto& s : p.samples()) {
        if (s.name() == "gcl_train_loss" &&
            (s.labels().empty() || s.labels().count("term") == 0 || s.labels().at("term") == "total")) {
          pr->set_loss(s.value());
        }
        if (s.name() == "gcl_train_step_seconds") pr->set_step_seconds(s.value());
      }
      if (metrics_) metrics_->Observe(job_id, p);
      gcl::v1::ProgressReport metrics;
      *metrics.mutable_metrics() = std::move(p);
      send(std::move(metrics));
      send(std::move(progress));
    }
  };
  auto upload_new_checkpoints = [&]() {
    std::error_code iec;
    if (!fs::is_directory(out_dir, iec)) return;
    std::vector<fs::path> found;
    for (auto it = fs::recursive_directory_iterator(out_dir, iec);
         !iec && it != fs::recursive_directory_iterator(); it.increment(iec)) {
      const std::string name = it->path().filename().string();
      if (CheckpointStep(name) < 0 || uploaded.count(it->path().string())) continue;
      // The sidecar is written after the checkpoint: its presence means complete.
      if (!fs::exists(it->path().string() + ".sha256", iec)) continue;
      found.push_back(it->path());
    }
    std::sort(found.begin(), found.end());
    for (const fs::path& path : found) {
      absl::Status s = [&]() -> absl::Status {
        std::ifstream side(path.string() + ".sha256");
        std::string want;
        side >> want;
        // Possibly still being written by a non-atomic writer: retried next scan.
        if (want.size() != 64) return absl::UnavailableError("malformed sha256 sidecar");
        std::ifstream in(path, std::ios::binary);
        if (!in) return absl::UnavailableError("cannot open");
        gcl::v1::CheckpointUpload head;
        auto* c = head.mutable_checkpoint();
        c->set_job_id(job_id);
        c->set_attempt(n);
        c->set_step(CheckpointStep(path.filename().string()));
        c->set_size_bytes(static_cast<int64_t>(fs::file_size(path)));
        c->set_sha256(want);
        c->set_created_ms(NowMs());
        grpc::ClientContext ctx;
        SetupContext(&ctx, false);
        gcl::v1::UploadCheckpointResponse resp;
        auto writer = stub_->UploadCheckpoint(&ctx, &resp);
        bool ok = writer->Write(head);
        Sha256 digest;
        std::string buf(static_cast<size_t>(options_.chunk_bytes), '\0');
        while (ok && in) {
          in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
          const std::streamsize got = in.gcount();
          if (got <= 0) break;
          gcl::v1::CheckpointUpload chunk;
          chunk.set_data(buf.data(), static_cast<size_t>(got));
          digest.Update(std::string_view(buf.data(), static_cast<size_t>(got)));
          ok = writer->Write(chunk);
        }
        if (ok && digest.HexDigest() != want) {
          ctx.TryCancel();  // do not let a corrupt file be stored
          writer->Finish();
          return absl::DataLossError("sha256 does not match its sidecar");
        }
        writer->WritesDone();
        return FromGrpc(writer->Finish(), "UploadCheckpoint");
      }();
      if (s.ok()) {
        uploaded.insert(path.string());
        log("agent", absl::StrCat("uploaded checkpoint ", path.filename().string()));
      } else if (++upload_failures[path.string()] >= 3 || absl::IsDataLoss(s)) {
        uploaded.insert(path.string());  // give up on this one
        log("agent", absl::StrCat("checkpoint ", path.filename().string(), " not uploaded: ",
                                  s.message()));
      }
    }
  };

  if (!processes.empty()) {
    {
      std::lock_guard<std::mutex> lock(attempt->mu);
      attempt->processes = std::move(processes);
      if (attempt->cancelled) {
        for (auto& p : attempt->processes) p->Kill(options_.kill_grace, "cancelled: killed");
      }
      // The metrics stall watchdog watches rank 0 only (the one that writes
      // metrics); a hung peer surfaces as rank 0's collective timeout.
      if (asg.rank() == 0) {
        attempt->processes[0]->SetWatchdog(
            [attempt, &tail]() {
              std::lock_guard<std::mutex> l(attempt->mu);
              return std::max(attempt->last_activity, tail.last_growth());
            },
            options_.stall_timeout, std::min(options_.kill_grace, absl::Seconds(10)));
      }
    }
    std::vector<ProcessSupervisor*> procs;
    for (auto& p : attempt->processes) procs.push_back(p.get());
    std::vector<std::optional<ExitInfo>> exits(procs.size());
    int failed = -1;  // the first local rank seen ending badly
    auto kill_all = [&](const std::string& reason, absl::Duration grace) {
      for (size_t j = 0; j < procs.size(); ++j) {
        if (!exits[j].has_value()) procs[j]->Kill(grace, reason);
      }
    };
    while (true) {
      bool all_done = true, waited = false;
      for (size_t i = 0; i < procs.size(); ++i) {
        if (exits[i].has_value()) continue;
        exits[i] = procs[i]->WaitFor(waited ? absl::ZeroDuration() : options_.poll_interval);
        waited = true;
        if (!exits[i].has_value()) {
          all_done = false;
        } else if (!exits[i]->ok() && failed < 0) {
          failed = static_cast<int>(i);
          // Its peers would only wait for it in their next collective.
          kill_all(absl::StrCat("rank ", asg.rank() + failed, " failed: killed"), options_.kill_grace);
        }
      }
      if (!waited) absl::SleepFor(options_.poll_interval);
      forward_metrics(false);
      drain_logs();
      upload_new_checkpoints();
      if (stale) kill_all("stale attempt (coordinator): killed", absl::ZeroDuration());
      if (all_done) break;
    }
    forward_metrics(true);
    exit = *exits[failed < 0 ? 0 : failed];
    bool cancelled = false;
    {
      std::lock_guard<std::mutex> lock(attempt->mu);
      cancelled = attempt->cancelled;
      if (failed >= 0 && world_size > 1 && !cancelled && !stale) {
        const std::string& line = last_stderr[static_cast<size_t>(failed)];
        exit.reason = absl::StrCat("rank ", asg.rank() + failed, " of ", world_size, " ", exit.reason);
        if (!line.empty() && exit.reason.find(line) == std::string::npos) {
          absl::StrAppend(&exit.reason, "; last stderr line: ", line);
        }
      }
    }
  }
  log("agent", absl::StrCat("attempt ", n, " ended: ", exit.reason));
  drain_logs();
  upload_new_checkpoints();
  drain_logs();
  close_stream();

  gcl::v1::CompleteRequest req;
  req.set_worker_id(options_.worker_id);
  req.set_job_id(job_id);
  req.set_attempt(n);
  req.set_exit_code(exit.exit_code);
  req.set_signal(exit.signal);
  req.set_reason(exit.reason);
  if (exit.exit_code == 0 && exit.signal == 0 && spec.kind() == gcl::v1::KIND_FINETUNE) {
    const std::string variant =
        spec.method().variant() != gcl::v1::VARIANT_UNSPECIFIED ? gcl::spec::VariantName(spec.method().variant())
        : spec.init().has_random()                             ? "random_init"
                                                               : "pretrained";
    absl::StatusOr<std::vector<gcl::v1::CaseResult>> results = ReadCaseResults(out_dir.string(), variant);
    if (results.ok()) {
      for (auto& r : *results) *req.add_case_results() = std::move(r);
    } else {
      // The trainer said it succeeded but its scores are unreadable: not a success.
      req.set_exit_code(1);
      req.set_reason(absl::StrCat("agent: ", results.status().message()));
    }
  }
  if (metrics_) metrics_->EndAttempt(job_id, req.case_results());
  // The outcome must reach the coordinator: retried (backoff up to 30 s)
  // until it answers or the agent shuts down. Until then the job stays in
  // this agent's running list, so the coordinator keeps it placed here.
  for (int tries = 0;; ++tries) {
    grpc::ClientContext ctx;
    SetupContext(&ctx, true);
    gcl::v1::CompleteResponse resp;
    const grpc::Status s = stub_->Complete(&ctx, req, &resp);
    if (s.ok() || s.error_code() == grpc::StatusCode::FAILED_PRECONDITION ||
        s.error_code() == grpc::StatusCode::NOT_FOUND) {
      break;
    }
    AgentLog(absl::StrCat(job_id, ": Complete: ", s.error_message(), "; retrying"));
    std::unique_lock<std::mutex> lock(mu_);
    if (cv_.wait_for(lock, std::chrono::seconds(1 << std::min(tries, 5)), [this] { return shutdown_; })) {
      break;
    }
  }
  {
    std::lock_guard<std::mutex> lock(attempt->mu);
    attempt->processes.clear();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    ended_.insert({job_id, n});
  }
  attempt->finished = true;
  cv_.notify_all();
}

}  // namespace gcl::agent
