// gclctl's read verbs (watch, logs, results, checkpoints, download,
// workers) run in-process against a real Coordinator on loopback whose
// registry and artifact store hold seeded data: exact table text, JSON
// shape, downloaded bytes and resume, error messages and exit codes.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include "client/gclctl.h"
#include "gcl/base/sha256.h"
#include "tests/server/seeded_coordinator.h"

namespace gcl::server {
namespace {

constexpr size_t kMiB = size_t{1} << 20;  // StreamCheckpoint's chunk size

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
using ::testing::Not;

class GclctlReadTest : public SeededCoordinatorTest {
 protected:
  int Run(std::vector<std::string> args, bool tty = false) {
    client::ConfigSources src;
    src.flag_addr = coordinator_->address();
    return RunAt(src, std::move(args), tty);
  }
  int RunAt(const client::ConfigSources& src, std::vector<std::string> args, bool tty = false) {
    std::ostringstream o, e;
    int rc = client::RunGclctl(args, src, o, e, tty);
    out_ = o.str();
    err_ = e.str();
    return rc;
  }
  std::string ReadFile(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::vector<std::string> Lines(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) out.push_back(line);
    return out;
  }

  std::string out_, err_;
};

TEST_F(GclctlReadTest, LogsPrintsAttemptStreamAndText) {
  const std::string job = RunningJob(/*attempts=*/2);
  Log(job, 1, "stdout", "loading data\n");
  Log(job, 2, "stderr", "warning: slow disk");
  Log(job, 2, "agent", "trainer started");
  ASSERT_EQ(Run({"logs", job}), 0) << err_;
  EXPECT_EQ(out_,
            "[attempt 1 stdout] loading data\n"
            "[attempt 2 stderr] warning: slow disk\n"
            "[attempt 2 agent] trainer started\n");
  ASSERT_EQ(Run({"logs", job, "--attempt", "2"}), 0) << err_;
  EXPECT_EQ(out_, "[attempt 2 stderr] warning: slow disk\n[attempt 2 agent] trainer started\n");

  ASSERT_EQ(Run({"logs", job, "--output", "json"}), 0) << err_;
  std::vector<std::string> lines = Lines(out_);
  ASSERT_EQ(lines.size(), 3u);
  gcl::v1::LogLine parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[1], &parsed).ok()) << lines[1];
  EXPECT_EQ(parsed.attempt(), 2);
  EXPECT_EQ(parsed.stream(), "stderr");
  EXPECT_GT(parsed.seq(), 0);

  ASSERT_EQ(Run({"logs", job, "--attempt", "3"}), 0);
  EXPECT_EQ(out_, "");
  EXPECT_EQ(err_, "gclctl: no log lines for " + job + " attempt 3 yet (the job is RUNNING)\n");

  EXPECT_EQ(Run({"logs", "j-000000000000"}), 1);
  EXPECT_EQ(err_, "gclctl: no job j-000000000000 (check `gclctl list`)\n");
  EXPECT_EQ(Run({"logs", job, "--attempt", "0"}), 2);
  EXPECT_EQ(Run({"logs"}), 2);
}

