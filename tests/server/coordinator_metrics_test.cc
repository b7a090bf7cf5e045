// The coordinator's Prometheus metrics and file-SD file on a real
// Coordinator (127.0.0.1:0, SQLite in a TempDir, real channels), and the
// per-job metric summaries kept at attempt end for `gclctl results`.
#include "server/coordinator_metrics.h"

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "client/gclctl.h"
#include "gcl/base/json.h"
#include "gcl/v1/job.grpc.pb.h"
#include "gcl/v1/worker.grpc.pb.h"
#include "server/coordinator.h"
#include "server/metric_summaries.h"
#include "tests/testing/http_get.h"
#include "tests/testing/prometheus_text.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::server {
namespace {

using ::gcl::testing::FindSample;
using ::gcl::testing::ParsePrometheusText;
using ::testing::HasSubstr;

constexpr char kSpec[] =
    "name: m-pre\n"
    "kind: pretrain\n"
    "dataset: {format: synthetic, image_size: 32}\n"
    "model: {base_width: 8, depth: 3}\n"
    "train: {steps: 10, batch: 16}\n";

std::string ReadFile(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Polls `pred` for up to 5 s.
template <typename Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 250; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pred();
}

class CoordinatorMetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Coordinator::Options o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_.path() / "registry.db").string();
    o.lease_ms = 2500;  // > the SD file refresh period (1 s), so it lists the workers first
    o.sweep_interval_ms = 50;
    o.shutdown_grace_ms = 500;
    o.metrics_listen = "127.0.0.1:0";
    o.prometheus_sd_file = sd_file().string();
    GCL_ASSERT_OK_AND_ASSIGN(coordinator_, Coordinator::Create(o));
    GCL_ASSERT_OK(coordinator_->Start());
    auto channel = grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials());
    jobs_ = gcl::v1::JobService::NewStub(channel);
    workers_ = gcl::v1::WorkerService::NewStub(channel);
  }

  std::filesystem::path sd_file() const { return dir_.path() / "workers.json"; }

  std::vector<gcl::testing::PromSample> Scrape() {
    const std::string& a = coordinator_->metrics_address();
    return ParsePrometheusText(
        gcl::testing::HttpGet(std::stoi(a.substr(a.rfind(':') + 1)), "/metrics"));
  }

  void Register(const std::string& id, const std::string& metrics_address) {
    grpc::ClientContext ctx;
    gcl::v1::RegisterRequest req;
    req.set_worker_id(id);
    req.set_hostname("host-" + id);
    auto* d = req.add_devices();
    d->set_id("cpu:0");
    req.set_metrics_address(metrics_address);
    gcl::v1::RegisterResponse resp;
    ASSERT_TRUE(workers_->Register(&ctx, req, &resp).ok());
  }

  gcl::v1::HeartbeatResponse Heartbeat(const std::string& id) {
    grpc::ClientContext ctx;
    gcl::v1::HeartbeatRequest req;
    req.set_worker_id(id);
    gcl::v1::HeartbeatResponse resp;
    EXPECT_TRUE(workers_->Heartbeat(&ctx, req, &resp).ok());
    return resp;
  }

  std::string Submit() {
    grpc::ClientContext ctx;
    gcl::v1::SubmitJobRequest req;
    req.set_spec_yaml(kSpec);
    gcl::v1::SubmitJobResponse resp;
    EXPECT_TRUE(jobs_->SubmitJob(&ctx, req, &resp).ok());
    return resp.job().id();
  }

  gcl::testing::TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::unique_ptr<gcl::v1::JobService::Stub> jobs_;
  std::unique_ptr<gcl::v1::WorkerService::Stub> workers_;
};

