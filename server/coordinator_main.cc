// gcl-coordinator --listen ADDR --db FILE --artifacts DIR [--lease-seconds N]
//                 [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]
//                 [--tokens FILE] [--insecure-allow-remote]
//                 [--metrics-listen HOST:PORT] [--prometheus-sd-file FILE]
// Serves JobService and WorkerService until SIGTERM/SIGINT, then shuts down
// gracefully (health NOT_SERVING, watchers told, in-flight calls drained).
// SIGHUP reads the tokens file and the TLS files again.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "server/coordinator.h"

namespace {

constexpr char kUsage[] =
    "usage: gcl-coordinator --listen HOST:PORT --db FILE [--artifacts DIR] [--lease-seconds N]\n"
    "                       [--tls-cert PEM --tls-key PEM [--tls-client-ca PEM]]\n"
    "                       [--tokens FILE] [--insecure-allow-remote]\n"
    "  --tls-cert, --tls-key   TLS on the port: server certificate chain and its key\n"
    "  --tls-client-ca         mTLS: clients must present a certificate this CA signed\n"
    "                          (checked for changes every 60 s and on SIGHUP)\n"
    "  --tokens FILE           bearer tokens (YAML: tokens: [{token, user, role}]);\n"
    "                          without it every caller is an admin; SIGHUP reads it again\n"
    "  --insecure-allow-remote serve a non-loopback address without TLS and tokens\n"
    "  deploy/make-certs.sh makes a CA and certificates; see deploy/README.md\n"
    "  [--metrics-listen HOST:PORT] [--prometheus-sd-file FILE]: Prometheus /metrics, file SD\n";

int Usage(const std::string& why) {
  std::fprintf(stderr, "gcl-coordinator: %s\n%s", why.c_str(), kUsage);
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  gcl::server::Coordinator::Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&](std::string* out) {
      if (i + 1 >= argc) return false;
      *out = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (arg == "--listen") {
      if (!value(&options.listen)) return Usage("--listen needs HOST:PORT");
    } else if (arg == "--db") {
      if (!value(&options.db_path)) return Usage("--db needs a file");
    } else if (arg == "--artifacts") {
      if (!value(&options.artifacts_dir)) return Usage("--artifacts needs a folder");
    } else if (arg == "--tls-cert") {
      if (!value(&options.tls_cert)) return Usage("--tls-cert needs a PEM file");
    } else if (arg == "--tls-key") {
      if (!value(&options.tls_key)) return Usage("--tls-key needs a PEM file");
    } else if (arg == "--tls-client-ca") {
      if (!value(&options.tls_client_ca)) return Usage("--tls-client-ca needs a PEM file");
    } else if (arg == "--tokens") {
      if (!value(&options.tokens_file)) return Usage("--tokens needs a YAML file");
    } else if (arg == "--insecure-allow-remote") {
      options.allow_insecure_remote = true;
    } else if (arg == "--metrics-listen") {
      if (!value(&options.metrics_listen)) return Usage("--metrics-listen needs HOST:PORT");
    } else if (arg == "--prometheus-sd-file") {
      if (!value(&options.prometheus_sd_file)) return Usage("--prometheus-sd-file needs a file");
    } else if (arg == "--lease-seconds") {
      if (!value(&v)) return Usage("--lease-seconds needs a number");
      char* end = nullptr;
      const long n = std::strtol(v.c_str(), &end, 10);
      if (end == v.c_str() || *end != '\0' || n <= 0) return Usage("--lease-seconds must be a positive integer");
      options.lease_ms = n * 1000;
    } else {
      return Usage("unknown argument '" + arg + "'");
    }
  }
  if (options.db_path.empty()) return Usage("--db is required");

  // Signals go to a dedicated waiter thread, not a handler: Shutdown() is not
  // async-signal-safe.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto coordinator = gcl::server::Coordinator::Create(options);
  if (!coordinator.ok()) {
    std::fprintf(stderr, "gcl-coordinator: %s\n", std::string(coordinator.status().message()).c_str());
    return 1;
  }
  if (absl::Status s = (*coordinator)->Start(); !s.ok()) {
    std::fprintf(stderr, "gcl-coordinator: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  std::fprintf(stderr, "gcl-coordinator: %s; %s\n",
               options.tls_cert.empty()           ? "plaintext (no TLS)"
               : options.tls_client_ca.empty()    ? "TLS"
                                                  : "mTLS (client certificates required)",
               options.tokens_file.empty() ? "no --tokens: auth off, every caller is an admin"
                                           : "bearer tokens required");
  std::printf("listening on %s\n", (*coordinator)->address().c_str());
  if (!(*coordinator)->metrics_address().empty()) {
    std::printf("metrics on %s\n", (*coordinator)->metrics_address().c_str());
  }
  std::fflush(stdout);
  int sig = 0;
  while (sigwait(&set, &sig) == 0 && sig == SIGHUP) {
    if (!options.tokens_file.empty()) {
      absl::StatusOr<size_t> n = (*coordinator)->ReloadTokens();
      if (n.ok()) {
        std::fprintf(stderr, "gcl-coordinator: SIGHUP: %zu tokens reloaded from %s\n", *n,
                     options.tokens_file.c_str());
      } else {
        std::fprintf(stderr,
                     "gcl-coordinator: SIGHUP: tokens not reloaded, the previous ones stay: %s\n",
                     std::string(n.status().message()).c_str());
      }
    }
    if (!options.tls_cert.empty()) (void)(*coordinator)->ReloadTls();  // reports a change itself
  }
  std::fprintf(stderr, "gcl-coordinator: %s received, shutting down\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*coordinator)->Shutdown();
  return 0;
}
