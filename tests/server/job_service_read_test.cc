// JobService's read side over real gRPC on loopback: StreamLogs,
// ListCheckpoints, DownloadCheckpoint, ListResults, ListWorkers and
// WatchJob's include_* filters, against data seeded into the real registry
// and artifact store.
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "gcl/base/sha256.h"
#include "tests/server/seeded_coordinator.h"

namespace gcl::server {
namespace {

constexpr size_t kMiB = size_t{1} << 20;  // StreamCheckpoint's chunk size

using ::testing::ElementsAre;
using ::testing::HasSubstr;

class JobServiceReadTest : public SeededCoordinatorTest {
 protected:
  // "A:stream:text" per line, and the final status.
  std::vector<std::string> Logs(const std::string& id, int attempt, bool follow, int64_t after,
                                grpc::Status* status, std::vector<int64_t>* seqs = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gcl::v1::StreamLogsRequest req;
    req.set_id(id);
    req.set_attempt(attempt);
    req.set_follow(follow);
    req.set_after_seq(after);
    auto reader = jobs_->StreamLogs(&ctx, req);
    std::vector<std::string> out;
    gcl::v1::LogLine line;
    while (reader->Read(&line)) {
      out.push_back(std::to_string(line.attempt()) + ":" + line.stream() + ":" + line.text());
      if (seqs != nullptr) seqs->push_back(line.seq());
    }
    *status = reader->Finish();
    return out;
  }

