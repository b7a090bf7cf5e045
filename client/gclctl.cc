#include "client/gclctl.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/channel.h"
#include "client/format.h"
#include "client/table.h"
#include "client/verbs.h"
#include "gcl/v1/job.grpc.pb.h"

namespace gcl::client {
namespace {

constexpr int kOk = kExitOk, kServerError = kExitFailed, kUsage = kExitUsage;
constexpr char kUsageText[] =
    "usage: gclctl [--addr HOST:PORT] [--token T] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]\n"
    "              VERB [ARGS] [--output table|json]\n"
    "verbs:\n"
    "  submit FILE                      submit a job spec (YAML); prints the job id\n"
    "  list [--state S]...              jobs, newest first\n"
    "  get ID                           one job\n"
    "  cancel ID [--reason TEXT]        cancel a job\n"
    "  watch ID                         follow a job: states, progress, gradient conflicts\n"
    "  logs ID [-f] [--attempt N]       the job's log lines; -f follows until it ends\n"
    "  results [ID] [--per-class]       Dice table (mean \u00b1 std over repeats)\n"
    "  checkpoints ID                   the job's checkpoints\n"
    "  download CKPT -o FILE            fetch a checkpoint (resumes, verifies sha256)\n"
    "  workers                          registered workers\n";

struct Args {
  std::string verb;
  std::vector<std::string> positional;
  std::vector<std::string> states;
  std::string output = "table";
  std::string reason;
  std::string dash_o;  // -o: the download's FILE, for other verbs the --output format
  bool follow = false;
  int attempt = 0;
  bool per_class = false;
};

std::string KindName(const gcl::v1::Job& job) {
  std::string name = gcl::v1::Kind_Name(job.spec().kind());
  return absl::AsciiStrToLower(absl::StartsWith(name, "KIND_") ? name.substr(5) : name);
}

std::unique_ptr<grpc::ClientContext> UnaryContext() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

// No deadline: watches and downloads last as long as they need; keepalive
// notices a dead coordinator.
std::unique_ptr<grpc::ClientContext> StreamContext() {
  return std::make_unique<grpc::ClientContext>();
}

// "w1 (rank 0), w2 (rank 1)"; "w1 (ranks 0-1), ..." with several devices per worker.
std::string GangWorkers(const gcl::v1::Job& job) {
  std::string out;
  for (const gcl::v1::GangMember& m : job.gang()) {
    absl::StrAppend(&out, out.empty() ? "" : ", ", m.worker_id());
    if (m.devices() > 1) {
      absl::StrAppend(&out, " (ranks ", m.first_rank(), "-", m.first_rank() + m.devices() - 1, ")");
    } else {
      absl::StrAppend(&out, " (rank ", m.first_rank(), ")");
    }
  }
  return out;
}

void PrintJob(const gcl::v1::Job& job, std::ostream& out) {
  out << "id:        " << job.id() << "\n"
      << "name:      " << job.name() << "\n"
      << "kind:      " << KindName(job) << "\n"
      << "state:     " << StateName(job.state()) << "\n";
  if (!job.reason().empty()) out << "reason:    " << job.reason() << "\n";
  if (job.queue_position() > 0) out << "position:  " << job.queue_position() << " in the queue\n";
  out << "attempt:   " << job.attempt() << " of " << job.max_attempts() << "\n";
  if (job.gang_size() > 0) {
    out << "workers:   " << GangWorkers(job) << "\n";
  } else if (!job.worker_id().empty()) {
    out << "worker:    " << job.worker_id() << "\n";
  }
  if (job.progress().total_steps() > 0) {
    out << "progress:  step " << job.progress().step() << " / " << job.progress().total_steps() << "\n";
  }
}

class Cli {
 public:
  // `channel` carries the credentials and the token (client/channel.h).
  Cli(const ClientConfig& config, const std::shared_ptr<grpc::Channel>& channel, std::ostream& out,
      std::ostream& err, bool tty)
      : addr_(config.addr), tls_(!config.tls_ca.empty()), out_(out), err_(err), tty_(tty) {
    stub_ = gcl::v1::JobService::NewStub(channel);
  }

  int Fail(const grpc::Status& s) {
    err_ << DescribeRpcError(s, addr_, tls_) << "\n";
    return kServerError;
  }

