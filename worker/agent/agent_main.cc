// gcl-worker: the worker agent (architecture.md section 3).
//   gcl-worker --coordinator ADDR --work-dir DIR --trainer PATH [--worker-id ID]
//              [--token TOKEN | --token-file FILE] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]
//              [--stall-timeout SECONDS] [--kill-grace SECONDS]
// --token defaults to $GCL_TOKEN (a token with role worker when the
// coordinator has --tokens), --token-file to $GCL_TOKEN_FILE; --tls-* to
// $GCL_TLS_CA, $GCL_TLS_CERT, $GCL_TLS_KEY. With TLS, ADDR must be a name in
// the coordinator's certificate.
//              [--metrics-listen HOST:PORT] [--metrics-grace SECONDS]
//              [--advertise-address HOST] [--rendezvous-ports LO-HI]
//              [--threads N] [--cpu-devices N] [--gpus auto|none|LIST]
// --advertise-address: how other hosts reach this one (the c10d rendezvous
// host of gangs whose rank 0 runs here; default the host name);
// --rendezvous-ports: the ports the coordinator may give such a rendezvous
// (default 29500-29999); --threads: CPU threads the ranks of one assignment
// share (default all cores); --cpu-devices: CPU ranks offered instead of
// GPUs (default: 1 when no GPU is found); --gpus: the NVIDIA GPUs offered as
// "cuda:<index>", found with nvidia-smi (default auto: every GPU it lists
// that an inherited CUDA_VISIBLE_DEVICES leaves visible; none; or indices
// like 0,2). A failing nvidia-smi stops gcl-worker; a missing one is no GPUs.
// With TLS the files are read again every 60 s and on SIGHUP, so that
// re-issued certificates (or a new CA) are used by the next connection
// without a restart; a set that fails the checks is logged and the previous
// one stays (tls/tls_reloader.h). So is --token-file: the next call sends
// the new token (token_file.h).
// SIGINT/SIGTERM: kill the running trainers (grace) and exit.
#include <signal.h>
#include <time.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "tls/tls_reloader.h"
#include "worker/agent/agent.h"
#include "worker/agent/token_file.h"