TEST_F(GclctlReadTest, LogsFollowEndsWhenTheJobEnds) {
  const std::string job = RunningJob();
  Log(job, 1, "stdout", "step 1");
  int rc = -1;
  std::thread follower([&] { rc = Run({"logs", job, "-f"}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  Log(job, 1, "stdout", "step 2");
  GCL_ASSERT_OK(Finish(job, 1));
  follower.join();
  EXPECT_EQ(rc, 0) << err_;
  EXPECT_EQ(out_, "[attempt 1 stdout] step 1\n[attempt 1 stdout] step 2\n");
}

TEST_F(GclctlReadTest, ResultsTableMeanStdPerCellAndPerClassAndJson) {
  storage::NewJob e;
  e.name = "exp";
  e.kind = "experiment";
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobRecord exp, reg().CreateJob(e));
  const std::string kid1 = RunningJob(1, "w1", exp.id);
  const std::string kid2 = RunningJob(1, "w1", exp.id);
  Results(kid1, "gcl", 1, 0, {0.8, 0.9});  // repeat means 0.85 and 0.75:
  Results(kid2, "gcl", 1, 1, {0.7, 0.8});  // 0.800 +- 0.071 (sample std)
  Results(kid1, "gcl", 2, 0, {0.9});
  Results(kid2, "random_init", 1, 0, {0.5});

  ASSERT_EQ(Run({"results", exp.id}), 0) << err_;
  EXPECT_EQ(out_,
            "VARIANT      M_lab=1              M_lab=2\n"
            "gcl          0.800 \u00b1 0.071 (n=2)  0.900 \u00b1 0.000 (n=1)\n"
            "random_init  0.500 \u00b1 0.000 (n=1)  -\n");
  ASSERT_EQ(Run({"results", exp.id, "--per-class"}), 0) << err_;
  EXPECT_EQ(out_,
            "VARIANT      M_lab=1              M_lab=2\n"
            "gcl          0.800 \u00b1 0.071 (n=2)  0.900 \u00b1 0.000 (n=1)\n"
            "  LV         0.850 \u00b1 0.071        0.950 \u00b1 0.000\n"
            "random_init  0.500 \u00b1 0.000 (n=1)  -\n"
            "  LV         0.550 \u00b1 0.000        -\n");

  ASSERT_EQ(Run({"results", exp.id, "-o", "json"}), 0) << err_;
  gcl::v1::ListResultsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_, &parsed).ok()) << out_;
  ASSERT_EQ(parsed.cells_size(), 3);
  EXPECT_EQ(parsed.cells(0).variant(), "gcl");
  EXPECT_NEAR(parsed.cells(0).dice_mean(), 0.8, 1e-9);
  EXPECT_THAT(out_, HasSubstr("\"labeled_volumes\": \"1\""));  // proto field names, int64 as text

  // No id: only finished jobs, each under its own heading.
  ASSERT_EQ(Run({"results"}), 0) << err_;
  EXPECT_EQ(out_, "no results yet: no finished job has reported Dice scores\n");
  GCL_ASSERT_OK(Finish(kid1, 1));
  GCL_ASSERT_OK(Finish(kid2, 1));
  GCL_ASSERT_OK(reg().StartAttempt(exp.id, "w1").status());
  GCL_ASSERT_OK(Finish(exp.id, 1));
  ASSERT_EQ(Run({"results"}), 0) << err_;
  EXPECT_THAT(out_, ::testing::StartsWith("job " + exp.id +
                                          " (Dice, mean \u00b1 std over repeats)\nVARIANT"));

  const std::string empty = RunningJob();
  ASSERT_EQ(Run({"results", empty}), 0);
  EXPECT_EQ(out_,
            "no results for " + empty + " yet (fine-tuning runs report them when they end)\n");
  EXPECT_EQ(Run({"results", "j-000000000000"}), 1);
  EXPECT_EQ(err_, "gclctl: no job j-000000000000 (check `gclctl list`)\n");
  EXPECT_EQ(Run({"results", "a", "b"}), 2);
}

TEST_F(GclctlReadTest, CheckpointsTableAndJson) {
  const std::string job = RunningJob();
  storage::CheckpointRecord a = Checkpoint(job, 1, 10, "abcd", 0.5);
  storage::CheckpointRecord b = Checkpoint(job, 1, 200, std::string(2048, 'x'));
  ASSERT_EQ(Run({"checkpoints", job}), 0) << err_;
  const std::string sha_a = gcl::Sha256Hex("abcd").substr(0, 12);
  const std::string sha_b = gcl::Sha256Hex(std::string(2048, 'x')).substr(0, 12);
  EXPECT_EQ(out_, "ID              ATTEMPT  STEP     SIZE  SHA256        METRIC\n" +
                      storage::CheckpointId(a.id) + "        1    10      4 B  " + sha_a +
                      "  val_dice=0.5000\n" + storage::CheckpointId(b.id) +
                      "        1   200  2.0 KiB  " + sha_b + "  -\n");
  ASSERT_EQ(Run({"checkpoints", job, "--output", "json"}), 0) << err_;
  gcl::v1::ListCheckpointsResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_, &parsed).ok()) << out_;
  ASSERT_EQ(parsed.checkpoints_size(), 2);
  EXPECT_EQ(parsed.checkpoints(1).sha256(), gcl::Sha256Hex(std::string(2048, 'x')));

  const std::string none = RunningJob();
  ASSERT_EQ(Run({"checkpoints", none}), 0);
  EXPECT_EQ(out_, "no checkpoints for " + none + " yet\n");
  EXPECT_EQ(Run({"checkpoints", "j-000000000000"}), 1);
  EXPECT_EQ(err_, "gclctl: no job j-000000000000 (check `gclctl list`)\n");
}