  // The download's chunks from `offset`, concatenated; the first chunk's
  // descriptor in *desc.
  std::string Download(const std::string& id, int64_t offset, grpc::Status* status,
                       gcl::v1::Checkpoint* desc = nullptr, int* chunks = nullptr) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gcl::v1::DownloadCheckpointRequest req;
    req.set_id(id);
    req.set_offset(offset);
    auto reader = jobs_->DownloadCheckpoint(&ctx, req);
    std::string data;
    gcl::v1::CheckpointChunk chunk;
    int n = 0;
    while (reader->Read(&chunk)) {
      EXPECT_EQ(chunk.offset(), offset + static_cast<int64_t>(data.size()));
      EXPECT_EQ(chunk.has_checkpoint(), n == 0) << "descriptor only in the first message";
      if (n == 0 && desc != nullptr) *desc = chunk.checkpoint();
      data += chunk.data();
      ++n;
    }
    if (chunks != nullptr) *chunks = n;
    *status = reader->Finish();
    return data;
  }
};

TEST_F(JobServiceReadTest, StreamLogsFiltersByAttemptAndResumesAfterSeq) {
  const std::string job = RunningJob(/*attempts=*/2);
  Log(job, 1, "stdout", "first try");
  Progress(job, 1, 10, 2.0, 0.1);  // not a log line
  Log(job, 2, "stderr", "second try");
  Log(job, 2, "agent", "trainer started");
  grpc::Status s;
  std::vector<int64_t> seqs;
  EXPECT_THAT(Logs(job, 0, false, 0, &s, &seqs),
              ElementsAre("1:stdout:first try", "2:stderr:second try", "2:agent:trainer started"));
  EXPECT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(seqs.size(), 3u);
  EXPECT_LT(seqs[0], seqs[1]);
  EXPECT_THAT(Logs(job, 2, false, 0, &s),
              ElementsAre("2:stderr:second try", "2:agent:trainer started"));
  EXPECT_THAT(Logs(job, 1, false, 0, &s), ElementsAre("1:stdout:first try"));
  EXPECT_THAT(Logs(job, 0, false, seqs[1], &s), ElementsAre("2:agent:trainer started"));
  EXPECT_THAT(Logs(job, 3, false, 0, &s), ElementsAre());
  EXPECT_TRUE(s.ok());
}

TEST_F(JobServiceReadTest, StreamLogsErrors) {
  grpc::Status s;
  Logs("j-000000000000", 0, false, 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("j-000000000000"));
  const std::string job = RunningJob();
  Logs(job, -1, false, 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("attempt"));
  Logs(job, 0, false, -5, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Logs("", 0, false, 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(JobServiceReadTest, FollowedLogsEndWhenTheJobEnds) {
  const std::string job = RunningJob();
  Log(job, 1, "stdout", "before");
  std::vector<std::string> lines;
  grpc::Status s;
  std::thread follower([&] { lines = Logs(job, 0, /*follow=*/true, 0, &s); });
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  Log(job, 1, "stdout", "during");
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  Log(job, 1, "stdout", "last words");
  GCL_ASSERT_OK(Finish(job, 1));
  follower.join();  // the stream ended on its own (the deadline is 10 s)
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(lines, ElementsAre("1:stdout:before", "1:stdout:during", "1:stdout:last words"));
}

TEST_F(JobServiceReadTest, ListCheckpointsSkipsDeletedOnes) {
  const std::string job = RunningJob();
  storage::CheckpointRecord a = Checkpoint(job, 1, 10, "aaaa", 0.5);
  storage::CheckpointRecord b = Checkpoint(job, 1, 20, "bbbbbb", 0.9);
  storage::CheckpointRecord c = Checkpoint(job, 1, 30, "cc", 0.7);
  GCL_ASSERT_OK_AND_ASSIGN(auto released, reg().ApplyRetention(job, 1, true));  // drops step 10
  ASSERT_EQ(released.size(), 1u);
  grpc::ClientContext ctx;
  gcl::v1::ListCheckpointsRequest req;
  req.set_job_id(job);
  gcl::v1::ListCheckpointsResponse resp;
  grpc::Status s = jobs_->ListCheckpoints(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.checkpoints_size(), 2);
  const gcl::v1::Checkpoint& first = resp.checkpoints(0);
  EXPECT_EQ(first.id(), storage::CheckpointId(b.id));
  EXPECT_THAT(first.id(), ::testing::MatchesRegex("c-[0-9a-f]{12}"));
  EXPECT_EQ(first.job_id(), job);
  EXPECT_EQ(first.attempt(), 1);
  EXPECT_EQ(first.step(), 20);
  EXPECT_EQ(first.size_bytes(), 6);
  EXPECT_EQ(first.sha256(), gcl::Sha256Hex("bbbbbb"));
  EXPECT_EQ(first.metric_name(), "val_dice");
  EXPECT_DOUBLE_EQ(first.metric_value(), 0.9);
  EXPECT_EQ(resp.checkpoints(1).step(), 30);
  (void)a;
  (void)c;

  grpc::ClientContext ctx2;
  req.set_job_id("j-000000000000");
  EXPECT_EQ(jobs_->ListCheckpoints(&ctx2, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
  grpc::ClientContext ctx3;
  req.set_job_id("");
  EXPECT_EQ(jobs_->ListCheckpoints(&ctx3, req, &resp).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(JobServiceReadTest, DownloadInChunksAndResumeReassemblesTheBytes) {
  const std::string job = RunningJob();
  // 2.5 MiB of a non-repeating pattern: three chunks from offset 0.
  std::string bytes(5 * kMiB / 2, '\0');
  uint32_t x = 12345;
  for (char& ch : bytes) {
    x = x * 1664525u + 1013904223u;
    ch = static_cast<char>(x >> 24);
  }
  storage::CheckpointRecord rec = Checkpoint(job, 1, 100, bytes);
  const std::string id = storage::CheckpointId(rec.id);

  grpc::Status s;
  gcl::v1::Checkpoint desc;
  int chunks = 0;
  std::string all = Download(id, 0, &s, &desc, &chunks);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(chunks, 3);
  EXPECT_TRUE(all == bytes);
  EXPECT_EQ(desc.id(), id);
  EXPECT_EQ(desc.size_bytes(), static_cast<int64_t>(bytes.size()));
  EXPECT_EQ(desc.sha256(), gcl::Sha256Hex(bytes));
  EXPECT_EQ(desc.step(), 100);

  // A broken download resumed from an odd offset gives the exact bytes.
  const int64_t cut = 1234567;
  std::string tail = Download(id, cut, &s, &desc);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(bytes.substr(0, cut) + tail == bytes);
  EXPECT_EQ(gcl::Sha256Hex(bytes.substr(0, cut) + tail), desc.sha256());

  // At the end: the descriptor alone.
  std::string none = Download(id, static_cast<int64_t>(bytes.size()), &s, &desc, &chunks);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(none.empty());
  EXPECT_EQ(chunks, 1);
  EXPECT_EQ(desc.sha256(), gcl::Sha256Hex(bytes));
}

TEST_F(JobServiceReadTest, DownloadErrors) {
  const std::string job = RunningJob();
  storage::CheckpointRecord rec = Checkpoint(job, 1, 5, "hello");
  const std::string id = storage::CheckpointId(rec.id);
  grpc::Status s;
  Download("c-nothex!!!!!!", 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("c-nothex!!!!!!"));
  Download("j-000000000001", 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  Download("c-0000000000ff", 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(s.error_message(), "checkpoint c-0000000000ff not found");
  Download(id, 6, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("offset: 6 is outside checkpoint"));
  Download(id, -1, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  // Deleted by retention: NOT_FOUND, saying so.
  Checkpoint(job, 1, 6, "newer");
  GCL_ASSERT_OK_AND_ASSIGN(auto released, reg().ApplyRetention(job, 1, true));
  ASSERT_EQ(released.size(), 1u);
  Download(id, 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("deleted by checkpoint retention"));

  // The file went missing behind the registry's back: DATA_LOSS.
  storage::CheckpointRecord gone = Checkpoint(job, 1, 7, "soon gone");
  std::filesystem::remove(coordinator_->artifacts().root() / gone.path);
  Download(storage::CheckpointId(gone.id), 0, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(s.error_message(), HasSubstr("missing"));
}

TEST_F(JobServiceReadTest, ListResultsOfAnExperimentAndOfEveryFinishedJob) {
  // An experiment with two fine-tuning children (two repeats of gcl, M_lab 1).
  storage::NewJob e;
  e.name = "exp";
  e.kind = "experiment";
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobRecord exp, reg().CreateJob(e));
  const std::string kid1 = RunningJob(1, "w1", exp.id);
  const std::string kid2 = RunningJob(1, "w1", exp.id);
  Results(kid1, "gcl", 1, 0, {0.8, 0.9});  // repeat mean 0.85
  Results(kid2, "gcl", 1, 1, {0.7, 0.8});  // repeat mean 0.75
  Results(kid2, "random_init", 1, 0, {0.5});
  const std::string solo = RunningJob();
  Results(solo, "gcl", 2, 0, {0.6});

  grpc::ClientContext ctx;
  gcl::v1::ListResultsRequest req;
  req.set_job_id(exp.id);
  gcl::v1::ListResultsResponse resp;
  grpc::Status s = jobs_->ListResults(&ctx, req, &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.cells_size(), 2);
  const gcl::v1::ResultCell& gcl_cell = resp.cells(0);
  EXPECT_EQ(gcl_cell.job_id(), exp.id);
  EXPECT_EQ(gcl_cell.variant(), "gcl");
  EXPECT_EQ(gcl_cell.labeled_volumes(), 1);
  EXPECT_EQ(gcl_cell.repeats(), 2);
  EXPECT_NEAR(gcl_cell.dice_mean(), 0.80, 1e-12);
  EXPECT_NEAR(gcl_cell.dice_std(), std::sqrt(0.005), 1e-12);  // sample std of 0.85, 0.75
  EXPECT_NEAR(gcl_cell.hd95_mean(), 4.0, 1e-12);
  ASSERT_EQ(gcl_cell.classes_size(), 1);
  EXPECT_EQ(gcl_cell.classes(0).class_name(), "LV");
  EXPECT_NEAR(gcl_cell.classes(0).mean(), 0.85, 1e-12);
  EXPECT_EQ(resp.cells(1).variant(), "random_init");
  EXPECT_EQ(resp.cells(1).repeats(), 1);

  // Nothing finished yet: the global table is empty.
  grpc::ClientContext ctx2;
  gcl::v1::ListResultsResponse all;
  ASSERT_TRUE(jobs_->ListResults(&ctx2, gcl::v1::ListResultsRequest(), &all).ok());
  EXPECT_EQ(all.cells_size(), 0);
  // Once they succeed: newest job first (solo), the experiment once for both children.
  GCL_ASSERT_OK(Finish(solo, 1));
  GCL_ASSERT_OK(Finish(kid1, 1));
  GCL_ASSERT_OK(Finish(kid2, 1));
  GCL_ASSERT_OK(reg().StartAttempt(exp.id, "w1").status());
  GCL_ASSERT_OK(Finish(exp.id, 1));
  grpc::ClientContext ctx3;
  ASSERT_TRUE(jobs_->ListResults(&ctx3, gcl::v1::ListResultsRequest(), &all).ok());
  ASSERT_EQ(all.cells_size(), 3);
  std::vector<std::string> cells;
  for (const auto& c : all.cells()) {
    cells.push_back(c.job_id() + "/" + c.variant() + "/" + std::to_string(c.labeled_volumes()));
  }
  EXPECT_THAT(cells, ElementsAre(solo + "/gcl/2", exp.id + "/gcl/1", exp.id + "/random_init/1"));

  grpc::ClientContext ctx4;
  req.set_job_id("j-000000000000");
  EXPECT_EQ(jobs_->ListResults(&ctx4, req, &resp).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(JobServiceReadTest, ListWorkersWithDevicesStateAndRunningJobs) {
  Worker("w1", "gpu-box-1", 2);
  Worker("w2", "gpu-box-2", 1, /*lost=*/true);
  const std::string a = RunningJob(1, "w1");
  const std::string b = RunningJob(1, "w1");
  grpc::ClientContext ctx;
  gcl::v1::ListWorkersResponse resp;
  grpc::Status s = jobs_->ListWorkers(&ctx, gcl::v1::ListWorkersRequest(), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(resp.workers_size(), 2);
  const gcl::v1::Worker& w1 = resp.workers(0);
  EXPECT_EQ(w1.id(), "w1");
  EXPECT_EQ(w1.hostname(), "gpu-box-1");
  ASSERT_EQ(w1.devices_size(), 2);
  EXPECT_EQ(w1.devices(1).id(), "cpu:1");
  EXPECT_EQ(w1.state(), gcl::v1::WORKER_STATE_READY);
  EXPECT_GT(w1.lease_expiry_ms(), reg().NowMs());
  EXPECT_THAT(std::vector<std::string>(w1.running_job_ids().begin(), w1.running_job_ids().end()),
              ElementsAre(a, b));
  EXPECT_EQ(w1.labels().at("rack"), "a");
  EXPECT_EQ(resp.workers(1).state(), gcl::v1::WORKER_STATE_LOST);
  EXPECT_EQ(resp.workers(1).running_job_ids_size(), 0);
}

TEST_F(JobServiceReadTest, WatchJobHonoursIncludeMetricsAndLogs) {
  const std::string job = RunningJob();
  Progress(job, 5, 10, 1.0, 0.2);
  Metrics(job, 5, -0.2, 0.1, 1, 5);
  Log(job, 1, "stdout", "hello");
  Checkpoint(job, 1, 5, "ck");
  GCL_ASSERT_OK(Finish(job, 1));
  auto kinds = [&](bool metrics, bool logs) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gcl::v1::WatchJobRequest req;
    req.set_id(job);
    req.set_include_metrics(metrics);
    req.set_include_logs(logs);
    auto reader = jobs_->WatchJob(&ctx, req);
    std::vector<std::string> out;
    gcl::v1::JobEvent e;
    while (reader->Read(&e)) {
      out.push_back(gcl::v1::JobEvent::descriptor()->FindFieldByNumber(e.event_case())->name());
    }
    EXPECT_TRUE(reader->Finish().ok());
    return out;
  };
  EXPECT_THAT(kinds(false, false),
              ElementsAre("state", "state", "progress", "checkpoint", "state"));
  EXPECT_THAT(kinds(true, false),
              ElementsAre("state", "state", "progress", "metrics", "checkpoint", "state"));
  EXPECT_THAT(kinds(true, true),
              ElementsAre("state", "state", "progress", "metrics", "log", "checkpoint", "state"));
}

}  // namespace
}  // namespace gcl::server