  // What the read verbs (verbs.h) need to make calls and print.
  CallEnv Env(const Args& a) {
    CallEnv env;
    env.stub = stub_.get();
    env.addr = addr_;
    env.tls = tls_;
    env.out = &out_;
    env.err = &err_;
    env.json = a.output == "json";
    env.tty = tty_ && !env.json;
    env.unary_context = UnaryContext;
    env.stream_context = StreamContext;
    return env;
  }

  int Submit(const std::string& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      err_ << "gclctl: cannot read " << file << "\n";
      return kUsage;
    }
    std::stringstream text;
    text << in.rdbuf();
    gcl::v1::SubmitJobRequest req;
    req.set_spec_yaml(text.str());
    std::error_code ec;
    req.set_spec_dir(std::filesystem::absolute(file, ec).parent_path().string());
    // One key for every try: a submit whose reply was lost is not stored twice.
    std::random_device rd;
    req.set_request_id(absl::StrFormat("%08x%08x%08x%08x", rd(), rd(), rd(), rd()));
    gcl::v1::SubmitJobResponse resp;
    grpc::Status s;
    for (int tries = 0; tries < 3; ++tries) {  // a restarting coordinator: 0.5 s, then 1 s
      if (tries > 0) std::this_thread::sleep_for(std::chrono::milliseconds(500 << (tries - 1)));
      s = stub_->SubmitJob(UnaryContext().get(), req, &resp);
      if (s.error_code() != grpc::StatusCode::UNAVAILABLE &&
          s.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
        break;
      }
    }
    if (!s.ok()) {
      std::string msg = s.error_message();
      // The server names the text "spec.yaml"; the user knows it by its path.
      if (absl::StartsWith(msg, "spec.yaml:")) msg = file + msg.substr(9);
      return Fail(grpc::Status(s.error_code(), msg));
    }
    out_ << resp.job().id() << "\n";
    err_ << resp.job().id() << ": " << StateName(resp.job().state());
    if (resp.job().queue_position() > 0) err_ << ", #" << resp.job().queue_position() << " in the queue";
    if (!resp.job().reason().empty()) err_ << " (" << resp.job().reason() << ")";
    err_ << "\n";
    return kOk;
  }

  int List(const Args& a) {
    gcl::v1::ListJobsRequest req;
    for (const std::string& st : a.states) {
      gcl::v1::JobState v;
      if (!gcl::v1::JobState_Parse("JOB_STATE_" + absl::AsciiStrToUpper(st), &v)) {
        err_ << "gclctl: --state " << st << ": unknown state (queued, running, succeeded, failed, cancelled, ...)\n";
        return kUsage;
      }
      req.add_states(v);
    }
    req.set_page_size(200);
    gcl::v1::ListJobsResponse resp;
    grpc::Status s = stub_->ListJobs(UnaryContext().get(), req, &resp);
    if (!s.ok()) return Fail(s);
    if (a.output == "json") {
      out_ << ToJson(resp) << "\n";
      return kOk;
    }
    Table table({"ID", "NAME", "KIND", "STATE", "ATTEMPT", "REASON"});
    for (const gcl::v1::Job& j : resp.jobs()) {
      std::string reason = j.reason();
      if (j.queue_position() > 0) reason = absl::StrCat("#", j.queue_position(), ": ", reason);
      table.AddRow({j.id(), j.name(), KindName(j), StateName(j.state()),
                    absl::StrCat(j.attempt(), "/", j.max_attempts()), reason});
    }
    table.Render(out_);
    return kOk;
  }

  int Get(const std::string& id, const std::string& output) {
    gcl::v1::GetJobRequest req;
    req.set_id(id);
    gcl::v1::Job job;
    grpc::Status s = stub_->GetJob(UnaryContext().get(), req, &job);
    if (!s.ok()) return FailForJob(Env(Args()), s, id);
    if (output == "json") {
      out_ << ToJson(job) << "\n";
    } else {
      PrintJob(job, out_);
    }
    return kOk;
  }

  int Cancel(const std::string& id, const std::string& reason) {
    gcl::v1::CancelJobRequest req;
    req.set_id(id);
    req.set_reason(reason);
    gcl::v1::CancelJobResponse resp;
    grpc::Status s = stub_->CancelJob(UnaryContext().get(), req, &resp);
    if (!s.ok()) return FailForJob(Env(Args()), s, id);
    out_ << resp.job().id() << ": " << StateName(resp.job().state()) << "\n";
    return kOk;
  }

