// The streaming verbs: watch and logs. Both read the job first (an unknown
// id fails at once with a clear message), then stream; a stream that breaks
// with UNAVAILABLE is reopened after the last seq seen, so a coordinator
// restart loses no event and prints none twice.
#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "client/format.h"
#include "client/gclctl.h"
#include "client/progress.h"
#include "client/verbs.h"

namespace gcl::client {
namespace {

std::string StateChangeText(const gcl::v1::JobEvent& e) {
  const gcl::v1::StateChange& c = e.state();
  std::string text = ClockTime(e.time_ms()) + "  ";
  if (c.from() == c.to()) {
    text += StateName(c.to());
  } else if (c.from() == gcl::v1::JOB_STATE_UNSPECIFIED) {
    text += "submitted -> " + StateName(c.to());
  } else {
    text += StateName(c.from()) + " -> " + StateName(c.to());
  }
  if (c.attempt() > 0) absl::StrAppend(&text, " (attempt ", c.attempt(), ")");
  if (!c.reason().empty()) absl::StrAppend(&text, ": ", c.reason());
  return text;
}

// Turns watch events into output: permanent lines for state changes and
// checkpoints; the progress line redrawn in place on a terminal, else one
// line per progress event; JSON Lines with --output json.
class WatchPrinter {
 public:
  explicit WatchPrinter(const CallEnv& env) : env_(env) {}

  void OnEvent(const gcl::v1::JobEvent& e) {
    if (env_.json) {
      *env_.out << ToJsonLine(e) << "\n";
      return;
    }
    switch (e.event_case()) {
      case gcl::v1::JobEvent::kState:
        if (e.state().to() != gcl::v1::JOB_STATE_UNSPECIFIED) state_ = StateName(e.state().to());
        Line(StateChangeText(e));
        break;
      case gcl::v1::JobEvent::kProgress: {
        const std::string text = ProgressLine(state_, e.progress(), conflicts_);
        if (env_.tty) {
          *env_.out << "\r" << text << "\x1b[K" << std::flush;
          open_line_ = true;
        } else {
          Line(ClockTime(e.time_ms()) + "  " + text);
        }
        break;
      }
      case gcl::v1::JobEvent::kMetrics: {
        // Points without conflict figures (e.g. fine-tuning) keep the last ones.
        ConflictFigures f = ConflictsOf(e.metrics());
        if (f.has_cosine || f.has_share) conflicts_ = f;
        break;
      }
      case gcl::v1::JobEvent::kCheckpoint: {
        const gcl::v1::Checkpoint& c = e.checkpoint();
        Line(absl::StrCat(ClockTime(e.time_ms()), "  checkpoint ", c.id(), " at step ", c.step(),
                          " (", HumanBytes(c.size_bytes()), ")"));
        break;
      }
      case gcl::v1::JobEvent::kLog:
        Line(absl::StrCat("[attempt ", e.log().attempt(), " ", e.log().stream(), "] ",
                          e.log().text()));
        break;
      case gcl::v1::JobEvent::EVENT_NOT_SET:
        break;
    }
  }

  // Ends a progress line still open on the terminal.
  void EndLine() {
    if (open_line_) *env_.out << "\n";
    open_line_ = false;
  }

 private:
  void Line(const std::string& text) {
    if (open_line_) *env_.out << "\r\x1b[K";
    open_line_ = false;
    *env_.out << text << "\n";
  }

  const CallEnv& env_;
  std::string state_ = "QUEUED";
  ConflictFigures conflicts_;
  bool open_line_ = false;
};

// Reads the job (NOT_FOUND -> "no job ..."), so a stream that later fails
// with UNAVAILABLE is known to have reached the coordinator once.
grpc::Status ReadJob(const CallEnv& env, const std::string& id, gcl::v1::Job* job) {
  gcl::v1::GetJobRequest req;
  req.set_id(id);
  return env.stub->GetJob(env.unary_context().get(), req, job);
}

// Whether to reopen a broken stream; counts the try and says so on err.
bool Reconnect(const CallEnv& env, const grpc::Status& s, int* tries) {
  if (s.error_code() != grpc::StatusCode::UNAVAILABLE || *tries >= env.reconnect_tries)
    return false;
  ++*tries;
  *env.err << "gclctl: lost the coordinator at " << env.addr << "; reconnecting (" << *tries << "/"
           << env.reconnect_tries << ")\n";
  std::this_thread::sleep_for(std::chrono::milliseconds(env.reconnect_pause_ms));
  return true;
}

}  // namespace

int WatchVerb(const CallEnv& env, const std::string& id) {
  gcl::v1::Job job;
  grpc::Status s = ReadJob(env, id, &job);
  if (!s.ok()) return FailForJob(env, s, id);
  WatchPrinter printer(env);
  int64_t after = 0;
  int tries = 0;
  while (true) {
    gcl::v1::WatchJobRequest req;
    req.set_id(id);
    req.set_after_seq(after);
    req.set_include_metrics(true);
    auto ctx = env.stream_context();
    auto reader = env.stub->WatchJob(ctx.get(), req);
    gcl::v1::JobEvent e;
    while (reader->Read(&e)) {
      after = e.seq();
      tries = 0;
      printer.OnEvent(e);
    }
    s = reader->Finish();
    if (s.ok()) break;
    printer.EndLine();
    if (!Reconnect(env, s, &tries)) return FailForJob(env, s, id);
  }
  printer.EndLine();
  s = ReadJob(env, id, &job);
  if (!s.ok()) return FailForJob(env, s, id);
  if (!env.json) *env.out << job.id() << " ended " << StateName(job.state()) << "\n";
  return job.state() == gcl::v1::JOB_STATE_SUCCEEDED ? kExitOk : kExitFailed;
}

int LogsVerb(const CallEnv& env, const std::string& id, int attempt, bool follow) {
  gcl::v1::Job job;
  grpc::Status s = ReadJob(env, id, &job);
  if (!s.ok()) return FailForJob(env, s, id);
  int64_t after = 0;
  int tries = 0;
  int64_t lines = 0;
  while (true) {
    gcl::v1::StreamLogsRequest req;
    req.set_id(id);
    req.set_attempt(attempt);
    req.set_follow(follow);
    req.set_after_seq(after);
    auto ctx = env.stream_context();
    auto reader = env.stub->StreamLogs(ctx.get(), req);
    gcl::v1::LogLine line;
    while (reader->Read(&line)) {
      after = line.seq();
      tries = 0;
      ++lines;
      if (env.json) {
        *env.out << ToJsonLine(line) << "\n";
        continue;
      }
      std::string text = line.text();
      if (!text.empty() && text.back() == '\n') text.pop_back();
      *env.out << "[attempt " << line.attempt() << " " << line.stream() << "] " << text << "\n";
    }
    s = reader->Finish();
    if (s.ok()) break;
    if (!follow || !Reconnect(env, s, &tries)) return FailForJob(env, s, id);
  }
  if (lines == 0 && !env.json) {
    *env.err << "gclctl: no log lines for " << id
             << (attempt > 0 ? absl::StrCat(" attempt ", attempt) : std::string())
             << (follow ? std::string() : " yet (the job is " + StateName(job.state()) + ")")
             << "\n";
  }
  return kExitOk;
}

}  // namespace gcl::client