namespace {

int Usage(const char* why) {
  std::fprintf(stderr,
               "gcl-worker: %s\nusage: gcl-worker --coordinator ADDR --work-dir DIR --trainer PATH "
               "[--worker-id ID] [--token TOKEN | --token-file FILE] "
               "[--tls-ca PEM [--tls-cert PEM --tls-key PEM]] "
               "[--stall-timeout S] [--kill-grace S] [--metrics-listen HOST:PORT] [--metrics-grace S] "
               "[--advertise-address HOST] [--rendezvous-ports LO-HI] [--threads N] "
               "[--cpu-devices N] [--gpus auto|none|LIST]\n",
               why);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  // Signals are taken by a dedicated thread (sigwait), not a handler. Blocked
  // first thing, so every thread started later (gRPC's, the agent's)
  // inherits the mask and none of them dies of a SIGTERM.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);
  gcl::agent::AgentOptions options;
  if (const char* token = std::getenv("GCL_TOKEN")) options.token = token;
  std::string token_file, tls_ca, tls_cert, tls_key;
  if (const char* v = std::getenv("GCL_TOKEN_FILE")) token_file = v;
  if (const char* v = std::getenv("GCL_TLS_CA")) tls_ca = v;
  if (const char* v = std::getenv("GCL_TLS_CERT")) tls_cert = v;
  if (const char* v = std::getenv("GCL_TLS_KEY")) tls_key = v;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "-h" || arg == "--help") return Usage("the GCL worker agent"), 0;
    if (i + 1 >= argc) return Usage((arg + " needs a value").c_str());
    const std::string v = argv[++i];
    if (arg == "--coordinator") {
      options.coordinator = v;
    } else if (arg == "--work-dir") {
      options.work_dir = v;
    } else if (arg == "--trainer") {
      options.trainer_path = v;
    } else if (arg == "--worker-id") {
      options.worker_id = v;
    } else if (arg == "--token") {
      options.token = v;
    } else if (arg == "--token-file") {
      token_file = v;
    } else if (arg == "--tls-ca") {
      tls_ca = v;
    } else if (arg == "--tls-cert") {
      tls_cert = v;
    } else if (arg == "--tls-key") {
      tls_key = v;
    } else if (arg == "--metrics-listen") {
      options.metrics_listen = v;
    } else if (arg == "--advertise-address") {
      options.advertise_address = v;
    } else if (arg == "--rendezvous-ports") {
      int lo = 0, hi = 0;
      char tail = 0;
      if (std::sscanf(v.c_str(), "%d-%d%c", &lo, &hi, &tail) != 2 || lo < 1 || hi > 65535 || lo > hi) {
        return Usage("--rendezvous-ports needs LO-HI, 1 <= LO <= HI <= 65535");
      }
      options.rendezvous_port_min = lo;
      options.rendezvous_port_max = hi;
    } else if (arg == "--threads" || arg == "--cpu-devices") {
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (*end != '\0' || n < 1 || n > 4096) return Usage((arg + " needs an integer >= 1").c_str());
      (arg == "--threads" ? options.threads : options.cpu_devices) = static_cast<int>(n);
    } else if (arg == "--gpus") {
      options.gpus = v;
    } else if (arg == "--metrics-grace") {
      char* end = nullptr;
      const double s = std::strtod(v.c_str(), &end);
      if (*end != '\0' || !(s >= 0)) return Usage("--metrics-grace needs a number >= 0");
      options.metrics_grace = absl::Seconds(s);
    } else if (arg == "--stall-timeout" || arg == "--kill-grace") {
      char* end = nullptr;
      const double s = std::strtod(v.c_str(), &end);
      if (*end != '\0' || !(s > 0)) return Usage((arg + " needs a positive number").c_str());
      (arg == "--stall-timeout" ? options.stall_timeout : options.kill_grace) = absl::Seconds(s);
    } else {
      return Usage(("unknown flag " + arg).c_str());
    }
  }
  if (options.coordinator.empty()) return Usage("--coordinator is required");
  if (tls_cert.empty() != tls_key.empty()) return Usage("--tls-cert and --tls-key go together");
  if (!tls_cert.empty() && tls_ca.empty()) return Usage("--tls-cert needs --tls-ca (TLS)");
  std::unique_ptr<gcl::tls::TlsReloader> tls;
  if (!tls_ca.empty()) {
    if (options.work_dir.empty()) return Usage("--work-dir is required");
    std::error_code ec;
    std::filesystem::create_directories(options.work_dir, ec);  // for the served copy
    auto reloader = gcl::tls::TlsReloader::Create({tls_cert, tls_key, tls_ca},
                                                  options.work_dir + "/tls", "gcl-worker");
    if (!reloader.ok()) return Usage(std::string(reloader.status().message()).c_str());
    tls = *std::move(reloader);
    options.credentials = tls->ChannelCredentials();
  }
  // Metadata values may not hold the newline a token file often ends in.
  options.token = std::string(absl::StripAsciiWhitespace(options.token));
  std::optional<gcl::agent::TokenFile> token_from_file;
  if (!token_file.empty()) {
    if (!options.token.empty()) {
      return Usage("a token or a token file, not both (--token/GCL_TOKEN, --token-file/GCL_TOKEN_FILE)");
    }
    auto opened = gcl::agent::TokenFile::Open(token_file);
    if (!opened.ok()) return Usage(std::string(opened.status().message()).c_str());
    token_from_file = *std::move(opened);
    options.token = token_from_file->token();
  }

  auto agent = gcl::agent::Agent::Create(options);
  if (!agent.ok()) {
    std::fprintf(stderr, "gcl-worker: error: %s\n", std::string(agent.status().message()).c_str());
    return 1;
  }
  gcl::agent::Agent* a = agent->get();
  std::atomic<bool> done{false};
  std::thread signals([a, set, t = tls.get(), f = token_from_file ? &*token_from_file : nullptr,
                       &done] {
    const timespec reload_period{60, 0};
    for (;;) {
      const int sig = sigtimedwait(&set, nullptr, &reload_period);
      if (done) return;
      if (sig == SIGINT || sig == SIGTERM) {
        std::fprintf(stderr, "gcl-worker: %s: shutting down\n", strsignal(sig));
        a->Shutdown();
        return;
      }
      // SIGHUP, or the period passed. Errors are logged by Reload.
      if (t != nullptr) (void)t->Reload();
      if (f != nullptr && f->Reload().value_or(false)) a->SetToken(f->token());
    }
  });
  const absl::Status s = a->Run();
  done = true;
  pthread_kill(signals.native_handle(), SIGHUP);  // wakes it, if it still waits
  signals.join();
  agent->reset();  // joins the attempts (their trainers were killed)
  if (!s.ok()) {
    std::fprintf(stderr, "gcl-worker: error: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
