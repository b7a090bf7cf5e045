#include "client/gclctl.h"

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/channel.h"
#include "gcl/v1/job.grpc.pb.h"

namespace gcl::client {
namespace {

constexpr int kOk = 0, kServerError = 1, kUsage = 2;
constexpr char kUsageText[] =
    "usage: gclctl [--addr HOST:PORT] [--token T] [--tls-ca PEM [--tls-cert PEM --tls-key PEM]]\n"
    "              VERB [ARGS] [--output table|json]\n"
    "verbs: submit FILE | list [--state S] | get ID | cancel ID [--reason TEXT] | watch ID | workers\n";

struct Args {
  std::string verb;
  std::vector<std::string> positional;
  std::vector<std::string> states;
  std::string output = "table";
  std::string reason;
};

std::string StateName(gcl::v1::JobState s) {
  std::string name = gcl::v1::JobState_Name(s);
  return absl::StartsWith(name, "JOB_STATE_") ? name.substr(10) : name;
}

std::string KindName(const gcl::v1::Job& job) {
  std::string name = gcl::v1::Kind_Name(job.spec().kind());
  return absl::AsciiStrToLower(absl::StartsWith(name, "KIND_") ? name.substr(5) : name);
}

std::string Clock(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

std::unique_ptr<grpc::ClientContext> UnaryContext() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  return ctx;
}

void PrintJob(const gcl::v1::Job& job, std::ostream& out) {
  out << "id:        " << job.id() << "\n"
      << "name:      " << job.name() << "\n"
      << "kind:      " << KindName(job) << "\n"
      << "state:     " << StateName(job.state()) << "\n";
  if (!job.reason().empty()) out << "reason:    " << job.reason() << "\n";
  if (job.queue_position() > 0) out << "position:  " << job.queue_position() << " in the queue\n";
  out << "attempt:   " << job.attempt() << " of " << job.max_attempts() << "\n";
  if (!job.worker_id().empty()) out << "worker:    " << job.worker_id() << "\n";
  if (job.progress().total_steps() > 0) {
    out << "progress:  step " << job.progress().step() << " / " << job.progress().total_steps() << "\n";
  }
}

void PrintStateChange(const gcl::v1::JobEvent& e, std::ostream& out) {
  const gcl::v1::StateChange& c = e.state();
  out << Clock(e.time_ms()) << "  ";
  if (c.from() == c.to()) {
    out << StateName(c.to());
  } else if (c.from() == gcl::v1::JOB_STATE_UNSPECIFIED) {
    out << "submitted -> " << StateName(c.to());
  } else {
    out << StateName(c.from()) << " -> " << StateName(c.to());
  }
  if (c.attempt() > 0) out << " (attempt " << c.attempt() << ")";
  if (!c.reason().empty()) out << ": " << c.reason();
  out << "\n";
}

class Cli {
 public:
  // `channel` carries the credentials and the token (client/channel.h).
  Cli(const ClientConfig& config, const std::shared_ptr<grpc::Channel>& channel, std::ostream& out,
      std::ostream& err)
      : addr_(config.addr), tls_(!config.tls_ca.empty()), out_(out), err_(err) {
    stub_ = gcl::v1::JobService::NewStub(channel);
  }

  int Fail(const grpc::Status& s) {
    err_ << DescribeRpcError(s, addr_, tls_) << "\n";
    return kServerError;
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
    gcl::v1::SubmitJobResponse resp;
    grpc::Status s = stub_->SubmitJob(UnaryContext().get(), req, &resp);
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
    out_ << absl::StrFormat("%-15s %-20s %-10s %-10s %-7s %s\n", "ID", "NAME", "KIND", "STATE", "ATTEMPT",
                            "REASON");
    for (const gcl::v1::Job& j : resp.jobs()) {
      std::string reason = j.reason();
      if (j.queue_position() > 0) reason = absl::StrCat("#", j.queue_position(), ": ", reason);
      out_ << absl::StrFormat("%-15s %-20s %-10s %-10s %-7s %s\n", j.id(), j.name(), KindName(j),
                              StateName(j.state()), absl::StrCat(j.attempt(), "/", j.max_attempts()), reason);
    }
    return kOk;
  }

  int Get(const std::string& id, const std::string& output) {
    gcl::v1::GetJobRequest req;
    req.set_id(id);
    gcl::v1::Job job;
    grpc::Status s = stub_->GetJob(UnaryContext().get(), req, &job);
    if (!s.ok()) return Fail(s);
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
    if (!s.ok()) return Fail(s);
    out_ << resp.job().id() << ": " << StateName(resp.job().state()) << "\n";
    return kOk;
  }

  int Watch(const std::string& id) {
    gcl::v1::WatchJobRequest req;
    req.set_id(id);
    grpc::ClientContext ctx;  // no deadline: keepalive notices a dead server
    auto reader = stub_->WatchJob(&ctx, req);
    gcl::v1::JobEvent e;
    while (reader->Read(&e)) {
      if (e.has_state()) PrintStateChange(e, out_);
    }
    grpc::Status s = reader->Finish();
    if (!s.ok()) return Fail(s);
    gcl::v1::GetJobRequest get;
    get.set_id(id);
    gcl::v1::Job job;
    s = stub_->GetJob(UnaryContext().get(), get, &job);
    if (!s.ok()) return Fail(s);
    out_ << job.id() << " ended " << StateName(job.state()) << "\n";
    return job.state() == gcl::v1::JOB_STATE_SUCCEEDED ? kOk : kServerError;
  }

 private:
  std::string addr_;
  bool tls_;
  std::ostream& out_;
  std::ostream& err_;
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

int RunGclctl(const std::vector<std::string>& argv, const ConfigSources& sources_in, std::ostream& out,
              std::ostream& err) {
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
    } else if (arg == "--output" || arg == "-o") {
      if (!value(&a.output) || (a.output != "json" && a.output != "table")) {
        return (err << "gclctl: --output must be table or json\n", kUsage);
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
  Cli cli(*config, *channel, out, err);
  if (a.verb == "submit") return need(1, "one FILE") ? cli.Submit(a.positional[0]) : kUsage;
  if (a.verb == "list") return need(0, "no arguments (filters: --state S)") ? cli.List(a) : kUsage;
  if (a.verb == "get") return need(1, "one job ID") ? cli.Get(a.positional[0], a.output) : kUsage;
  if (a.verb == "cancel") return need(1, "one job ID") ? cli.Cancel(a.positional[0], a.reason) : kUsage;
  if (a.verb == "watch") return need(1, "one job ID") ? cli.Watch(a.positional[0]) : kUsage;
  if (a.verb == "workers") {
    err << "gclctl: workers: the coordinator's JobService has no ListWorkers call yet\n";
    return kServerError;
  }
  err << "gclctl: unknown verb '" << a.verb << "'\n" << kUsageText;
  return kUsage;
}

}  // namespace gcl::client