TEST_F(CoordinatorMetricsTest, JobsWorkersAttemptsRpcsAndTheSdFile) {
  ASSERT_FALSE(coordinator_->metrics_address().empty());
  Register("w1", "10.0.0.1:9100");
  Register("w2", "");  // serves no metrics: not a target
  ASSERT_TRUE(
      Eventually([&] { return ReadFile(sd_file()).find("10.0.0.1:9100") != std::string::npos; }));
  absl::StatusOr<JsonValue> sd = ParseJson(ReadFile(sd_file()), "sd");
  ASSERT_TRUE(sd.ok()) << sd.status();
  ASSERT_EQ(sd->items().size(), 1u);
  EXPECT_EQ(sd->items()[0].Find("targets")->items()[0].string_value(), "10.0.0.1:9100");
  EXPECT_EQ(sd->items()[0].Find("labels")->Find("worker")->string_value(), "w1");

  const std::string id = Submit();
  gcl::v1::HeartbeatResponse hb;
  // Scheduling passes are debounced: the placement may take a heartbeat or two.
  ASSERT_TRUE(Eventually([&] {
    hb = Heartbeat("w1");
    if (hb.assignments().empty()) hb = Heartbeat("w2");
    return hb.assignments_size() == 1;
  }));
  {
    grpc::ClientContext ctx;
    gcl::v1::GetJobRequest req;
    req.set_id("j-000000000000");
    gcl::v1::Job job;
    EXPECT_EQ(jobs_->GetJob(&ctx, req, &job).error_code(), grpc::StatusCode::NOT_FOUND);
  }
  auto s = Scrape();
  EXPECT_EQ(FindSample(s, "gcl_jobs", {{"state", "running"}}), 1.0);
  EXPECT_EQ(FindSample(s, "gcl_jobs", {{"state", "queued"}}), 0.0);
  EXPECT_EQ(FindSample(s, "gcl_workers", {{"state", "alive"}}), 2.0);
  EXPECT_EQ(FindSample(s, "gcl_job_attempts_total", {}), 1.0);
  EXPECT_EQ(FindSample(s, "gcl_job_queue_wait_seconds_count", {}), 1.0);
  EXPECT_EQ(FindSample(s, "gcl_rpc_duration_seconds_count",
                       {{"method", "/gcl.v1.JobService/SubmitJob"}, {"code", "OK"}}),
            1.0);
  EXPECT_EQ(FindSample(s, "gcl_rpc_duration_seconds_count",
                       {{"method", "/gcl.v1.JobService/GetJob"}, {"code", "NOT_FOUND"}}),
            1.0);
  EXPECT_EQ(FindSample(s, "gcl_worker_lost_total", {}), 0.0);

  // Both workers stop heartbeating: LOST, counted, gone from the SD file.
  ASSERT_TRUE(Eventually([&] {
    return FindSample(Scrape(), "gcl_worker_lost_total", {}) == std::optional<double>(2.0);
  }));
  s = Scrape();
  EXPECT_EQ(FindSample(s, "gcl_workers", {{"state", "lost"}}), 2.0);
  EXPECT_EQ(FindSample(s, "gcl_jobs", {{"state", "queued"}}), 1.0);  // requeued
  ASSERT_TRUE(Eventually([&] { return ReadFile(sd_file()) == "[]\n"; })) << ReadFile(sd_file());
}