TEST_F(GclctlReadTest, DownloadVerifiesAndResumesFromThePartialFile) {
  const std::string job = RunningJob();
  std::string bytes(3 * kMiB + 777, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>((i * 7919) >> 5);
  storage::CheckpointRecord rec = Checkpoint(job, 1, 42, bytes);
  const std::string id = storage::CheckpointId(rec.id);
  const std::filesystem::path file = dir_.path() / "enc.ckpt";
  const std::string partial = file.string() + ".partial";

  ASSERT_EQ(Run({"download", id, "-o", file.string()}), 0) << err_;
  EXPECT_TRUE(ReadFile(file) == bytes);
  EXPECT_FALSE(std::filesystem::exists(partial));
  EXPECT_EQ(out_, file.string() + ": " + id + " (job " + job + ", step 42), 3.0 MiB, sha256 " +
                      gcl::Sha256Hex(bytes).substr(0, 12) + " verified\n");

  // A broken earlier download left the first 1.5 MiB: only the rest is fetched.
  std::filesystem::remove(file);
  std::ofstream(partial, std::ios::binary) << bytes.substr(0, 1572864);
  ASSERT_EQ(Run({"download", id, "-o", file.string()}), 0) << err_;
  EXPECT_EQ(err_, "gclctl: resuming " + partial + " at byte 1572864\n");
  EXPECT_TRUE(ReadFile(file) == bytes);

  // A damaged partial file: the whole-file sha256 catches it; nothing is kept.
  std::filesystem::remove(file);
  std::string damaged = bytes.substr(0, 1000);
  damaged[10] ^= 1;
  std::ofstream(partial, std::ios::binary) << damaged;
  EXPECT_EQ(Run({"download", id, "-o", file.string()}), 1);
  EXPECT_THAT(err_, HasSubstr("arrived damaged: sha256 "));
  EXPECT_THAT(err_, HasSubstr("expected " + gcl::Sha256Hex(bytes)));
  EXPECT_FALSE(std::filesystem::exists(partial));
  EXPECT_FALSE(std::filesystem::exists(file));
  // ... and the next run starts afresh.
  ASSERT_EQ(Run({"download", id, "-o", file.string()}), 0) << err_;
  EXPECT_TRUE(ReadFile(file) == bytes);

  // A partial file longer than the checkpoint belongs to something else.
  std::ofstream(partial, std::ios::binary) << bytes << "extra";
  ASSERT_EQ(Run({"download", id, "-o", file.string()}), 0) << err_;
  EXPECT_THAT(err_, HasSubstr("does not belong to " + id + "; downloading afresh"));
  EXPECT_TRUE(ReadFile(file) == bytes);
}

TEST_F(GclctlReadTest, DownloadErrorsSayWhatToDo) {
  const std::string file = (dir_.path() / "x.ckpt").string();
  EXPECT_EQ(Run({"download", "c-0000000000ff", "-o", file}), 1);
  EXPECT_EQ(err_,
            "gclctl: no checkpoint c-0000000000ff (`gclctl checkpoints JOB` lists a job's "
            "checkpoints)\n");
  EXPECT_FALSE(std::filesystem::exists(file + ".partial"));
  EXPECT_EQ(Run({"download", "j-123", "-o", file}), 1);
  EXPECT_THAT(err_, HasSubstr("checkpoint id 'j-123': expected c- and 12 hex digits"));
  EXPECT_THAT(err_, HasSubstr("`gclctl checkpoints JOB` lists them"));
  EXPECT_EQ(Run({"download", "c-0000000000ff"}), 2);
  EXPECT_EQ(err_, "gclctl: download needs -o FILE (where to write the checkpoint)\n");

  const std::string job = RunningJob();
  storage::CheckpointRecord gone = Checkpoint(job, 1, 1, "bytes");
  std::filesystem::remove(coordinator_->artifacts().root() / gone.path);
  EXPECT_EQ(Run({"download", storage::CheckpointId(gone.id), "-o", file}), 1);
  EXPECT_THAT(err_, HasSubstr("the coordinator cannot serve this checkpoint"));
  EXPECT_THAT(err_, HasSubstr("missing from the artifact store"));
}

TEST_F(GclctlReadTest, WorkersTableAndJson) {
  ASSERT_EQ(Run({"workers"}), 0) << err_;
  EXPECT_EQ(out_, "no workers registered (start gcl-worker on a GPU host, pointed at " +
                      coordinator_->address() + ")\n");
  Worker("w1", "gpu-box-1", 2);
  Worker("w2", "gpu-box-2", 1, /*lost=*/true);
  const std::string a = RunningJob(1, "w1");
  const std::string b = RunningJob(1, "w1");
  ASSERT_EQ(Run({"workers"}), 0) << err_;
  std::vector<std::string> lines = Lines(out_);
  ASSERT_EQ(lines.size(), 3u) << out_;
  EXPECT_EQ(lines[0], "ID  HOST       DEVICES  STATE  LEASE LEFT  JOBS");
  EXPECT_THAT(lines[1],
              MatchesRegex("w1  gpu-box-1  2 cpu    READY  (59s  |1m00s)       " + a + "," + b));
  EXPECT_EQ(lines[2], "w2  gpu-box-2  1 cpu    LOST   -           -");
  ASSERT_EQ(Run({"workers", "--output", "json"}), 0) << err_;
  gcl::v1::ListWorkersResponse parsed;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(out_, &parsed).ok()) << out_;
  ASSERT_EQ(parsed.workers_size(), 2);
  EXPECT_EQ(parsed.workers(0).running_job_ids_size(), 2);
  EXPECT_EQ(Run({"workers", "extra"}), 2);
}