 private:
  std::string addr_;
  bool tls_;
  std::ostream& out_;
  std::ostream& err_;
  bool tty_;
  std::unique_ptr<gcl::v1::JobService::Stub> stub_;
};

}  // namespace

std::string DescribeRpcError(const grpc::Status& s, const std::string& addr, bool tls) {
  switch (s.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (absl::StrContains(s.error_message(), "shutting down")) {
        return absl::StrCat("gclctl: the coordinator at ", addr, " is shutting down; try again shortly");
      }
      if (tls && absl::StrContains(s.error_message(), "wrong version number")) {
        return absl::StrCat("gclctl: the coordinator at ", addr,
                            " does not speak TLS (plaintext port): drop --tls-ca / GCL_TLS_CA");
      }
      if (tls && (absl::StrContains(s.error_message(), "andshake") ||
                  absl::StrContains(s.error_message(), "SSL") ||
                  absl::StrContains(s.error_message(), "ertificate"))) {
        return absl::StrCat("gclctl: TLS handshake with ", addr,
                            " failed: check that --tls-ca is the CA that signed the coordinator's ",
                            "certificate, that the address is a name in that certificate (e.g. ",
                            "localhost), and, if the coordinator wants client certificates, ",
                            "--tls-cert/--tls-key (", s.error_message(), ")");
      }
      if (tls) {
        // With TLS 1.3 a server that wants a client certificate closes the
        // connection after the handshake, which shows as a plain failure.
        return absl::StrCat("gclctl: cannot reach the coordinator at ", addr,
                            " or it closed the TLS connection (is gcl-coordinator running? does ",
                            "it serve TLS, or plaintext: then drop --tls-ca? does it want a ",
                            "client certificate: --tls-cert/--tls-key?): ", s.error_message());
      }
      if (absl::StrContains(s.error_message(), "Socket closed") ||
          absl::StrContains(s.error_message(), "Connection reset")) {
        // What a plaintext client sees from a TLS port.
        return absl::StrCat("gclctl: the coordinator at ", addr,
                            " closed the connection; if it serves TLS, pass --tls-ca CA.pem or ",
                            "set GCL_TLS_CA (", s.error_message(), ")");
      }
      return absl::StrCat("gclctl: cannot reach the coordinator at ", addr, " (is gcl-coordinator running?)");
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return absl::StrCat("gclctl: the coordinator at ", addr, " did not answer in time");
    case grpc::StatusCode::UNIMPLEMENTED:
      return absl::StrCat("gclctl: the coordinator at ", addr, " does not support this command yet");
    case grpc::StatusCode::UNAUTHENTICATED:
      return absl::StrCat("gclctl: the coordinator at ", addr, " did not accept you: ",
                          s.error_message(), ". Pass your token with --token, GCL_TOKEN or ",
                          "`token:` in ~/.config/gcl/config.yaml (the coordinator's admin ",
                          "hands out tokens)");
    case grpc::StatusCode::PERMISSION_DENIED:
      return absl::StrCat("gclctl: not allowed: ", s.error_message());
    default:
      return absl::StrCat("gclctl: ", s.error_message());
  }
}

