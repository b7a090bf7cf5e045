// gclctl's read verbs beyond get/list: watch, logs, results, checkpoints,
// download and workers. RunGclctl (gclctl.h) parses the command line and
// calls these with a CallEnv; each returns the process exit code (0 ok,
// 1 the coordinator refused, could not be reached or the job ended badly).
#pragma once

#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include <grpcpp/grpcpp.h>

#include "gcl/v1/job.grpc.pb.h"

namespace gcl::client {

inline constexpr int kExitOk = 0, kExitFailed = 1, kExitUsage = 2;

struct CallEnv {
  gcl::v1::JobService::Stub* stub = nullptr;
  std::string addr;  // for messages
  bool tls = false;  // the channel uses TLS (shapes connection hints in messages)
  std::ostream* out = nullptr;
  std::ostream* err = nullptr;
  bool json = false;  // --output json
  bool tty = false;   // *out is a terminal: watch redraws its progress line in place
  // A fresh context per call: unary ones carry a deadline, stream ones none
  // (keepalive notices a dead coordinator). Credentials belong here.
  std::function<std::unique_ptr<grpc::ClientContext>()> unary_context;
  std::function<std::unique_ptr<grpc::ClientContext>()> stream_context;
  // Reconnects of a broken watch/logs -f stream (resumed after the last
  // seq seen) and the pause before each.
  int reconnect_tries = 10;
  int reconnect_pause_ms = 1000;
};

// Prints the message for a failed call about job `id` (unknown id: "no job
// ID (check `gclctl list`)") and returns kExitFailed.
int FailForJob(const CallEnv& env, const grpc::Status& status, const std::string& id);

// Events of the job (state changes, progress with the latest conflict
// figures, checkpoints) until it ends; 0 when it SUCCEEDED, 1 otherwise.
int WatchVerb(const CallEnv& env, const std::string& id);
// "[attempt N stream] text" lines; follow: until the job ends.
int LogsVerb(const CallEnv& env, const std::string& id, int attempt, bool follow);
// The Dice table of a job (or experiment), or of every finished job.
int ResultsVerb(const CallEnv& env, const std::string& id, bool per_class);
int CheckpointsVerb(const CallEnv& env, const std::string& job_id);
// Streams the checkpoint to FILE.partial (resuming from its size), checks
// the sha256 of the whole file, then renames it to FILE.
int DownloadVerb(const CallEnv& env, const std::string& checkpoint_id, const std::string& file);
int WorkersVerb(const CallEnv& env);

}  // namespace gcl::client