TEST_F(GclctlReadTest, WatchShowsProgressConflictsAndCheckpoints) {
  const std::string job = RunningJob();
  Metrics(job, 4, -0.2, 0.1, /*conflicts=*/1, /*total=*/5);
  Progress(job, 5, 10, 1.0, 0.2);
  storage::CheckpointRecord c = Checkpoint(job, 1, 5, std::string(1536, 'c'));
  Progress(job, 10, 10, 0.5, 0.2);
  GCL_ASSERT_OK(Finish(job, 1));

  ASSERT_EQ(Run({"watch", job}), 0) << err_;
  std::vector<std::string> lines = Lines(out_);
  ASSERT_EQ(lines.size(), 7u) << out_;
  EXPECT_THAT(lines[0], EndsWith("  submitted -> QUEUED: waiting for a worker"));
  EXPECT_THAT(lines[1], EndsWith("  QUEUED -> RUNNING (attempt 1): attempt 1 on worker w1"));
  EXPECT_THAT(lines[2], MatchesRegex("[0-9]{2}:[0-9]{2}:[0-9]{2}  RUNNING pretrain .*"));
  EXPECT_THAT(lines[2],
              EndsWith("RUNNING pretrain [##########----------]  50% step 5/10  loss 1.0000  "
                       "0.20 s/step  ETA 1s  conflicts 20.0% of checks, 1/2 pairs opposed, "
                       "worst patient|phase cos -0.20 -> 0.10"));
  EXPECT_THAT(lines[3],
              EndsWith("  checkpoint " + storage::CheckpointId(c.id) + " at step 5 (1.5 KiB)"));
  EXPECT_THAT(lines[4], HasSubstr("[####################] 100% step 10/10  loss 0.5000"));
  EXPECT_THAT(lines[4], HasSubstr("ETA 0s  conflicts 20.0%"));  // the figures stay until new ones
  EXPECT_THAT(lines[5], HasSubstr("RUNNING -> SUCCEEDED"));
  EXPECT_THAT(out_, Not(HasSubstr("\r")));
  EXPECT_EQ(lines[6], job + " ended SUCCEEDED");

  // On a terminal the progress line is redrawn in place.
  ASSERT_EQ(Run({"watch", job}, /*tty=*/true), 0) << err_;
  EXPECT_THAT(out_, HasSubstr("\rRUNNING pretrain [##########"));
  EXPECT_THAT(out_, HasSubstr("0.10\x1b[K\r\x1b[K"));  // cleared before the next permanent line
  EXPECT_THAT(
      out_,
      Not(HasSubstr("50% step 5/10  loss 1.0000  0.20 s/step  ETA 1s  conflicts 20.0% of checks, "
                    "1/2 pairs opposed, worst patient|phase cos -0.20 -> 0.10\n")));

  // JSON Lines: one event per line, metrics included.
  ASSERT_EQ(Run({"watch", job, "--output", "json"}), 0) << err_;
  lines = Lines(out_);
  ASSERT_EQ(lines.size(), 7u) << out_;
  gcl::v1::JobEvent e;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(lines[2], &e).ok()) << lines[2];
  EXPECT_TRUE(e.has_metrics());
  EXPECT_EQ(e.metrics().samples_size(), 7);

  // A failed job: exit 1.
  const std::string failed = RunningJob();
  GCL_ASSERT_OK(Finish(failed, 1, storage::AttemptState::kFailed));
  GCL_ASSERT_OK(reg().Transition(failed, storage::JobState::kCancelled, "test"));
  EXPECT_EQ(Run({"watch", failed}), 1);
  EXPECT_THAT(out_, EndsWith(failed + " ended CANCELLED\n"));
  EXPECT_EQ(Run({"watch", "j-000000000000"}), 1);
  EXPECT_EQ(err_, "gclctl: no job j-000000000000 (check `gclctl list`)\n");
}

