#include "worker/agent/process_supervisor.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

extern char** environ;

namespace gcl::agent {
namespace {

constexpr size_t kMaxLine = 64 << 10;
constexpr absl::Duration kPoll = absl::Milliseconds(20);

// The agent's environment with `overrides` applied (same key replaces).
std::vector<std::string> MergedEnv(const std::vector<std::string>& overrides) {
  std::map<std::string, std::string> kv;
  std::vector<std::string> order;
  auto put = [&](const std::string& entry) {
    const size_t eq = entry.find('=');
    const std::string key = entry.substr(0, eq);
    if (kv.find(key) == kv.end()) order.push_back(key);
    kv[key] = entry;
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) put(*e);
  for (const auto& e : overrides) put(e);
  std::vector<std::string> out;
  out.reserve(order.size());
  for (const auto& k : order) out.push_back(kv[k]);
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<ProcessSupervisor>> ProcessSupervisor::Launch(
    LaunchOptions options) {
  if (options.argv.empty()) return absl::InvalidArgumentError("launch: empty argv");
  // Everything the child needs is prepared before fork: between fork and
  // exec only async-signal-safe calls are allowed (the agent has threads).
  std::vector<char*> argv;
  for (auto& a : options.argv) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_storage = MergedEnv(options.env);
  std::vector<char*> envp;
  for (auto& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  int out_pipe[2], err_pipe[2], exec_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0) return absl::InternalError("pipe failed");
  if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
    ::close(out_pipe[0]);
    ::close(out_pipe[1]);
    return absl::InternalError("pipe failed");
  }
  if (::pipe2(exec_pipe, O_CLOEXEC) != 0) {
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) ::close(fd);
    return absl::InternalError("pipe failed");
  }
  const char* cwd = options.working_dir.empty() ? nullptr : options.working_dir.c_str();
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    for (int fd : {out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1], exec_pipe[0], exec_pipe[1]})
      ::close(fd);
    return absl::InternalError(absl::StrCat("fork failed: ", std::strerror(err)));
  }
  if (pid == 0) {
    // Child. Own process group, so Kill() reaches the grandchildren too.
    ::setpgid(0, 0);
    // Blocked signals and ignored ones survive exec: give the trainer defaults.
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
    ::signal(SIGINT, SIG_DFL);
    ::dup2(out_pipe[1], STDOUT_FILENO);
    ::dup2(err_pipe[1], STDERR_FILENO);
    const int devnull = ::open("/dev/null", O_RDONLY);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    int err = 0;
    if (cwd != nullptr && ::chdir(cwd) != 0) {
      err = errno;
    } else {
      ::execve(argv[0], argv.data(), envp.data());
      err = errno;
    }
    ssize_t unused = ::write(exec_pipe[1], &err, sizeof(err));
    (void)unused;
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also in the parent: no race with an early Kill()
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  ::close(exec_pipe[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(exec_pipe[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  ::close(exec_pipe[0]);
  if (n == sizeof(child_errno)) {
    ::waitpid(pid, nullptr, 0);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    const std::string what = absl::StrCat(cwd != nullptr ? "cannot start " : "cannot execute ",
                                          options.argv[0], ": ", std::strerror(child_errno));
    if (child_errno == ENOENT || child_errno == ENOTDIR) return absl::NotFoundError(what);
    if (child_errno == EACCES || child_errno == EPERM) return absl::PermissionDeniedError(what);
    return absl::InternalError(what);
  }

  std::unique_ptr<ProcessSupervisor> sup(new ProcessSupervisor());
  sup->options_ = std::move(options);
  sup->pid_ = pid;
  sup->started_ = absl::Now();
  ProcessSupervisor* self = sup.get();
  const int out_fd = out_pipe[0], err_fd = err_pipe[0];
  sup->stdout_thread_ = std::thread([self, out_fd] { self->ReadLoop(out_fd, false); });
  sup->stderr_thread_ = std::thread([self, err_fd] { self->ReadLoop(err_fd, true); });
  sup->monitor_thread_ = std::thread([self] { self->MonitorLoop(); });
  return sup;
}

ProcessSupervisor::~ProcessSupervisor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!done_) {
      killed_ = true;
      kill_at_ = absl::Now();  // SIGKILL at the next poll
    }
  }
  cv_.notify_all();
  if (monitor_thread_.joinable()) monitor_thread_.join();
}

void ProcessSupervisor::ReadLoop(int fd, bool is_stderr) {
  std::string buf;
  char chunk[4096];
  auto deliver = [&](std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (is_stderr) {
      std::lock_guard<std::mutex> lock(mu_);
      if (!absl::StripAsciiWhitespace(absl::string_view(line.data(), line.size())).empty()) {
        last_stderr_line_ = std::string(line);
        if (absl::StrContains(absl::AsciiStrToLower(last_stderr_line_), "error")) {
          last_error_line_ = last_stderr_line_;
        }
      }
    }
    const auto& cb = is_stderr ? options_.on_stderr : options_.on_stdout;
    if (cb) cb(line);
  };
  while (true) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    buf.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      deliver(std::string_view(buf).substr(start, nl - start));
    }
    buf.erase(0, start);
    while (buf.size() > kMaxLine) {
      deliver(std::string_view(buf).substr(0, kMaxLine));
      buf.erase(0, kMaxLine);
    }
  }
  if (!buf.empty()) deliver(buf);
  ::close(fd);
}

