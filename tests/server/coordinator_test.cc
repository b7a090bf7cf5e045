// A real Coordinator on 127.0.0.1:0 with a SQLite file in a TempDir, driven
// through the generated stubs over real channels (and gclctl in-process).
#include "server/coordinator.h"

#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <gtest/gtest.h>

#include "client/gclctl.h"
#include "gcl/v1/job.grpc.pb.h"
#include "gcl/v1/worker.grpc.pb.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kValidSpec[] =
    "name: t-pre\n"
    "kind: pretrain\n"
    "dataset: {format: synthetic, image_size: 32}\n"
    "model: {base_width: 8, depth: 3}\n"
    "train: {steps: 10, batch: 16}\n";

// Line 4 holds the misspelt key.
constexpr char kUnknownKeySpec[] =
    "name: t-bad\n"
    "kind: pretrain\n"
    "method:\n"
    "  pool_kk: 3\n"
    "dataset: {format: synthetic}\n";

class CoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override { StartCoordinator(60000); }
  void TearDown() override { coordinator_.reset(); }

  void StartCoordinator(int64_t lease_ms) {
    coordinator_.reset();
    Coordinator::Options o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_.path() / "registry.db").string();
    o.lease_ms = lease_ms;
    o.sweep_interval_ms = 50;
    o.watch_poll_ms = 20;
    o.shutdown_grace_ms = 500;
    GCL_ASSERT_OK_AND_ASSIGN(coordinator_, Coordinator::Create(o));
    GCL_ASSERT_OK(coordinator_->Start());
    ASSERT_GT(coordinator_->port(), 0);
    channel_ = grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials());
    jobs_ = gcl::v1::JobService::NewStub(channel_);
    workers_ = gcl::v1::WorkerService::NewStub(channel_);
  }

  gcl::v1::Job Submit(const std::string& yaml) {
    grpc::ClientContext ctx;
    gcl::v1::SubmitJobRequest req;
    req.set_spec_yaml(yaml);
    gcl::v1::SubmitJobResponse resp;
    grpc::Status s = jobs_->SubmitJob(&ctx, req, &resp);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return resp.job();
  }

  grpc::Status Get(const std::string& id, gcl::v1::Job* job) {
    grpc::ClientContext ctx;
    gcl::v1::GetJobRequest req;
    req.set_id(id);
    return jobs_->GetJob(&ctx, req, job);
  }

  gcl::v1::Job MustGet(const std::string& id) {
    gcl::v1::Job job;
    grpc::Status s = Get(id, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }

  grpc::Status Register(const std::string& worker, int devices) {
    grpc::ClientContext ctx;
    gcl::v1::RegisterRequest req;
    req.set_worker_id(worker);
    req.set_hostname("localhost");
    for (int i = 0; i < devices; ++i) req.add_devices()->set_id("cpu:" + std::to_string(i));
    gcl::v1::RegisterResponse resp;
    return workers_->Register(&ctx, req, &resp);
  }

  grpc::Status Heartbeat(const std::string& worker, gcl::v1::HeartbeatResponse* resp,
                         std::vector<std::string> running = {}) {
    grpc::ClientContext ctx;
    gcl::v1::HeartbeatRequest req;
    req.set_worker_id(worker);
    for (auto& r : running) req.add_running_job_ids(r);
    return workers_->Heartbeat(&ctx, req, resp);
  }

  grpc::Status Complete(const std::string& worker, const std::string& job, int attempt, int exit_code,
                        int signal = 0) {
    grpc::ClientContext ctx;
    gcl::v1::CompleteRequest req;
    req.set_worker_id(worker);
    req.set_job_id(job);
    req.set_attempt(attempt);
    req.set_exit_code(exit_code);
    req.set_signal(signal);
    gcl::v1::CompleteResponse resp;
    return workers_->Complete(&ctx, req, &resp);
  }

  // The state changes (from -> to) the watch stream delivers, as "FROM>TO".
  std::vector<std::string> WatchTransitions(const std::string& id, grpc::Status* status) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gcl::v1::WatchJobRequest req;
    req.set_id(id);
    auto reader = jobs_->WatchJob(&ctx, req);
    std::vector<std::string> out;
    gcl::v1::JobEvent e;
    int64_t last_seq = 0;
    while (reader->Read(&e)) {
      EXPECT_GT(e.seq(), last_seq);
      last_seq = e.seq();
      if (e.state().from() == e.state().to()) continue;  // reason updates
      out.push_back(gcl::v1::JobState_Name(e.state().from()).substr(10) + ">" +
                    gcl::v1::JobState_Name(e.state().to()).substr(10));
    }
    *status = reader->Finish();
    return out;
  }

  gcl::testing::TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<gcl::v1::JobService::Stub> jobs_;
  std::unique_ptr<gcl::v1::WorkerService::Stub> workers_;
};