int RunGclctl(const std::vector<std::string>& argv, const ConfigSources& sources_in,
              std::ostream& out, std::ostream& err, bool out_is_tty) {
  ConfigSources sources = sources_in;
  Args a;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    auto value = [&](std::string* dst) {
      if (i + 1 >= argv.size()) return false;
      *dst = argv[++i];
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      out << kUsageText;
      return kOk;
    } else if (arg == "--addr") {
      if (!value(&sources.flag_addr)) return (err << "gclctl: --addr needs HOST:PORT\n" << kUsageText, kUsage);
    } else if (arg == "--token") {
      if (!value(&sources.flag_token)) return (err << "gclctl: --token needs a value\n", kUsage);
    } else if (arg == "--tls-ca") {
      if (!value(&sources.flag_tls_ca)) return (err << "gclctl: --tls-ca needs a file\n", kUsage);
    } else if (arg == "--tls-cert") {
      if (!value(&sources.flag_tls_cert)) {
        return (err << "gclctl: --tls-cert needs a file\n", kUsage);
      }
    } else if (arg == "--tls-key") {
      if (!value(&sources.flag_tls_key)) return (err << "gclctl: --tls-key needs a file\n", kUsage);
    } else if (arg == "--output") {
      if (!value(&a.output) || (a.output != "json" && a.output != "table")) {
        return (err << "gclctl: --output must be table or json\n", kUsage);
      }
    } else if (arg == "-o") {
      if (!value(&a.dash_o))
        return (err << "gclctl: -o needs a value (download: the FILE to write)\n", kUsage);
    } else if (arg == "-f" || arg == "--follow") {
      a.follow = true;
    } else if (arg == "--per-class") {
      a.per_class = true;
    } else if (arg == "--attempt") {
      if (!value(&v) || !absl::SimpleAtoi(v, &a.attempt) || a.attempt < 1) {
        return (err << "gclctl: --attempt needs an attempt number (1, 2, ...)\n", kUsage);
      }
    } else if (arg == "--state") {
      if (!value(&v)) return (err << "gclctl: --state needs a state\n", kUsage);
      a.states.push_back(v);
    } else if (arg == "--reason") {
      if (!value(&a.reason)) return (err << "gclctl: --reason needs a text\n", kUsage);
    } else if (absl::StartsWith(arg, "-") && arg.size() > 1) {
      return (err << "gclctl: unknown option " << arg << "\n" << kUsageText, kUsage);
    } else if (a.verb.empty()) {
      a.verb = arg;
    } else {
      a.positional.push_back(arg);
    }
  }
  if (a.verb.empty()) return (err << kUsageText, kUsage);
  if (!a.dash_o.empty() && a.verb != "download") {
    // Elsewhere -o is short for --output.
    if (a.dash_o != "json" && a.dash_o != "table")
      return (err << "gclctl: -o must be table or json\n", kUsage);
    a.output = a.dash_o;
  }
  absl::StatusOr<ClientConfig> config = ResolveConfig(sources);
  if (!config.ok()) return (err << "gclctl: " << config.status().message() << "\n", kUsage);

  auto need = [&](size_t n, const char* what) {
    if (a.positional.size() == n) return true;
    err << "gclctl: " << a.verb << " takes " << what << "\n" << kUsageText;
    return false;
  };
  grpc::ChannelArguments ch;
  // Long watches from workstations: ping every 60 s (the server permits 30 s).
  ch.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  ch.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = OpenChannel(*config, ch);
  if (!channel.ok()) return (err << "gclctl: " << channel.status().message() << "\n", kUsage);
  Cli cli(*config, *channel, out, err, out_is_tty);
  if (a.verb == "submit") return need(1, "one FILE") ? cli.Submit(a.positional[0]) : kUsage;
  if (a.verb == "list") return need(0, "no arguments (filters: --state S)") ? cli.List(a) : kUsage;
  if (a.verb == "get") return need(1, "one job ID") ? cli.Get(a.positional[0], a.output) : kUsage;
  if (a.verb == "cancel") return need(1, "one job ID") ? cli.Cancel(a.positional[0], a.reason) : kUsage;
  const CallEnv env = cli.Env(a);
  if (a.verb == "watch") return need(1, "one job ID") ? WatchVerb(env, a.positional[0]) : kUsage;
  if (a.verb == "logs") {
    return need(1, "one job ID (options: -f, --attempt N)")
               ? LogsVerb(env, a.positional[0], a.attempt, a.follow)
               : kUsage;
  }
  if (a.verb == "results") {
    if (a.positional.size() > 1) return (need(1, "at most one job ID"), kUsage);
    return ResultsVerb(env, a.positional.empty() ? "" : a.positional[0], a.per_class);
  }
  if (a.verb == "checkpoints")
    return need(1, "one job ID") ? CheckpointsVerb(env, a.positional[0]) : kUsage;
  if (a.verb == "download") {
    if (!need(1, "one checkpoint id and -o FILE")) return kUsage;
    if (a.dash_o.empty())
      return (err << "gclctl: download needs -o FILE (where to write the checkpoint)\n", kUsage);
    return DownloadVerb(env, a.positional[0], a.dash_o);
  }
  if (a.verb == "workers") return need(0, "no arguments") ? WorkersVerb(env) : kUsage;
  err << "gclctl: unknown verb '" << a.verb << "'\n" << kUsageText;
  return kUsage;
}

}  // namespace gcl::client
