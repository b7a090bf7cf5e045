// Supervises one child process (a gcl-train rank): fork/exec in its own
// process group, stdout/stderr delivered line by line, graceful kill
// (SIGTERM, then SIGKILL after a grace period), a no-progress watchdog, and a
// one-line reason for how it ended. A crashing or hanging child never takes
// the agent down: every failure ends up in ExitInfo.
#pragma once

#include <sys/types.h>

#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace gcl::agent {

struct LaunchOptions {
  // argv[0] is the executable's path (no PATH search). REQUIRES: non-empty.
  std::vector<std::string> argv;
  // "KEY=VALUE" entries added to (or replacing those of) the agent's environment.
  std::vector<std::string> env;
  // Working directory of the child; empty = the agent's.
  std::string working_dir;
  // Called once per line (without '\n'; a final unterminated line too) from a
  // reader thread per stream; lines longer than 64 KiB are split. May be empty.
  std::function<void(std::string_view line)> on_stdout;
  std::function<void(std::string_view line)> on_stderr;
};

// How the child ended.
struct ExitInfo {
  int exit_code = -1;   // exit status when it exited; -1 when killed by a signal
  int signal = 0;       // terminating signal, 0 when it exited
  bool killed = false;  // Kill() was called (cancel or watchdog) before it ended
  bool stalled = false; // the watchdog killed it
  // "exited with code 0", "exited with code 1: <last stderr error line>",
  // "killed by signal 9", "no progress for 600 s: killed", or Kill()'s reason.
  std::string reason;
  std::string last_error_line;  // last stderr line containing "error", else the last stderr line
  bool ok() const { return signal == 0 && exit_code == 0; }
};

class ProcessSupervisor {
 public:
  // Starts the child. kNotFound / kPermissionDenied when argv[0] cannot be
  // executed (reported by the child through a close-on-exec pipe),
  // kInvalidArgument for an empty argv, kInternal when fork/pipe fail.
  static absl::StatusOr<std::unique_ptr<ProcessSupervisor>> Launch(LaunchOptions options);

  // Kills the whole process group and waits for it (so no child outlives the
  // supervisor), then joins the threads.
  ~ProcessSupervisor();
  ProcessSupervisor(const ProcessSupervisor&) = delete;
  ProcessSupervisor& operator=(const ProcessSupervisor&) = delete;

  pid_t pid() const { return pid_; }

  // Asynchronous: sends SIGTERM to the process group now and SIGKILL when it
  // is still alive `grace` later. `reason` (if non-empty) becomes
  // ExitInfo::reason. Later calls only shorten the grace. No-op once ended.
  void Kill(absl::Duration grace, std::string reason = "");

  // Kills the child (grace `grace`) with reason "no progress for N s: killed"
  // when now - max(launch time, last_activity()) exceeds `stall_timeout`.
  // `last_activity` is called from the monitor thread every poll (~50 ms).
  void SetWatchdog(std::function<absl::Time()> last_activity, absl::Duration stall_timeout,
                   absl::Duration grace = absl::Seconds(5));

  // Blocks until the child has ended and its output has been delivered.
  ExitInfo Wait();
  // Like Wait with a limit; nullopt when still running after `timeout`.
  std::optional<ExitInfo> WaitFor(absl::Duration timeout);
  bool Running();

 private:
  ProcessSupervisor() = default;
  void ReadLoop(int fd, bool is_stderr);
  void MonitorLoop();

  LaunchOptions options_;
  pid_t pid_ = -1;
  absl::Time started_;
  std::thread stdout_thread_, stderr_thread_, monitor_thread_;

  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;                   // reaped and output delivered
  std::optional<ExitInfo> exit_;
  std::optional<absl::Time> kill_at_;   // SIGKILL deadline after a SIGTERM
  bool term_sent_ = false;
  std::string kill_reason_;
  bool killed_ = false, stalled_ = false;
  std::string last_error_line_, last_stderr_line_;
  std::function<absl::Time()> last_activity_;
  absl::Duration stall_timeout_ = absl::InfiniteDuration();
  absl::Duration stall_grace_ = absl::Seconds(5);
};

}  // namespace gcl::agent