TEST_F(GclctlReadTest, WatchReconnectsAcrossACoordinatorRestartAndMissesNothing) {
  const std::string job = RunningJob();
  Progress(job, 1, 4, 3.0, 0.5);
  const std::string address = coordinator_->address();
  int rc = -1;
  std::thread watcher([&] { rc = Run({"watch", job}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  coordinator_.reset();  // the watch breaks with UNAVAILABLE
  {
    // Meanwhile (coordinator down) the job makes progress and ends.
    GCL_ASSERT_OK_AND_ASSIGN(auto reg2,
                             storage::Registry::Open((dir_.path() / "registry.db").string()));
    gcl::v1::Progress p;
    p.set_step(4);
    p.set_total_steps(4);
    GCL_ASSERT_OK(reg2->AppendEvent(job, kProgressEvent, "", EventPayload(p)).status());
    storage::AttemptOutcome ok;
    ok.state = storage::AttemptState::kSucceeded;
    GCL_ASSERT_OK(reg2->FinishAttempt(job, 1, ok).status());
  }
  Coordinator::Options o;
  o.listen = address;  // the same port, so the watcher finds it again
  o.db_path = (dir_.path() / "registry.db").string();
  o.watch_poll_ms = 20;
  o.shutdown_grace_ms = 500;
  GCL_ASSERT_OK_AND_ASSIGN(coordinator_, Coordinator::Create(o));
  GCL_ASSERT_OK(coordinator_->Start());
  watcher.join();
  EXPECT_EQ(rc, 0) << err_;
  EXPECT_THAT(err_,
              HasSubstr("gclctl: lost the coordinator at " + address + "; reconnecting (1/10)"));
  std::vector<std::string> lines = Lines(out_);
  ASSERT_EQ(lines.size(), 6u) << out_;  // queued, running, 2 progress lines, succeeded, ended
  EXPECT_THAT(lines[2], HasSubstr("step 1/4"));
  EXPECT_THAT(lines[3], HasSubstr("step 4/4"));
  EXPECT_THAT(lines[4], HasSubstr("RUNNING -> SUCCEEDED"));
}

TEST(GclctlReadVerbsTest, UnreachableCoordinatorSaysWhatToCheck) {
  client::ConfigSources src;
  src.flag_addr = "127.0.0.1:1";  // nothing listens on port 1
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"logs", "j-000000000001"},
           {"results"},
           {"checkpoints", "j-000000000001"},
           {"workers"},
           {"watch", "j-000000000001"},
           {"download", "c-000000000001", "-o", "/tmp/unused-gcl-test"}}) {
    std::ostringstream o, e;
    EXPECT_EQ(client::RunGclctl(args, src, o, e), 1) << args[0];
    EXPECT_EQ(e.str(),
              "gclctl: cannot reach the coordinator at 127.0.0.1:1 (is gcl-coordinator running?)\n")
        << args[0];
  }
}

}  // namespace
}  // namespace gcl::server
