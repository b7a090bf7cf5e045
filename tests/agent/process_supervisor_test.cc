#include "worker/agent/process_supervisor.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

struct Lines {
  std::mutex mu;
  std::vector<std::string> out, err;
};

LaunchOptions Sh(const std::string& script, Lines* lines = nullptr) {
  LaunchOptions o;
  o.argv = {"/bin/sh", "-c", script};
  if (lines != nullptr) {
    o.on_stdout = [lines](std::string_view l) {
      std::lock_guard<std::mutex> lock(lines->mu);
      lines->out.emplace_back(l);
    };
    o.on_stderr = [lines](std::string_view l) {
      std::lock_guard<std::mutex> lock(lines->mu);
      lines->err.emplace_back(l);
    };
  }
  return o;
}

bool Alive(pid_t pid) { return ::kill(pid, 0) == 0; }

TEST(ProcessSupervisorTest, NormalExitDeliversLinesEnvAndWorkingDir) {
  testing::TempDir dir;
  Lines lines;
  LaunchOptions o = Sh("echo one; echo \"$GCL_X\"; pwd; printf 'no newline'; echo warn >&2", &lines);
  o.env = {"GCL_X=hello world"};
  o.working_dir = dir.path().string();
  GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(std::move(o)));
  const ExitInfo e = p->Wait();
  EXPECT_TRUE(e.ok());
  EXPECT_EQ(e.exit_code, 0);
  EXPECT_EQ(e.signal, 0);
  EXPECT_FALSE(e.killed);
  EXPECT_EQ(e.reason, "exited with code 0");
  EXPECT_THAT(lines.out, ElementsAre("one", "hello world", dir.path().string(), "no newline"));
  EXPECT_THAT(lines.err, ElementsAre("warn"));
  EXPECT_FALSE(p->Running());
}

TEST(ProcessSupervisorTest, NonZeroExitReasonQuotesLastErrorLine) {
  GCL_ASSERT_OK_AND_ASSIGN(
      auto p, ProcessSupervisor::Launch(Sh("echo 'loading' >&2; "
                                           "echo 'gcl-train pretrain: error: dataset.path: no such "
                                           "folder' >&2; echo 'bye' >&2; exit 1")));
  const ExitInfo e = p->Wait();
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_EQ(e.signal, 0);
  EXPECT_EQ(e.last_error_line, "gcl-train pretrain: error: dataset.path: no such folder");
  EXPECT_EQ(e.reason,
            "exited with code 1: gcl-train pretrain: error: dataset.path: no such folder");
}

TEST(ProcessSupervisorTest, NonZeroExitWithoutStderr) {
  GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(Sh("exit 2")));
  EXPECT_EQ(p->Wait().reason, "exited with code 2");
}

TEST(ProcessSupervisorTest, CrashBySignal) {
  GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(Sh("kill -SEGV $$")));
  const ExitInfo e = p->Wait();
  EXPECT_EQ(e.signal, SIGSEGV);
  EXPECT_EQ(e.exit_code, -1);
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.reason, "killed by signal 11");
}

TEST(ProcessSupervisorTest, MissingExecutableIsNotFound) {
  LaunchOptions o;
  o.argv = {"/nonexistent/gcl-train", "pretrain"};
  EXPECT_THAT(ProcessSupervisor::Launch(std::move(o)),
              testing::StatusIs(absl::StatusCode::kNotFound, "/nonexistent/gcl-train"));
  EXPECT_THAT(ProcessSupervisor::Launch(LaunchOptions{}),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "argv"));
}

TEST(ProcessSupervisorTest, WatchdogKillsAHangingChild) {
  GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(Sh("exec sleep 30")));
  const absl::Time start = absl::Now();
  p->SetWatchdog([start] { return start; }, absl::Milliseconds(300), absl::Seconds(2));
  auto e = p->WaitFor(absl::Seconds(10));
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->killed);
  EXPECT_TRUE(e->stalled);
  EXPECT_EQ(e->signal, SIGTERM);  // sleep dies of the SIGTERM, no SIGKILL needed
  EXPECT_EQ(e->reason, "no progress for 0.3 s: killed");
}

TEST(ProcessSupervisorTest, WatchdogSparesAChildThatMakesProgress) {
  testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(Sh("sleep 1")));
  // Activity is always "now": the stall timeout never elapses.
  p->SetWatchdog([] { return absl::Now(); }, absl::Milliseconds(200));
  const ExitInfo e = p->Wait();
  EXPECT_TRUE(e.ok());
  EXPECT_FALSE(e.stalled);
}

TEST(ProcessSupervisorTest, KillEscalatesToSigkillWhenTermIsTrapped) {
  testing::TempDir dir;
  const std::string ready = (dir.path() / "ready").string();
  Lines lines;
  GCL_ASSERT_OK_AND_ASSIGN(
      auto p, ProcessSupervisor::Launch(Sh(
                  "trap 'echo got TERM' TERM; touch " + ready + "; while :; do sleep 0.05; done",
                  &lines)));
  for (int i = 0; i < 200 && ::access(ready.c_str(), F_OK) != 0; ++i) ::usleep(10000);
  const absl::Time start = absl::Now();
  p->Kill(absl::Milliseconds(500), "cancelled: killed");
  const ExitInfo e = p->Wait();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(450));  // the grace was honoured
  EXPECT_EQ(e.signal, SIGKILL);
  EXPECT_TRUE(e.killed);
  EXPECT_FALSE(e.stalled);
  EXPECT_EQ(e.reason, "cancelled: killed");
  EXPECT_THAT(lines.out, ::testing::Contains("got TERM"));
}

TEST(ProcessSupervisorTest, KillReachesGrandchildren) {
  testing::TempDir dir;
  const std::string pidfile = (dir.path() / "pid").string();
  GCL_ASSERT_OK_AND_ASSIGN(
      auto p, ProcessSupervisor::Launch(Sh("sleep 30 & echo $! > " + pidfile + ".tmp; mv " +
                                           pidfile + ".tmp " + pidfile + "; wait")));
  for (int i = 0; i < 300 && ::access(pidfile.c_str(), F_OK) != 0; ++i) ::usleep(10000);
  pid_t grandchild = 0;
  std::ifstream(pidfile) >> grandchild;
  ASSERT_GT(grandchild, 0);
  ASSERT_TRUE(Alive(grandchild));
  p->Kill(absl::Seconds(2));
  const ExitInfo e = p->Wait();
  EXPECT_TRUE(e.killed);
  EXPECT_EQ(e.reason, "killed by signal 15");
  // The grandchild was in the same process group; it is a zombie of init at
  // most for a moment, so poll briefly.
  bool gone = false;
  for (int i = 0; i < 200 && !gone; ++i) {
    gone = !Alive(grandchild);
    if (!gone) ::usleep(10000);
  }
  EXPECT_TRUE(gone);
}

TEST(ProcessSupervisorTest, BackgroundGrandchildDoesNotBlockWaitAfterNormalExit) {
  // The child exits while a grandchild still holds its stdout: Wait must not
  // hang on the pipe, and the orphan is killed with the job.
  GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(Sh("sleep 30 & echo started")));
  auto e = p->WaitFor(absl::Seconds(10));
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->ok());
}

TEST(ProcessSupervisorTest, DestructorKillsARunningChild) {
  pid_t pid;
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto p, ProcessSupervisor::Launch(Sh("exec sleep 30")));
    pid = p->pid();
    ASSERT_TRUE(Alive(pid));
  }
  EXPECT_FALSE(Alive(pid));
}

}  // namespace
}  // namespace gcl::agent