void ProcessSupervisor::MonitorLoop() {
  int status = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno != EINTR)) break;
    const absl::Time now = absl::Now();
    if (last_activity_ && !killed_) {
      auto fn = last_activity_;
      const absl::Duration timeout = stall_timeout_;
      lock.unlock();
      const absl::Time last = std::max(started_, fn());
      lock.lock();
      if (!killed_ && now - last > timeout) {
        killed_ = true;
        stalled_ = true;
        kill_reason_ = absl::StrFormat("no progress for %g s: killed",
                                       absl::ToDoubleSeconds(timeout));
        kill_at_ = now + stall_grace_;
      }
    }
    if (killed_ && !term_sent_) {
      term_sent_ = true;
      ::kill(-pid_, SIGTERM);
    }
    if (kill_at_.has_value() && now >= *kill_at_) {
      ::kill(-pid_, SIGKILL);
      kill_at_.reset();
    }
    cv_.wait_for(lock, absl::ToChronoNanoseconds(kPoll));
  }
  lock.unlock();
  // The trainer's lifetime is the job's: stray grandchildren (which would
  // also keep the pipes open) go with it.
  ::kill(-pid_, SIGKILL);
  if (stdout_thread_.joinable()) stdout_thread_.join();
  if (stderr_thread_.joinable()) stderr_thread_.join();
  lock.lock();
  ExitInfo info;
  info.killed = killed_;
  info.stalled = stalled_;
  info.last_error_line = last_error_line_.empty() ? last_stderr_line_ : last_error_line_;
  if (WIFEXITED(status)) {
    info.exit_code = WEXITSTATUS(status);
    info.reason = absl::StrCat("exited with code ", info.exit_code);
    if (info.exit_code != 0 && !info.last_error_line.empty()) {
      absl::StrAppend(&info.reason, ": ", info.last_error_line);
    }
  } else if (WIFSIGNALED(status)) {
    info.signal = WTERMSIG(status);
    info.reason = absl::StrCat("killed by signal ", info.signal);
  } else {
    info.reason = "lost track of the child (waitpid failed)";
  }
  if (!kill_reason_.empty()) info.reason = kill_reason_;
  exit_ = info;
  done_ = true;
  cv_.notify_all();
}

void ProcessSupervisor::Kill(absl::Duration grace, std::string reason) {
  std::lock_guard<std::mutex> lock(mu_);
  if (done_) return;
  const absl::Time deadline = absl::Now() + std::max(grace, absl::ZeroDuration());
  if (!killed_) {
    killed_ = true;
    kill_reason_ = std::move(reason);
  }
  if (!kill_at_.has_value() || deadline < *kill_at_) kill_at_ = deadline;
  cv_.notify_all();
}

void ProcessSupervisor::SetWatchdog(std::function<absl::Time()> last_activity,
                                    absl::Duration stall_timeout, absl::Duration grace) {
  std::lock_guard<std::mutex> lock(mu_);
  last_activity_ = std::move(last_activity);
  stall_timeout_ = stall_timeout;
  stall_grace_ = grace;
}

ExitInfo ProcessSupervisor::Wait() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [this] { return done_; });
  return *exit_;
}

std::optional<ExitInfo> ProcessSupervisor::WaitFor(absl::Duration timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!cv_.wait_for(lock, absl::ToChronoNanoseconds(timeout), [this] { return done_; })) {
    return std::nullopt;
  }
  return *exit_;
}

bool ProcessSupervisor::Running() {
  std::lock_guard<std::mutex> lock(mu_);
  return !done_;
}

}  // namespace gcl::agent