TEST_F(CoordinatorMetricsTest, FinalConflictStatisticsAreKeptAndShownByResults) {
  Register("w1", "");
  const std::string id = Submit();
  gcl::v1::HeartbeatResponse hb;
  ASSERT_TRUE(Eventually([&] {
    hb = Heartbeat("w1");
    return hb.assignments_size() == 1;
  }));
  const int attempt = hb.assignments(0).attempt();
  {
    grpc::ClientContext ctx;
    gcl::v1::ReportProgressResponse resp;
    auto writer = workers_->ReportProgress(&ctx, &resp);
    for (int step : {5, 10}) {
      gcl::v1::ProgressReport r;
      r.set_job_id(id);
      r.set_attempt(attempt);
      auto* p = r.mutable_metrics();
      p->set_step(step);
      auto add = [&](const std::string& name, std::map<std::string, std::string> labels, double v) {
        auto* s = p->add_samples();
        s->set_name(name);
        for (auto& [k, val] : labels) (*s->mutable_labels())[k] = val;
        s->set_value(v);
      };
      add("gcl_train_steps_total", {}, step);
      add("gcl_grad_conflicts_total", {{"pair", "patient|phase"}, {"kind", "none"}}, 3 * step);
      add("gcl_grad_conflicts_total", {{"pair", "patient|phase"}, {"kind", "slight"}}, step);
      add("gcl_grad_conflicts_total", {{"pair", "patient|phase"}, {"kind", "conflict"}}, step);
      add("gcl_grad_modified_total", {{"pair", "patient|phase"}}, 2 * step);
      add("gcl_grad_cosine", {{"pair", "patient|phase"}, {"stage", "pre"}}, -0.1 * step);
      add("gcl_grad_cosine", {{"pair", "patient|phase"}, {"stage", "post"}}, 0.05 * step);
      add("gcl_train_loss", {{"term", "total"}}, 1.0);  // not a summarized name
      ASSERT_TRUE(writer->Write(r));
    }
    writer->WritesDone();
    ASSERT_TRUE(writer->Finish().ok());
  }
  {
    grpc::ClientContext ctx;
    gcl::v1::CompleteRequest req;
    req.set_worker_id("w1");
    req.set_job_id(id);
    req.set_attempt(attempt);
    gcl::v1::CompleteResponse resp;
    ASSERT_TRUE(workers_->Complete(&ctx, req, &resp).ok());
  }
  GCL_ASSERT_OK_AND_ASSIGN(auto rows, coordinator_->registry().ListMetricSummaries(id));
  std::map<std::string, double> got;
  for (const auto& r : rows) got[r.name + r.labels_json] = r.value;
  EXPECT_EQ(got["gcl_grad_conflicts_total{\"kind\":\"conflict\",\"pair\":\"patient|phase\"}"], 10);
  EXPECT_EQ(got["gcl_grad_modified_total{\"pair\":\"patient|phase\"}"], 20);
  EXPECT_EQ(got["gcl_train_steps_total{}"], 10);
  EXPECT_EQ(got.count("gcl_train_loss{\"term\":\"total\"}"), 0u);

  client::ConfigSources src;
  src.flag_addr = coordinator_->address();
  std::ostringstream out, err;
  ASSERT_EQ(client::RunGclctl({"results", id}, src, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("gradient conflicts at the end of pre-training"));
  // none 30 / slight 10 / conflict 10 of 50 checks; 20 injections; cosines of step 10.
  EXPECT_THAT(out.str(), HasSubstr("patient|phase"));
  EXPECT_THAT(out.str(), HasSubstr("60.0%"));
  EXPECT_THAT(out.str(), HasSubstr("20.0%"));
  EXPECT_THAT(out.str(), HasSubstr("-1.000"));
  EXPECT_THAT(out.str(), HasSubstr("0.500"));
}

TEST(PrometheusSdJsonTest, AliveWorkersWithAnAddressOnly) {
  storage::WorkerRecord a, b, c;
  a.id = "b-worker";
  a.labels_json = R"({"metrics_address":"h2:9100","cpu_cores":"8"})";
  b.id = "a-worker";
  b.labels_json = R"({"metrics_address":"h1:9100"})";
  c.id = "lost";
  c.labels_json = R"({"metrics_address":"h3:9100"})";
  c.state = storage::WorkerState::kLost;
  storage::WorkerRecord d;
  d.id = "no-metrics";
  EXPECT_EQ(PrometheusSdJson({a, b, c, d}),
            "[{\"targets\": [\"h1:9100\"], \"labels\": {\"worker\": \"a-worker\"}},\n"
            " {\"targets\": [\"h2:9100\"], \"labels\": {\"worker\": \"b-worker\"}}]\n");
  EXPECT_EQ(PrometheusSdJson({}), "[]\n");
}

}  // namespace
}  // namespace gcl::server