TEST_F(CoordinatorTest, SubmitQueuesWithReasonAndPositionAndPersists) {
  gcl::v1::Job first = Submit(kValidSpec);
  gcl::v1::Job second = Submit(kValidSpec);
  EXPECT_THAT(first.id(), StartsWith("j-"));
  EXPECT_EQ(first.state(), gcl::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(first.reason(), "waiting for a worker (none registered)");
  EXPECT_EQ(first.queue_position(), 1);
  EXPECT_EQ(second.queue_position(), 2);
  EXPECT_EQ(first.name(), "t-pre");
  EXPECT_EQ(first.spec().train().steps(), 10);
  EXPECT_EQ(first.max_attempts(), 3);  // default applied

  // Persisted before the reply: a second registry handle on the file sees it.
  GCL_ASSERT_OK_AND_ASSIGN(auto reg, storage::Registry::Open((dir_.path() / "registry.db").string()));
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobRecord rec, reg->GetJob(first.id()));
  EXPECT_EQ(rec.state, storage::JobState::kQueued);
  EXPECT_EQ(rec.kind, "pretrain");

  grpc::ClientContext ctx;
  gcl::v1::ListJobsRequest req;
  gcl::v1::ListJobsResponse resp;
  ASSERT_TRUE(jobs_->ListJobs(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.jobs_size(), 2);
  EXPECT_EQ(resp.jobs(0).id(), second.id());  // newest first
  EXPECT_EQ(resp.jobs(1).queue_position(), 1);
}

TEST_F(CoordinatorTest, InvalidSpecNamesKeyAndLineAndStoresNothing) {
  grpc::ClientContext ctx;
  gcl::v1::SubmitJobRequest req;
  req.set_spec_yaml(kUnknownKeySpec);
  gcl::v1::SubmitJobResponse resp;
  grpc::Status s = jobs_->SubmitJob(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), StartsWith("spec.yaml:4:"));
  EXPECT_THAT(s.error_message(), HasSubstr("method.pool_kk: unknown key"));

  grpc::ClientContext ctx2;
  gcl::v1::SubmitJobRequest empty;
  EXPECT_EQ(jobs_->SubmitJob(&ctx2, empty, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  GCL_ASSERT_OK_AND_ASSIGN(storage::JobPage page, coordinator_->registry().ListJobs({}));
  EXPECT_TRUE(page.jobs.empty());
}

TEST_F(CoordinatorTest, RetriedSubmitWithTheSameRequestIdStoresOneJob) {
  gcl::v1::SubmitJobRequest req;
  req.set_spec_yaml(kValidSpec);
  req.set_request_id("3f2a-retry");
  gcl::v1::SubmitJobResponse first, again;
  grpc::ClientContext c1, c2;
  ASSERT_TRUE(jobs_->SubmitJob(&c1, req, &first).ok());
  ASSERT_TRUE(jobs_->SubmitJob(&c2, req, &again).ok());  // e.g. the first reply was lost
  EXPECT_EQ(again.job().id(), first.job().id());
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobPage page, coordinator_->registry().ListJobs({}));
  EXPECT_EQ(page.jobs.size(), 1u);
}

TEST_F(CoordinatorTest, UnknownJobIsNotFound) {
  gcl::v1::Job job;
  EXPECT_EQ(Get("j-000000000000", &job).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(CoordinatorTest, CancelQueuedJobAndPositionsMove) {
  gcl::v1::Job a = Submit(kValidSpec);
  gcl::v1::Job b = Submit(kValidSpec);
  grpc::ClientContext ctx;
  gcl::v1::CancelJobRequest req;
  req.set_id(a.id());
  gcl::v1::CancelJobResponse resp;
  ASSERT_TRUE(jobs_->CancelJob(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.job().state(), gcl::v1::JOB_STATE_CANCELLED);
  EXPECT_EQ(resp.job().queue_position(), 0);
  EXPECT_EQ(MustGet(b.id()).queue_position(), 1);
  grpc::Status watch;
  EXPECT_EQ(WatchTransitions(a.id(), &watch), (std::vector<std::string>{"UNSPECIFIED>QUEUED", "QUEUED>CANCELLED"}));
  EXPECT_TRUE(watch.ok()) << watch.error_message();
}

TEST_F(CoordinatorTest, WorkerRunsJobToSuccessAndWatchReplaysInOrder) {
  gcl::v1::Job job = Submit(kValidSpec);
  ASSERT_TRUE(Register("w1", 1).ok());
  EXPECT_EQ(MustGet(job.id()).reason(), "placed on worker w1; starting at its next heartbeat");

  gcl::v1::HeartbeatResponse hb;
  ASSERT_TRUE(Heartbeat("w1", &hb).ok());
  ASSERT_EQ(hb.assignments_size(), 1);
  EXPECT_EQ(hb.assignments(0).job_id(), job.id());
  EXPECT_EQ(hb.assignments(0).attempt(), 1);
  EXPECT_EQ(hb.assignments(0).spec().name(), "t-pre");
  EXPECT_EQ(hb.assignments(0).device_ids_size(), 1);
  EXPECT_GT(hb.lease_expiry_ms(), 0);
  gcl::v1::Job running = MustGet(job.id());
  EXPECT_EQ(running.state(), gcl::v1::JOB_STATE_RUNNING);
  EXPECT_EQ(running.worker_id(), "w1");
  EXPECT_EQ(running.attempt(), 1);

  // A second job waits: the only device is busy.
  gcl::v1::Job next = Submit(kValidSpec);
  EXPECT_EQ(next.reason(), "waiting for 1 free device (most free on one worker: 0)");
  gcl::v1::HeartbeatResponse hb2;
  ASSERT_TRUE(Heartbeat("w1", &hb2, {job.id()}).ok());
  EXPECT_EQ(hb2.assignments_size(), 0);
  EXPECT_EQ(hb2.cancel_job_ids_size(), 0);

  // Watch live: started before the job ends, it must see the end.
  std::vector<std::string> live;
  grpc::Status live_status;
  std::thread watcher([&] { live = WatchTransitions(job.id(), &live_status); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(Complete("w1", job.id(), 1, 0).ok());
  watcher.join();
  const std::vector<std::string> expected = {"UNSPECIFIED>QUEUED", "QUEUED>RUNNING", "RUNNING>SUCCEEDED"};
  EXPECT_EQ(live, expected);
  EXPECT_TRUE(live_status.ok()) << live_status.error_message();
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_SUCCEEDED);

  grpc::Status replay_status;
  EXPECT_EQ(WatchTransitions(job.id(), &replay_status), expected);  // replay after the end
  // A stale report of the finished attempt is refused.
  EXPECT_EQ(Complete("w1", job.id(), 1, 0).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // The freed device goes to the waiting job.
  gcl::v1::HeartbeatResponse hb3;
  ASSERT_TRUE(Heartbeat("w1", &hb3).ok());
  ASSERT_EQ(hb3.assignments_size(), 1);
  EXPECT_EQ(hb3.assignments(0).job_id(), next.id());
}

TEST_F(CoordinatorTest, FailedAttemptIsRetriedThenFails) {
  gcl::v1::Job job = Submit(std::string(kValidSpec) + "max_attempts: 2\n");
  ASSERT_TRUE(Register("w1", 1).ok());
  for (int attempt = 1; attempt <= 2; ++attempt) {
    gcl::v1::HeartbeatResponse hb;
    ASSERT_TRUE(Heartbeat("w1", &hb).ok());
    ASSERT_EQ(hb.assignments_size(), 1) << "attempt " << attempt;
    EXPECT_EQ(hb.assignments(0).attempt(), attempt);
    ASSERT_TRUE(Complete("w1", job.id(), attempt, 1).ok());
  }
  gcl::v1::Job failed = MustGet(job.id());
  EXPECT_EQ(failed.state(), gcl::v1::JOB_STATE_FAILED);
  EXPECT_THAT(failed.reason(), HasSubstr("exit code 1"));
}

TEST_F(CoordinatorTest, CancelRunningGoesThroughTheWorker) {
  gcl::v1::Job job = Submit(kValidSpec);
  ASSERT_TRUE(Register("w1", 2).ok());
  gcl::v1::HeartbeatResponse hb;
  ASSERT_TRUE(Heartbeat("w1", &hb).ok());
  ASSERT_EQ(hb.assignments_size(), 1);
  grpc::ClientContext ctx;
  gcl::v1::CancelJobRequest req;
  req.set_id(job.id());
  gcl::v1::CancelJobResponse resp;
  ASSERT_TRUE(jobs_->CancelJob(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.job().state(), gcl::v1::JOB_STATE_CANCELLING);
  gcl::v1::HeartbeatResponse hb2;
  ASSERT_TRUE(Heartbeat("w1", &hb2, {job.id(), "j-ffffffffffff"}).ok());
  // Its cancelling job, and a job it runs that the coordinator does not place there.
  EXPECT_THAT(std::vector<std::string>(hb2.cancel_job_ids().begin(), hb2.cancel_job_ids().end()),
              ::testing::ElementsAre(job.id(), "j-ffffffffffff"));
  ASSERT_TRUE(Complete("w1", job.id(), 1, 0, /*signal=*/15).ok());
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_CANCELLED);
}

TEST_F(CoordinatorTest, CudaJobsRunOnGpuWorkersWithTheirRegisteredDeviceIds) {
  ASSERT_TRUE(Register("cpu-w", 2).ok());
  gcl::v1::Job cuda = Submit(std::string(kValidSpec) + "resources: {devices: 2, device_type: cuda}\n");
  EXPECT_EQ(cuda.reason(), "needs 2 CUDA devices; no registered worker has CUDA devices");
  gcl::v1::HeartbeatResponse hb;
  ASSERT_TRUE(Heartbeat("cpu-w", &hb).ok());
  EXPECT_EQ(hb.assignments_size(), 0);

  // A worker offering GPUs 1, 2 and 3 (say CUDA_VISIBLE_DEVICES=1,2,3).
  {
    grpc::ClientContext ctx;
    gcl::v1::RegisterRequest req;
    req.set_worker_id("gpu-w");
    req.set_hostname("localhost");
    for (int i : {1, 2, 3}) {
      gcl::v1::Device* d = req.add_devices();
      d->set_id("cuda:" + std::to_string(i));
      d->set_type(gcl::v1::DEVICE_TYPE_CUDA);
      d->set_name("NVIDIA H100 80GB HBM3");
      d->set_memory_bytes(int64_t{81559} << 20);
    }
    gcl::v1::RegisterResponse resp;
    ASSERT_TRUE(workers_->Register(&ctx, req, &resp).ok());
  }
  EXPECT_EQ(MustGet(cuda.id()).reason(), "placed on worker gpu-w; starting at its next heartbeat");
  ASSERT_TRUE(Heartbeat("gpu-w", &hb).ok());
  ASSERT_EQ(hb.assignments_size(), 1);
  EXPECT_THAT(hb.assignments(0).device_ids(), ::testing::ElementsAre("cuda:1", "cuda:2"));

  // A CPU job skips the GPU worker's free device; an auto one may take it.
  gcl::v1::Job cpu = Submit(std::string(kValidSpec) + "resources: {device_type: cpu}\n");
  gcl::v1::Job gpu1 = Submit(std::string(kValidSpec) + "resources: {device_type: cuda}\n");
  // The next pass is debounced: heartbeat until it placed them.
  auto heartbeat_until_assigned = [&](const std::string& worker, std::vector<std::string> running) {
    gcl::v1::HeartbeatResponse r;
    for (int i = 0; i < 100 && r.assignments_size() == 0; ++i) {
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      r.Clear();
      EXPECT_TRUE(Heartbeat(worker, &r, running).ok());
    }
    return r;
  };
  gcl::v1::HeartbeatResponse on_gpu = heartbeat_until_assigned("gpu-w", {cuda.id()});
  ASSERT_EQ(on_gpu.assignments_size(), 1);
  EXPECT_EQ(on_gpu.assignments(0).job_id(), gpu1.id());
  EXPECT_THAT(on_gpu.assignments(0).device_ids(), ::testing::ElementsAre("cuda:3"));
  gcl::v1::HeartbeatResponse on_cpu = heartbeat_until_assigned("cpu-w", {});
  ASSERT_EQ(on_cpu.assignments_size(), 1);
  EXPECT_EQ(on_cpu.assignments(0).job_id(), cpu.id());
  EXPECT_THAT(on_cpu.assignments(0).device_ids(), ::testing::ElementsAre("dev:0"));

  // Resent (lost in transit) with the same ids.
  gcl::v1::HeartbeatResponse again;
  ASSERT_TRUE(Heartbeat("gpu-w", &again, {cuda.id()}).ok());
  ASSERT_EQ(again.assignments_size(), 1);
  EXPECT_EQ(again.assignments(0).job_id(), gpu1.id());
  EXPECT_THAT(again.assignments(0).device_ids(), ::testing::ElementsAre("cuda:3"));

  // ListWorkers shows the GPUs as registered.
  grpc::ClientContext ctx;
  gcl::v1::ListWorkersResponse list;
  ASSERT_TRUE(jobs_->ListWorkers(&ctx, gcl::v1::ListWorkersRequest(), &list).ok());
  const gcl::v1::Worker* gpu_w = nullptr;
  for (const auto& w : list.workers()) {
    if (w.id() == "gpu-w") gpu_w = &w;
  }
  ASSERT_NE(gpu_w, nullptr);
  ASSERT_EQ(gpu_w->devices_size(), 3);
  EXPECT_EQ(gpu_w->devices(2).id(), "cuda:3");
  EXPECT_EQ(gpu_w->devices(2).type(), gcl::v1::DEVICE_TYPE_CUDA);
  EXPECT_EQ(gpu_w->devices(2).name(), "NVIDIA H100 80GB HBM3");

  // Device ids name the ranks' devices: a repeated one is refused.
  grpc::ClientContext bad_ctx;
  gcl::v1::RegisterRequest bad;
  bad.set_worker_id("bad-w");
  bad.add_devices()->set_id("cuda:0");
  bad.add_devices()->set_id("cuda:0");
  gcl::v1::RegisterResponse bad_resp;
  const grpc::Status refused = workers_->Register(&bad_ctx, bad, &bad_resp);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(refused.error_message(), HasSubstr("devices[1].id \"cuda:0\""));
}

TEST_F(CoordinatorTest, MigInstancesRunSingleRankJobsAndGangsGetWholeGpus) {
  // GPU 0 split into two MIG instances, GPUs 1 and 2 whole (the agent's order).
  {
    grpc::ClientContext ctx;
    gcl::v1::RegisterRequest req;
    req.set_worker_id("mig-w");
    req.set_hostname("localhost");
    for (const char* id : {"cuda:0/mig0", "cuda:0/mig1", "cuda:1", "cuda:2"}) {
      gcl::v1::Device* d = req.add_devices();
      d->set_id(id);
      d->set_type(gcl::v1::DEVICE_TYPE_CUDA);
    }
    gcl::v1::RegisterResponse resp;
    ASSERT_TRUE(workers_->Register(&ctx, req, &resp).ok());
  }
  auto heartbeat_until_assigned = [&](std::vector<std::string> running) {
    gcl::v1::HeartbeatResponse r;
    for (int i = 0; i < 100 && r.assignments_size() == 0; ++i) {  // the next pass is debounced
      if (i > 0) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      r.Clear();
      EXPECT_TRUE(Heartbeat("mig-w", &r, running).ok());
    }
    return r;
  };
  const std::string cuda_spec = std::string(kValidSpec) + "resources: {device_type: cuda";
  gcl::v1::Job pair = Submit(cuda_spec + ", devices: 2}\n");
  EXPECT_EQ(pair.reason(), "placed on worker mig-w; starting at its next heartbeat");
  gcl::v1::HeartbeatResponse hb = heartbeat_until_assigned({});
  ASSERT_EQ(hb.assignments_size(), 1);
  EXPECT_THAT(hb.assignments(0).device_ids(), ::testing::ElementsAre("cuda:1", "cuda:2"));

  gcl::v1::Job one = Submit(cuda_spec + "}\n");
  gcl::v1::HeartbeatResponse on_mig = heartbeat_until_assigned({pair.id()});
  ASSERT_EQ(on_mig.assignments_size(), 1);
  EXPECT_EQ(on_mig.assignments(0).job_id(), one.id());
  EXPECT_THAT(on_mig.assignments(0).device_ids(), ::testing::ElementsAre("cuda:0/mig0"));

  // cuda:0/mig1 is free, but a 2-rank job needs whole GPUs.
  gcl::v1::Job waits = Submit(cuda_spec + ", devices: 2}\n");
  EXPECT_EQ(waits.state(), gcl::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(waits.reason(),
            "waiting for 2 free CUDA devices (most free on one CUDA worker: 0); MIG instances do "
            "not count: multi-rank jobs need whole GPUs");
}

TEST_F(CoordinatorTest, UnsatisfiableJobIsHeldWithReason) {
  ASSERT_TRUE(Register("w1", 1).ok());
  gcl::v1::Job job = Submit(std::string(kValidSpec) + "resources: {devices: 2}\n");
  EXPECT_EQ(job.state(), gcl::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(job.reason(), "needs 2 devices on one worker; the largest registered worker has 1");
}

TEST_F(CoordinatorTest, ExpiredLeaseMarksWorkerLostAndRequeues) {
  StartCoordinator(/*lease_ms=*/300);
  gcl::v1::Job job = Submit(kValidSpec);
  ASSERT_TRUE(Register("w1", 1).ok());
  gcl::v1::HeartbeatResponse hb;
  ASSERT_TRUE(Heartbeat("w1", &hb).ok());
  ASSERT_EQ(hb.assignments_size(), 1);
  gcl::v1::Job now;
  for (int i = 0; i < 200; ++i) {  // up to 10 s
    now = MustGet(job.id());
    if (now.state() == gcl::v1::JOB_STATE_QUEUED) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(now.state(), gcl::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(now.attempt(), 1);
  GCL_ASSERT_OK_AND_ASSIGN(storage::WorkerRecord w, coordinator_->registry().GetWorker("w1"));
  EXPECT_EQ(w.state, storage::WorkerState::kLost);
  gcl::v1::HeartbeatResponse late;
  EXPECT_EQ(Heartbeat("w1", &late).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  // Re-registering brings it back and the job gets attempt 2.
  ASSERT_TRUE(Register("w1", 1).ok());
  gcl::v1::HeartbeatResponse again;
  ASSERT_TRUE(Heartbeat("w1", &again).ok());
  ASSERT_EQ(again.assignments_size(), 1);
  EXPECT_EQ(again.assignments(0).attempt(), 2);
}

TEST_F(CoordinatorTest, RestartOnSameDatabaseKeepsJobs) {
  gcl::v1::Job a = Submit(kValidSpec);
  gcl::v1::Job b = Submit(kValidSpec);
  StartCoordinator(60000);
  gcl::v1::Job a2 = MustGet(a.id());
  EXPECT_EQ(a2.state(), gcl::v1::JOB_STATE_QUEUED);
  EXPECT_EQ(a2.queue_position(), 1);
  EXPECT_EQ(MustGet(b.id()).queue_position(), 2);
  EXPECT_EQ(a2.reason(), "waiting for a worker (none registered)");
}

TEST_F(CoordinatorTest, HealthIsServingOverTheWire) {
  // grpc.health.v1.HealthCheckRequest{service: ""} is the empty message;
  // the reply {status: SERVING (1)} is the two bytes 08 01.
  grpc::ByteBuffer request, response;
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ClientContext ctx;
  const grpc::internal::RpcMethod method("/grpc.health.v1.Health/Check", grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::Status s = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(channel_.get(), method, &ctx,
                                                                                        request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));
}

TEST_F(CoordinatorTest, GclctlSubmitListGetCancel) {
  const std::string good = (dir_.path() / "good.yaml").string();
  const std::string bad = (dir_.path() / "bad.yaml").string();
  std::ofstream(good) << kValidSpec;
  std::ofstream(bad) << kUnknownKeySpec;
  client::ConfigSources src;
  src.flag_addr = coordinator_->address();
  auto run = [&](std::vector<std::string> args, std::string* out, std::string* err) {
    std::ostringstream o, e;
    int rc = client::RunGclctl(args, src, o, e);
    *out = o.str();
    *err = e.str();
    return rc;
  };
  std::string out, err;
  ASSERT_EQ(run({"submit", good}, &out, &err), 0) << err;
  const std::string id = out.substr(0, out.find('\n'));
  EXPECT_THAT(id, StartsWith("j-"));
  EXPECT_THAT(err, HasSubstr("QUEUED, #1 in the queue (waiting for a worker (none registered))"));

  EXPECT_EQ(run({"submit", bad}, &out, &err), 1);
  EXPECT_THAT(err, StartsWith("gclctl: " + bad + ":4:"));
  EXPECT_THAT(err, HasSubstr("method.pool_kk: unknown key"));

  ASSERT_EQ(run({"list"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr(id));
  EXPECT_THAT(out, HasSubstr("QUEUED"));
  EXPECT_THAT(out, HasSubstr("#1: waiting for a worker"));
  ASSERT_EQ(run({"get", id, "--output", "json"}, &out, &err), 0) << err;
  EXPECT_THAT(out, HasSubstr("\"state\": \"JOB_STATE_QUEUED\""));
  EXPECT_EQ(run({"get", "j-000000000000"}, &out, &err), 1);
  EXPECT_THAT(err, StartsWith("gclctl: "));
  ASSERT_EQ(run({"cancel", id}, &out, &err), 0) << err;
  EXPECT_EQ(out, id + ": CANCELLED\n");
  EXPECT_EQ(run({"watch", id}, &out, &err), 1);  // ended CANCELLED
  EXPECT_THAT(out, HasSubstr("QUEUED -> CANCELLED"));
  EXPECT_EQ(run({"frobnicate"}, &out, &err), 2);
  EXPECT_EQ(run({"get"}, &out, &err), 2);
}

std::string NamedSpec(const std::string& name, int priority = 0) {
  return "name: " + name + "\nkind: pretrain\ndataset: {format: synthetic, image_size: 32}\n" +
         "train: {steps: 10, batch: 16}\npriority: " + std::to_string(priority) + "\n";
}

TEST_F(CoordinatorTest, ConcurrentSubmitsEachGetTheirOwnJobAndABadOneFailsAlone) {
  constexpr int kThreads = 12, kEach = 5;
  std::vector<std::vector<gcl::v1::SubmitJobResponse>> got(kThreads);
  std::vector<grpc::Status> bad(kEach);
  std::vector<std::thread> threads;
  for (int t = 0; t <= kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto stub = gcl::v1::JobService::NewStub(
          grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials()));
      for (int i = 0; i < kEach; ++i) {
        grpc::ClientContext ctx;
        gcl::v1::SubmitJobRequest req;
        gcl::v1::SubmitJobResponse resp;
        if (t == kThreads) {  // interleaved invalid specs
          req.set_spec_yaml(kUnknownKeySpec);
          bad[i] = stub->SubmitJob(&ctx, req, &resp);
          continue;
        }
        req.set_spec_yaml(NamedSpec("c" + std::to_string(t) + "-" + std::to_string(i)));
        grpc::Status s = stub->SubmitJob(&ctx, req, &resp);
        EXPECT_TRUE(s.ok()) << s.error_message();
        got[t].push_back(resp);
      }
    });
  }
  for (auto& th : threads) th.join();
  for (const grpc::Status& s : bad) {
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("method.pool_kk: unknown key"));
  }
  std::set<std::string> ids;
  std::set<int64_t> positions;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(got[t].size(), static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) {
      const gcl::v1::Job& job = got[t][i].job();
      EXPECT_EQ(job.name(), "c" + std::to_string(t) + "-" + std::to_string(i));
      EXPECT_EQ(job.state(), gcl::v1::JOB_STATE_QUEUED);
      EXPECT_EQ(job.reason(), "waiting for a worker (none registered)");
      EXPECT_EQ(MustGet(job.id()).name(), job.name());  // stored as returned
      ids.insert(job.id());
      positions.insert(job.queue_position());
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kEach));
  // Nothing leaves the queue, so the positions are exactly 1..N.
  ASSERT_EQ(positions.size(), ids.size());
  EXPECT_EQ(*positions.begin(), 1);
  EXPECT_EQ(*positions.rbegin(), kThreads * kEach);
  storage::JobFilter all;
  all.page_size = 1000;
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobPage page, coordinator_->registry().ListJobs(all));
  EXPECT_EQ(page.jobs.size(), ids.size());  // the invalid ones stored nothing
  GCL_ASSERT_OK_AND_ASSIGN(auto queued, coordinator_->registry().ListQueue());
  EXPECT_EQ(queued.size(), ids.size());
}

// A submit's reason comes from the last plan's leftover capacity; the
// debounced pass corrects it when priorities reorder the queue.
TEST_F(CoordinatorTest, DebouncedPassMakesReasonsRightEventually) {
  ASSERT_TRUE(Register("w1", 1).ok());
  gcl::v1::Job low = Submit(NamedSpec("low", 0));
  EXPECT_EQ(low.reason(), "placed on worker w1; starting at its next heartbeat");
  gcl::v1::Job high = Submit(NamedSpec("high", 5));
  // The cheap reason: w1's device is claimed by `low` in the leftover view.
  EXPECT_EQ(high.reason(), "waiting for 1 free device (most free on one worker: 0)");
  EXPECT_EQ(high.queue_position(), 1);  // positions are exact at once
  EXPECT_EQ(MustGet(low.id()).queue_position(), 2);
  gcl::v1::Job high_now, low_now;
  for (int i = 0; i < 200; ++i) {  // up to 10 s
    high_now = MustGet(high.id());
    low_now = MustGet(low.id());
    if (high_now.reason() != high.reason()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(high_now.reason(), "placed on worker w1; starting at its next heartbeat");
  EXPECT_EQ(low_now.reason(), "waiting for 1 free device (most free on one worker: 0)");
  gcl::v1::HeartbeatResponse hb;
  ASSERT_TRUE(Heartbeat("w1", &hb).ok());
  ASSERT_EQ(hb.assignments_size(), 1);
  EXPECT_EQ(hb.assignments(0).job_id(), high.id());
}

TEST_F(CoordinatorTest, QuietHeartbeatsRunNoPassAndLeasesReachTheDatabase) {
  ASSERT_TRUE(Register("w1", 1).ok());
  gcl::v1::Job job = Submit(kValidSpec);
  // The debounced pass places it; a heartbeat after that starts it.
  gcl::v1::HeartbeatResponse hb;
  for (int i = 0; i < 200 && hb.assignments_size() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(Heartbeat("w1", &hb).ok());
  }
  ASSERT_EQ(hb.assignments_size(), 1);
  EXPECT_EQ(hb.assignments(0).job_id(), job.id());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // any pending pass runs
  const int64_t passes = coordinator_->plane().passes();
  GCL_ASSERT_OK_AND_ASSIGN(storage::WorkerRecord before, coordinator_->registry().GetWorker("w1"));
  for (int i = 0; i < 20; ++i) {
    gcl::v1::HeartbeatResponse quiet;
    ASSERT_TRUE(Heartbeat("w1", &quiet, {job.id()}).ok());
    EXPECT_EQ(quiet.assignments_size(), 0);
    EXPECT_EQ(quiet.cancel_job_ids_size(), 0);
    EXPECT_GE(quiet.lease_expiry_ms(), before.lease_expiry_ms);
  }
  EXPECT_EQ(coordinator_->plane().passes(), passes);
  // Renewed in memory; the sweeper writes the lease back.
  storage::WorkerRecord after = before;
  for (int i = 0; i < 100 && after.last_seen_ms == before.last_seen_ms; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    GCL_ASSERT_OK_AND_ASSIGN(after, coordinator_->registry().GetWorker("w1"));
  }
  EXPECT_GT(after.last_seen_ms, before.last_seen_ms);
  EXPECT_GT(after.lease_expiry_ms, before.lease_expiry_ms);
  // Unknown workers are still told to register.
  gcl::v1::HeartbeatResponse unknown;
  grpc::Status s = Heartbeat("w-unknown", &unknown);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("w-unknown"));
}

TEST(GclctlTest, UnreachableCoordinatorMessage) {
  client::ConfigSources src;
  src.flag_addr = "127.0.0.1:1";  // nothing listens on port 1
  std::ostringstream o, e;
  EXPECT_EQ(client::RunGclctl({"list"}, src, o, e), 1);
  EXPECT_EQ(e.str(), "gclctl: cannot reach the coordinator at 127.0.0.1:1 (is gcl-coordinator running?)\n");
}

TEST(GclctlTest, AddressPrecedence) {
  gcl::testing::TempDir dir;
  const std::string cfg = (dir.path() / "config.yaml").string();
  std::ofstream(cfg) << "addr: cfg-host:1234\ntoken: t0\n";
  client::ConfigSources src;
  src.config_path = cfg;
  GCL_ASSERT_OK_AND_ASSIGN(client::ClientConfig c, client::ResolveConfig(src));
  EXPECT_EQ(c.addr, "cfg-host:1234");
  EXPECT_EQ(c.token, "t0");
  src.env_addr = "env-host:1";
  GCL_ASSERT_OK_AND_ASSIGN(c, client::ResolveConfig(src));
  EXPECT_EQ(c.addr, "env-host:1");
  src.flag_addr = "flag-host:2";
  GCL_ASSERT_OK_AND_ASSIGN(c, client::ResolveConfig(src));
  EXPECT_EQ(c.addr, "flag-host:2");
  GCL_ASSERT_OK_AND_ASSIGN(c, client::ResolveConfig({}));
  EXPECT_EQ(c.addr, "127.0.0.1:7070");
  std::ofstream(cfg) << "addr: [a, b]\n";
  src = {};
  src.config_path = cfg;
  EXPECT_THAT(client::ResolveConfig(src), gcl::testing::StatusIs(absl::StatusCode::kInvalidArgument, "addr"));
}

// ---- gangs: {nodes: 2, devices_per_node: 1} over two workers

constexpr char kGangSpec[] =
    "name: t-gang\n"
    "kind: pretrain\n"
    "dataset: {format: synthetic, image_size: 32}\n"
    "model: {base_width: 8, depth: 3}\n"
    "train: {steps: 10, batch: 16}\n"
    "resources: {nodes: 2, devices_per_node: 1}\n";

class GangCoordinatorTest : public CoordinatorTest {
 protected:
  grpc::Status RegisterAt(const std::string& worker, const std::string& address,
                          std::vector<std::string> running = {}) {
    grpc::ClientContext ctx;
    gcl::v1::RegisterRequest req;
    req.set_worker_id(worker);
    req.set_hostname("localhost");
    req.set_advertise_address(address);
    req.set_rendezvous_port_min(41000);
    req.set_rendezvous_port_max(41009);
    req.add_devices()->set_id("cpu:0");
    for (auto& r : running) req.add_running_job_ids(r);
    gcl::v1::RegisterResponse resp;
    return workers_->Register(&ctx, req, &resp);
  }
  std::vector<std::string> Cancels(const gcl::v1::HeartbeatResponse& hb) {
    return std::vector<std::string>(hb.cancel_job_ids().begin(), hb.cancel_job_ids().end());
  }
};

TEST_F(GangCoordinatorTest, MultiRankKindsOtherThanPretrainAreRefusedAtSubmit) {
  for (const char* extra : {"resources: {devices: 2}\n", "resources: {nodes: 2, devices_per_node: 1}\n"}) {
    grpc::ClientContext ctx;
    gcl::v1::SubmitJobRequest req;
    req.set_spec_yaml(std::string("name: ft\nkind: finetune\ndataset: {format: synthetic}\n"
                                  "init: {random: true}\nlabeled_volumes: [1]\n") + extra);
    gcl::v1::SubmitJobResponse resp;
    grpc::Status s = jobs_->SubmitJob(&ctx, req, &resp);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_THAT(s.error_message(), HasSubstr("resources.devices"));
  }
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobPage page, coordinator_->registry().ListJobs({}));
  EXPECT_TRUE(page.jobs.empty());
}

TEST_F(GangCoordinatorTest, GangStartsOnBothWorkersWithOneRendezvousAndSucceedsWithBoth) {
  ASSERT_TRUE(RegisterAt("w1", "127.0.0.1").ok());
  gcl::v1::Job job = Submit(kGangSpec);
  EXPECT_EQ(job.spec().resources().devices(), 2);  // nodes x devices_per_node
  EXPECT_EQ(job.reason(), "needs 2 workers with 1 device each; 1 registered worker has that many");
  ASSERT_TRUE(RegisterAt("w2", "127.0.0.2").ok());
  EXPECT_EQ(MustGet(job.id()).reason(),
            "placed on workers w1, w2; starting at the first one's next heartbeat");

  // The first member's heartbeat starts the whole gang.
  gcl::v1::HeartbeatResponse hb2;
  ASSERT_TRUE(Heartbeat("w2", &hb2).ok());
  ASSERT_EQ(hb2.assignments_size(), 1);
  const gcl::v1::Assignment& a2 = hb2.assignments(0);
  EXPECT_EQ(a2.rank(), 1);
  EXPECT_EQ(a2.world_size(), 2);
  EXPECT_EQ(a2.device_ids_size(), 1);
  EXPECT_THAT(a2.rendezvous(), StartsWith("127.0.0.1:410"));  // w1 holds rank 0
  gcl::v1::Job running = MustGet(job.id());
  EXPECT_EQ(running.state(), gcl::v1::JOB_STATE_RUNNING);
  ASSERT_EQ(running.gang_size(), 2);
  EXPECT_EQ(running.gang(0).worker_id(), "w1");
  EXPECT_EQ(running.gang(1).worker_id(), "w2");
  EXPECT_EQ(running.gang(1).first_rank(), 1);
  EXPECT_EQ(running.reason(), "attempt 1 on workers w1 (rank 0), w2 (rank 1)");

  gcl::v1::HeartbeatResponse hb1;
  ASSERT_TRUE(Heartbeat("w1", &hb1).ok());
  ASSERT_EQ(hb1.assignments_size(), 1);
  EXPECT_EQ(hb1.assignments(0).rank(), 0);
  EXPECT_EQ(hb1.assignments(0).attempt(), 1);
  EXPECT_EQ(hb1.assignments(0).rendezvous(), a2.rendezvous());

  // Rank 1's member ends first: the job waits for rank 0's.
  ASSERT_TRUE(Complete("w2", job.id(), 1, 0).ok());
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_RUNNING);
  ASSERT_TRUE(Complete("w1", job.id(), 1, 0).ok());
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_SUCCEEDED);

  // gclctl get names both.
  client::ConfigSources src;
  src.flag_addr = coordinator_->address();
  std::ostringstream out, err;
  EXPECT_EQ(client::RunGclctl({"get", job.id()}, src, out, err), 0) << err.str();
  EXPECT_THAT(out.str(), HasSubstr("workers:   w1 (rank 0), w2 (rank 1)"));
}

TEST_F(GangCoordinatorTest, AFailedMemberTearsTheGangDownAndTheNextAttemptMovesThePort) {
  gcl::v1::Job job = Submit(kGangSpec);
  ASSERT_TRUE(RegisterAt("w1", "127.0.0.1").ok());
  ASSERT_TRUE(RegisterAt("w2", "127.0.0.1").ok());
  gcl::v1::HeartbeatResponse hb1, hb2;
  ASSERT_TRUE(Heartbeat("w1", &hb1).ok());
  ASSERT_TRUE(Heartbeat("w2", &hb2).ok());
  ASSERT_EQ(hb1.assignments_size(), 1);
  ASSERT_EQ(hb2.assignments_size(), 1);
  const std::string first_rendezvous = hb1.assignments(0).rendezvous();

  // Rank 1 dies: the attempt ends, w1 is told to stop its rank 0.
  grpc::ClientContext ctx;
  gcl::v1::CompleteRequest req;
  req.set_worker_id("w2");
  req.set_job_id(job.id());
  req.set_attempt(1);
  req.set_exit_code(1);
  req.set_reason("rank 1 of 2 exited with code 1: gcl-train: rank 1 of 2: collective all_reduce at step 12 failed");
  gcl::v1::CompleteResponse resp;
  ASSERT_TRUE(workers_->Complete(&ctx, req, &resp).ok());
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_QUEUED);
  GCL_ASSERT_OK_AND_ASSIGN(auto attempts, coordinator_->registry().ListAttempts(job.id()));
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].state, storage::AttemptState::kFailed);
  EXPECT_THAT(attempts[0].reason, HasSubstr("on worker w2: exit code 1: rank 1 of 2"));
  gcl::v1::HeartbeatResponse stop;
  ASSERT_TRUE(Heartbeat("w1", &stop, {job.id()}).ok());
  EXPECT_THAT(Cancels(stop), ::testing::ElementsAre(job.id()));
  EXPECT_EQ(stop.assignments_size(), 0);  // w1's device is held until its rank 0 is gone
  // w1 confirms (stale for the job, but it frees the device).
  EXPECT_EQ(Complete("w1", job.id(), 1, -1, 15).error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  // The next pass (debounced) places the gang again.
  gcl::v1::HeartbeatResponse again1, again2;
  for (int i = 0; i < 100 && again1.assignments_size() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    again1.Clear();
    ASSERT_TRUE(Heartbeat("w1", &again1).ok());
  }
  ASSERT_TRUE(Heartbeat("w2", &again2).ok());
  ASSERT_EQ(again1.assignments_size(), 1);
  ASSERT_EQ(again2.assignments_size(), 1);
  EXPECT_EQ(again2.assignments(0).attempt(), 2);
  const gcl::v1::Assignment& second = again1.assignments(0);
  EXPECT_EQ(second.attempt(), 2);
  EXPECT_NE(second.rendezvous(), first_rendezvous);
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_RUNNING);
}

TEST_F(GangCoordinatorTest, ARestartedMemberWithoutItsRankRequeuesTheGang) {
  gcl::v1::Job job = Submit(kGangSpec);
  ASSERT_TRUE(RegisterAt("w1", "127.0.0.1").ok());
  ASSERT_TRUE(RegisterAt("w2", "127.0.0.1").ok());
  gcl::v1::HeartbeatResponse hb1, hb2;
  ASSERT_TRUE(Heartbeat("w1", &hb1).ok());
  ASSERT_TRUE(Heartbeat("w2", &hb2).ok());
  ASSERT_EQ(hb2.assignments_size(), 1);
  ASSERT_TRUE(RegisterAt("w2", "127.0.0.1", /*running=*/{}).ok());  // agent restarted
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_QUEUED);
  GCL_ASSERT_OK_AND_ASSIGN(auto attempts, coordinator_->registry().ListAttempts(job.id()));
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].state, storage::AttemptState::kLost);
  EXPECT_THAT(attempts[0].reason, HasSubstr("worker w2 restarted without it"));
  gcl::v1::HeartbeatResponse stop;
  ASSERT_TRUE(Heartbeat("w1", &stop, {job.id()}).ok());
  EXPECT_THAT(Cancels(stop), ::testing::ElementsAre(job.id()));
  // Once w1 no longer reports it, its draining member is released and the gang starts again.
  gcl::v1::HeartbeatResponse after;
  for (int i = 0; i < 100 && after.assignments_size() == 0; ++i) {
    after.Clear();
    ASSERT_TRUE(Heartbeat("w1", &after).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(after.assignments_size(), 1);
  EXPECT_EQ(after.assignments(0).attempt(), 2);
  EXPECT_EQ(MustGet(job.id()).attempt(), 2);
}

TEST_F(GangCoordinatorTest, ARestartedCoordinatorKeepsTheGangRunning) {
  gcl::v1::Job job = Submit(kGangSpec);
  ASSERT_TRUE(RegisterAt("w1", "127.0.0.1").ok());
  ASSERT_TRUE(RegisterAt("w2", "127.0.0.1").ok());
  gcl::v1::HeartbeatResponse hb1, hb2;
  ASSERT_TRUE(Heartbeat("w1", &hb1).ok());
  ASSERT_TRUE(Heartbeat("w2", &hb2).ok());
  ASSERT_EQ(hb1.assignments_size() + hb2.assignments_size(), 2);
  StartCoordinator(60000);  // same SQLite file
  gcl::v1::HeartbeatResponse r1, r2;
  ASSERT_TRUE(Heartbeat("w1", &r1, {job.id()}).ok());
  ASSERT_TRUE(Heartbeat("w2", &r2, {job.id()}).ok());
  EXPECT_EQ(r1.cancel_job_ids_size() + r2.cancel_job_ids_size(), 0);
  EXPECT_EQ(r1.assignments_size() + r2.assignments_size(), 0);
  gcl::v1::Job running = MustGet(job.id());
  EXPECT_EQ(running.state(), gcl::v1::JOB_STATE_RUNNING);
  ASSERT_EQ(running.gang_size(), 2);
  ASSERT_TRUE(Complete("w1", job.id(), 1, 0).ok());
  ASSERT_TRUE(Complete("w2", job.id(), 1, 0).ok());
  EXPECT_EQ(MustGet(job.id()).state(), gcl::v1::JOB_STATE_SUCCEEDED);
  EXPECT_EQ(MustGet(job.id()).attempt(), 1);
}

}  // namespace
}  // namespace gcl::server
