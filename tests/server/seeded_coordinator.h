// A real Coordinator on 127.0.0.1:0 (SQLite file and artifact store in a
// TempDir) plus helpers that seed what the write RPCs would store: jobs in a
// given state, "log"/"progress"/"metrics" events, checkpoint files, result
// rows and workers, written through coordinator()->registry()/artifacts().
#pragma once

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "gcl/v1/job.grpc.pb.h"
#include "server/coordinator.h"
#include "server/job_convert.h"
#include "storage/registry.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::server {

class SeededCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Coordinator::Options o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_.path() / "registry.db").string();
    o.lease_ms = 60000;
    o.sweep_interval_ms = 50;
    o.watch_poll_ms = 20;
    o.shutdown_grace_ms = 500;
    GCL_ASSERT_OK_AND_ASSIGN(coordinator_, Coordinator::Create(o));
    GCL_ASSERT_OK(coordinator_->Start());
    channel_ = grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials());
    jobs_ = gcl::v1::JobService::NewStub(channel_);
  }
  void TearDown() override { coordinator_.reset(); }

  storage::Registry& reg() { return coordinator_->registry(); }

  // A pretrain job, RUNNING attempt `attempts` on `worker` (earlier
  // attempts failed), or QUEUED when attempts == 0.
  std::string RunningJob(int attempts = 1, const std::string& worker = "w1",
                         const std::string& parent = "") {
    storage::NewJob j;
    j.name = "seeded";
    j.kind = parent.empty() ? "pretrain" : "finetune";
    j.parent_id = parent;
    j.max_attempts = 5;
    absl::StatusOr<storage::JobRecord> rec = reg().CreateJob(j);
    EXPECT_TRUE(rec.ok()) << rec.status();
    for (int a = 1; a <= attempts; ++a) {
      EXPECT_TRUE(reg().StartAttempt(rec->id, worker).ok());
      if (a < attempts) {
        EXPECT_TRUE(Finish(rec->id, a, storage::AttemptState::kFailed).ok());
      }
    }
    return rec->id;
  }
  absl::Status Finish(const std::string& job, int attempt,
                      storage::AttemptState state = storage::AttemptState::kSucceeded) {
    storage::AttemptOutcome out;
    out.state = state;
    out.exit_code = state == storage::AttemptState::kSucceeded ? 0 : 1;
    out.reason = state == storage::AttemptState::kSucceeded ? "finished" : "exit code 1";
    return reg().FinishAttempt(job, attempt, out).status();
  }

  void Log(const std::string& job, int attempt, const std::string& stream,
           const std::string& text) {
    gcl::v1::LogLine line;
    line.set_attempt(attempt);
    line.set_time_ms(1000);
    line.set_stream(stream);
    line.set_text(text);
    EXPECT_TRUE(reg().AppendEvent(job, kLogEvent, "", EventPayload(line)).ok());
  }
  void Progress(const std::string& job, int64_t step, int64_t total, double loss, double step_s) {
    gcl::v1::Progress p;
    p.set_step(step);
    p.set_total_steps(total);
    p.set_loss(loss);
    p.set_step_seconds(step_s);
    p.set_phase("pretrain");
    EXPECT_TRUE(reg().AppendEvent(job, kProgressEvent, "", EventPayload(p)).ok());
  }
  // A metrics point with the conflict figures the trainer writes for one pair.
  void Metrics(const std::string& job, int64_t step, double cos_pre, double cos_post, int conflicts,
               int total) {
    gcl::v1::MetricsPoint m;
    m.set_step(step);
    auto add = [&](const std::string& name, double v, std::map<std::string, std::string> labels) {
      gcl::v1::MetricSample* s = m.add_samples();
      s->set_name(name);
      s->set_value(v);
      for (auto& [k, val] : labels) (*s->mutable_labels())[k] = val;
    };
    add("gcl_train_loss", 1.5, {{"term", "total"}});
    add("gcl_grad_cosine", cos_pre, {{"pair", "patient|phase"}, {"stage", "pre"}});
    add("gcl_grad_cosine", cos_post, {{"pair", "patient|phase"}, {"stage", "post"}});
    add("gcl_grad_cosine", 0.5, {{"pair", "phase|patient"}, {"stage", "pre"}});
    add("gcl_grad_cosine", 0.5, {{"pair", "phase|patient"}, {"stage", "post"}});
    add("gcl_grad_conflicts_total", conflicts, {{"pair", "patient|phase"}, {"kind", "conflict"}});
    add("gcl_grad_conflicts_total", total - conflicts,
        {{"pair", "patient|phase"}, {"kind", "none"}});
    EXPECT_TRUE(reg().AppendEvent(job, kMetricsEvent, "", EventPayload(m)).ok());
  }

  // Stores `bytes` as a checkpoint of the job the way UploadCheckpoint does.
  storage::CheckpointRecord Checkpoint(const std::string& job, int attempt, int64_t step,
                                       const std::string& bytes,
                                       std::optional<double> metric = {}) {
    char name[64];
    std::snprintf(name, sizeof name, "step-%08lld.ckpt", static_cast<long long>(step));
    auto writer = coordinator_->artifacts().BeginCheckpoint(job, attempt, name);
    EXPECT_TRUE(writer.ok()) << writer.status();
    EXPECT_TRUE((*writer)->Append(bytes).ok());
    absl::StatusOr<storage::ArtifactInfo> info = (*writer)->Commit();
    EXPECT_TRUE(info.ok()) << info.status();
    storage::CheckpointRecord c;
    c.job_id = job;
    c.attempt = attempt;
    c.step = step;
    c.path = info->path;
    c.sha256 = info->sha256;
    c.bytes = info->bytes;
    if (metric.has_value()) {
      c.metric_name = "val_dice";
      c.metric_value = metric;
    }
    absl::StatusOr<storage::CheckpointRecord> added = reg().AddCheckpoint(c);
    EXPECT_TRUE(added.ok()) << added.status();
    return *added;
  }

  // Per-case rows of one fine-tuning run: class "mean" = dice, LV = dice + 0.05.
  void Results(const std::string& job, const std::string& variant, int m_lab, int repeat,
               const std::vector<double>& case_dice) {
    std::vector<storage::ResultRecord> rows;
    for (size_t i = 0; i < case_dice.size(); ++i) {
      storage::ResultRecord r;
      r.job_id = job;
      r.variant = variant;
      r.m_lab = m_lab;
      r.repeat = repeat;
      r.case_id = "case" + std::to_string(i);
      r.class_name = "mean";
      r.dice = case_dice[i];
      r.hd95 = 4.0;
      rows.push_back(r);
      r.class_name = "LV";
      r.dice = case_dice[i] + 0.05;
      rows.push_back(r);
    }
    EXPECT_TRUE(reg().AddResults(rows).ok());
  }

  void Worker(const std::string& id, const std::string& host, int devices, bool lost = false) {
    storage::WorkerRecord w;
    w.id = id;
    w.address = host;
    w.devices = devices;
    w.memory_bytes = int64_t{8} << 30;
    w.labels_json = "{\"rack\":\"a\"}";
    w.lease_expiry_ms = reg().NowMs() + 60000;
    EXPECT_TRUE(reg().UpsertWorker(w).ok());
    if (lost) {
      EXPECT_TRUE(reg().MarkWorkerLost(id, "test").ok());
    }
  }

  gcl::testing::TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<gcl::v1::JobService::Stub> jobs_;
};

}  // namespace gcl::server
