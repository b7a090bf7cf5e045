// The agent against an in-process fake coordinator, with a shell script in
// place of gcl-train (same flags, metrics, checkpoints and error lines).
#include "worker/agent/agent.h"

#include <sys/stat.h>

#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <thread>

#include "gcl/base/sha256.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::agent {
namespace {

using ::gcl::testing::StatusIs;
using ::testing::HasSubstr;

class FakeCoordinator final : public gcl::v1::WorkerService::Service {
 public:
  grpc::Status Register(grpc::ServerContext*, const gcl::v1::RegisterRequest* req,
                        gcl::v1::RegisterResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu);
    if (refuse_register) {
      ++refusals;
      cv.notify_all();
      return grpc::Status(grpc::UNAUTHENTICATED, "invalid token: not in the coordinator's tokens file");
    }
    ++registrations;
    lost = false;
    registered = *req;
    resp->set_heartbeat_seconds(1);
    resp->set_lease_seconds(10);
    cv.notify_all();
    return grpc::Status::OK;
  }
  grpc::Status Heartbeat(grpc::ServerContext*, const gcl::v1::HeartbeatRequest*,
                         gcl::v1::HeartbeatResponse* resp) override {
    std::lock_guard<std::mutex> lock(mu);
    if (lost) return grpc::Status(grpc::FAILED_PRECONDITION, "worker is LOST; re-register");
    for (auto& a : pending) *resp->add_assignments() = a;
    pending.clear();
    for (auto& c : cancels) resp->add_cancel_job_ids(c);
    cancels.clear();
    return grpc::Status::OK;
  }
  grpc::Status ReportProgress(grpc::ServerContext*,
                              grpc::ServerReader<gcl::v1::ProgressReport>* reader,
                              gcl::v1::ReportProgressResponse*) override {
    gcl::v1::ProgressReport r;
    while (reader->Read(&r)) {
      std::lock_guard<std::mutex> lock(mu);
      reports[r.job_id()].push_back(r);
      cv.notify_all();
    }
    return grpc::Status::OK;
  }
  grpc::Status UploadCheckpoint(grpc::ServerContext*,
                                grpc::ServerReader<gcl::v1::CheckpointUpload>* reader,
                                gcl::v1::UploadCheckpointResponse* resp) override {
    gcl::v1::CheckpointUpload m;
    gcl::v1::Checkpoint desc;
    std::string data;
    int chunks = 0;
    while (reader->Read(&m)) {
      if (m.has_checkpoint()) desc = m.checkpoint();
      if (!m.data().empty()) ++chunks;
      data += m.data();
    }
    if (Sha256Hex(data) != desc.sha256()) return grpc::Status(grpc::DATA_LOSS, "sha256");
    std::lock_guard<std::mutex> lock(mu);
    *resp->mutable_checkpoint() = desc;
    uploads.push_back({desc, data.size(), chunks});
    return grpc::Status::OK;
  }
  grpc::Status Complete(grpc::ServerContext*, const gcl::v1::CompleteRequest* req,
                        gcl::v1::CompleteResponse*) override {
    std::lock_guard<std::mutex> lock(mu);
    completed[req->job_id()] = *req;
    cv.notify_all();
    return grpc::Status::OK;
  }

  struct Upload {
    gcl::v1::Checkpoint desc;
    size_t bytes;
    int chunks;
  };
  std::mutex mu;
  std::condition_variable cv;
  bool lost = false;             // heartbeats answer FAILED_PRECONDITION until it registers
  bool refuse_register = false;  // as for a token revoked (or being rotated)
  int registrations = 0, refusals = 0;
  gcl::v1::RegisterRequest registered;
  std::vector<gcl::v1::Assignment> pending;
  std::vector<std::string> cancels;
  std::map<std::string, std::vector<gcl::v1::ProgressReport>> reports;
  std::vector<Upload> uploads;
  std::map<std::string, gcl::v1::CompleteRequest> completed;
};

constexpr char kTrainer[] = R"(#!/bin/sh
cmd=$1; shift
while [ $# -gt 0 ]; do
  case $1 in --spec) spec=$2; shift 2;; --output) out=$2; shift 2;; --metrics) m=$2; shift 2;;
    --threads) threads=$2; shift 2;; *) shift;; esac
done
grep -q "kind: pretrain" "$spec" || { echo "gcl-train $cmd: error: bad spec" >&2; exit 2; }
echo '{"step":1,"time":0.1,"samples":[{"name":"gcl_train_loss","labels":{"term":"total"},"value":0.5}]}' >> "$m"
mkdir -p "$out/checkpoints"
dd if=/dev/urandom of="$out/checkpoints/step-00000001.ckpt" bs=1000 count=2500 2>/dev/null
(cd "$out/checkpoints" && sha256sum step-00000001.ckpt > step-00000001.ckpt.sha256)
echo "hello from $cmd"
if [ -n "$GCL_RENDEZVOUS" ]; then echo "rank $GCL_RANK of $GCL_WORLD_SIZE at $GCL_RENDEZVOUS out $out threads $threads"; fi
if [ -n "$CUDA_VISIBLE_DEVICES" ]; then
  echo "rank $GCL_RANK visible $CUDA_VISIBLE_DEVICES order $CUDA_DEVICE_ORDER threads $threads"
fi
if [ "$GCL_JOB_ID" = "j-gang-fail" ]; then
  if [ "$GCL_RANK" = 1 ]; then echo "gcl-train: rank 1 of 2: collective all_reduce at step 12 failed: peer gone" >&2; exit 1; fi
  trap 'exit 143' TERM; while :; do sleep 0.05; done
fi
if [ "$GCL_JOB_ID" = "j-hang" ]; then trap 'echo TERM ignored' TERM; while :; do sleep 0.05; done; fi
if [ "$GCL_JOB_ID" = "j-fail" ]; then echo "gcl-train $cmd: error: boom" >&2; exit 1; fi
exit 0
)";

class AgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder b;
    b.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_GT(port_, 0);
    trainer_ = (dir_.path() / "fake-train").string();
    std::ofstream(trainer_) << kTrainer;
    ::chmod(trainer_.c_str(), 0755);
    AgentOptions o;
    o.coordinator = "127.0.0.1:" + std::to_string(port_);
    o.work_dir = (dir_.path() / "work").string();
    o.trainer_path = trainer_;
    o.worker_id = "w-test";
    o.poll_interval = absl::Milliseconds(50);
    o.kill_grace = absl::Milliseconds(300);
    GCL_ASSERT_OK_AND_ASSIGN(agent_, Agent::Create(o));
    run_ = std::thread([this] { EXPECT_THAT(agent_->Run(), testing::IsOk()); });
  }
  void TearDown() override {
    if (agent_) agent_->Shutdown();
    if (run_.joinable()) run_.join();
    agent_.reset();
    server_->Shutdown();
  }
  // A pretrain assignment on `devices`: ranks 0.. of a world of that size.
  void AssignOn(const std::string& job_id, const std::vector<std::string>& devices) {
    gcl::v1::Assignment a;
    a.set_job_id(job_id);
    a.set_attempt(1);
    a.mutable_spec()->set_kind(gcl::v1::KIND_PRETRAIN);
    a.mutable_spec()->mutable_train()->set_steps(10);
    for (const std::string& d : devices) a.add_device_ids(d);
    if (devices.size() > 1) {
      a.set_rank(0);
      a.set_world_size(static_cast<int>(devices.size()));
      a.set_rendezvous("127.0.0.1:29555");
    }
    std::lock_guard<std::mutex> lock(fake_.mu);
    fake_.pending.push_back(a);
  }
  void Assign(const std::string& job_id) { AssignOn(job_id, {"cpu:0"}); }
  // A two-rank assignment on this host (ranks 0 and 1 of a world of 2).
  void AssignGang(const std::string& job_id) { AssignOn(job_id, {"dev:0", "dev:1"}); }
  std::vector<std::string> LogTexts(const std::string& job_id) {
    std::lock_guard<std::mutex> lock(fake_.mu);
    std::vector<std::string> out;
    for (const auto& r : fake_.reports[job_id]) {
      if (r.has_log()) out.push_back(r.log().text());
    }
    return out;
  }
  gcl::v1::CompleteRequest AwaitComplete(const std::string& job_id) {
    std::unique_lock<std::mutex> lock(fake_.mu);
    fake_.cv.wait_for(lock, std::chrono::seconds(20),
                      [&] { return fake_.completed.count(job_id) > 0; });
    return fake_.completed.count(job_id) ? fake_.completed[job_id] : gcl::v1::CompleteRequest();
  }

  // Waits for the agent's Register; the request it sent.
  gcl::v1::RegisterRequest AwaitRegister() {
    std::unique_lock<std::mutex> lock(fake_.mu);
    fake_.cv.wait_for(lock, std::chrono::seconds(20),
                      [&] { return !fake_.registered.worker_id().empty(); });
    return fake_.registered;
  }

  testing::TempDir dir_;
  FakeCoordinator fake_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
  std::string trainer_;
  std::unique_ptr<Agent> agent_;
  std::thread run_;
};

TEST_F(AgentTest, RunsAnAssignmentForwardsEverythingAndCompletes) {
  Assign("j-ok");
  const auto done = AwaitComplete("j-ok");
  EXPECT_EQ(done.job_id(), "j-ok");
  EXPECT_EQ(done.worker_id(), "w-test");
  EXPECT_EQ(done.attempt(), 1);
  EXPECT_EQ(done.exit_code(), 0);
  EXPECT_EQ(done.reason(), "exited with code 0");

  std::lock_guard<std::mutex> lock(fake_.mu);
  ASSERT_EQ(fake_.registered.devices_size(), 1);
  EXPECT_EQ(fake_.registered.devices(0).id(), "cpu:0");
  EXPECT_EQ(fake_.registered.devices(0).type(), gcl::v1::DEVICE_TYPE_CPU);
  EXPECT_GT(fake_.registered.devices(0).memory_bytes(), 0);
  EXPECT_EQ(fake_.registered.labels().count("cpu_cores"), 1u);

  bool metrics = false, progress = false, hello = false;
  for (const auto& r : fake_.reports["j-ok"]) {
    EXPECT_EQ(r.attempt(), 1);
    if (r.has_metrics()) {
      metrics = true;
      EXPECT_EQ(r.metrics().step(), 1);
      ASSERT_EQ(r.metrics().samples_size(), 1);
      EXPECT_EQ(r.metrics().samples(0).name(), "gcl_train_loss");
    }
    if (r.has_progress()) {
      progress = true;
      EXPECT_EQ(r.progress().step(), 1);
      EXPECT_EQ(r.progress().total_steps(), 10);
      EXPECT_DOUBLE_EQ(r.progress().loss(), 0.5);
    }
    if (r.has_log() && r.log().stream() == "stdout" && r.log().text() == "hello from pretrain") {
      hello = true;
    }
  }
  EXPECT_TRUE(metrics);
  EXPECT_TRUE(progress);
  EXPECT_TRUE(hello);

  ASSERT_EQ(fake_.uploads.size(), 1u);
  EXPECT_EQ(fake_.uploads[0].desc.job_id(), "j-ok");
  EXPECT_EQ(fake_.uploads[0].desc.step(), 1);
  EXPECT_EQ(fake_.uploads[0].desc.size_bytes(), 2500000);
  EXPECT_EQ(fake_.uploads[0].bytes, 2500000u);
  EXPECT_EQ(fake_.uploads[0].chunks, 3);  // 1 MiB chunks

  // The spec the trainer read is in the attempt folder.
  EXPECT_TRUE(std::filesystem::exists(dir_.path() / "work/jobs/j-ok/attempt-1/spec.yaml"));
}

TEST_F(AgentTest, ReportsTheTrainersErrorLine) {
  Assign("j-fail");
  const auto done = AwaitComplete("j-fail");
  EXPECT_EQ(done.exit_code(), 1);
  EXPECT_EQ(done.signal(), 0);
  EXPECT_EQ(done.reason(), "exited with code 1: gcl-train pretrain: error: boom");
}

TEST_F(AgentTest, CancelKillsATrainerThatIgnoresSigterm) {
  Assign("j-hang");
  {
    std::unique_lock<std::mutex> lock(fake_.mu);
    ASSERT_TRUE(fake_.cv.wait_for(lock, std::chrono::seconds(20), [&] {
      for (const auto& r : fake_.reports["j-hang"]) {
        if (r.has_log() && r.log().text() == "hello from pretrain") return true;
      }
      return false;
    }));
    fake_.cancels.push_back("j-hang");
  }
  const auto done = AwaitComplete("j-hang");
  EXPECT_EQ(done.signal(), 9);
  EXPECT_EQ(done.exit_code(), -1);
  EXPECT_EQ(done.reason(), "cancelled: killed");
}

// Declared LOST, the agent registers again; a refusal for its token then
// (a token being rotated) is retried, not the end of the agent and its
// trainers, unlike a refusal at start (gcl_auth_tls_test.sh).
TEST_F(AgentTest, ARefusedReRegistrationIsRetried) {
  AwaitRegister();
  {
    std::lock_guard<std::mutex> lock(fake_.mu);
    fake_.lost = true;
    fake_.refuse_register = true;
  }
  {
    std::unique_lock<std::mutex> lock(fake_.mu);
    // Backoff 1 s, then 2 s: two refusals within about 4 s.
    ASSERT_TRUE(fake_.cv.wait_for(lock, std::chrono::seconds(20), [&] { return fake_.refusals >= 2; }))
        << "refusals: " << fake_.refusals;
    fake_.refuse_register = false;
  }
  std::unique_lock<std::mutex> lock(fake_.mu);
  EXPECT_TRUE(fake_.cv.wait_for(lock, std::chrono::seconds(20),
                                [&] { return fake_.registrations == 2; }))
      << "registrations: " << fake_.registrations;
  // TearDown: Run() returns OK at Shutdown.
}

TEST_F(AgentTest, RunsOneTrainerPerDeviceEachWithItsRankFolderAndThreads) {
  AssignGang("j-gang-ok");
  const auto done = AwaitComplete("j-gang-ok");
  EXPECT_EQ(done.exit_code(), 0) << done.reason();
  const std::string attempt_dir = (dir_.path() / "work/jobs/j-gang-ok/attempt-1").string();
  const int threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / 2);
  const auto logs = LogTexts("j-gang-ok");
  auto has = [&](const std::string& text) { return std::find(logs.begin(), logs.end(), text) != logs.end(); };
  EXPECT_TRUE(has("[rank 0] rank 0 of 2 at 127.0.0.1:29555 out " + attempt_dir + "/out threads " +
                  std::to_string(threads)));
  EXPECT_TRUE(has("[rank 1] rank 1 of 2 at 127.0.0.1:29555 out " + attempt_dir + "/out-rank-1 threads " +
                  std::to_string(threads)));
  // Only rank 0's folder is uploaded from.
  std::lock_guard<std::mutex> lock(fake_.mu);
  EXPECT_EQ(fake_.uploads.size(), 1u);
}

TEST_F(AgentTest, AFailedRankStopsItsLocalPeersAndIsNamedWithItsLastStderrLine) {
  AssignGang("j-gang-fail");
  const auto done = AwaitComplete("j-gang-fail");
  EXPECT_EQ(done.exit_code(), 1);
  EXPECT_THAT(done.reason(), HasSubstr("rank 1 of 2 exited with code 1"));
  EXPECT_THAT(done.reason(), HasSubstr("collective all_reduce at step 12 failed: peer gone"));
  // Rank 0 (which would hang in its next collective) was killed, not waited for.
  const auto logs = LogTexts("j-gang-fail");
  EXPECT_TRUE(std::any_of(logs.begin(), logs.end(), [](const std::string& l) {
    return l.find("attempt 1 ended") != std::string::npos;
  }));
}

// A host whose nvidia-smi is a script first on PATH printing `smi_csv` for
// the --query-gpu query and `smi_list` for -L, and whose agent inherits
// CUDA_VISIBLE_DEVICES=`visible` (unset when null).
class FakeGpuHostTest : public AgentTest {
 protected:
  FakeGpuHostTest(std::string smi_csv, std::string smi_list, const char* visible)
      : smi_csv_(std::move(smi_csv)), smi_list_(std::move(smi_list)), visible_(visible) {}
  void SetUp() override {
    const std::string smi = (smi_dir_.path() / "nvidia-smi").string();
    std::ofstream(smi) << "#!/bin/sh\n"
                          "if [ \"$1\" = -L ]; then cat <<'EOF'\n"
                       << smi_list_
                       << "EOF\n"
                          "else cat <<'EOF'\n"
                       << smi_csv_
                       << "EOF\n"
                          "fi\n";
    ::chmod(smi.c_str(), 0755);
    if (const char* p = std::getenv("PATH")) old_path_ = p;
    if (const char* v = std::getenv("CUDA_VISIBLE_DEVICES")) old_visible_ = v;
    had_visible_ = std::getenv("CUDA_VISIBLE_DEVICES") != nullptr;
    ::setenv("PATH", (smi_dir_.path().string() + ":" + old_path_).c_str(), 1);
    if (visible_ != nullptr) {
      ::setenv("CUDA_VISIBLE_DEVICES", visible_, 1);
    } else {
      ::unsetenv("CUDA_VISIBLE_DEVICES");
    }
    AgentTest::SetUp();
  }
  void TearDown() override {
    AgentTest::TearDown();
    ::setenv("PATH", old_path_.c_str(), 1);
    if (had_visible_) {
      ::setenv("CUDA_VISIBLE_DEVICES", old_visible_.c_str(), 1);
    } else {
      ::unsetenv("CUDA_VISIBLE_DEVICES");
    }
  }
  // AssignOn, then waits for its completion.
  gcl::v1::CompleteRequest RunOn(const std::string& job_id,
                                 const std::vector<std::string>& devices) {
    AssignOn(job_id, devices);
    return AwaitComplete(job_id);
  }

  testing::TempDir smi_dir_;
  std::string smi_csv_, smi_list_;
  const char* visible_;
  std::string old_path_, old_visible_;
  bool had_visible_ = false;
};

// 4 GPUs (recorded output), of which the agent inherits CUDA_VISIBLE_DEVICES=1,3.
class GpuAgentTest : public FakeGpuHostTest {
 protected:
  GpuAgentTest()
      : FakeGpuHostTest(
            "0, GPU-5e2d6c3b-9b0a-2f4e-8c61-1a2b3c4d5e6f, NVIDIA H100 80GB HBM3, 81559, Disabled\n"
            "1, GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5, NVIDIA H100 80GB HBM3, 81559, Disabled\n"
            "2, GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c, NVIDIA H100 80GB HBM3, 81559, Disabled\n"
            "3, GPU-deadbeef-0000-1111-2222-333344445555, NVIDIA H100 PCIe, 81559, Disabled\n",
            "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-5e2d6c3b-9b0a-2f4e-8c61-1a2b3c4d5e6f)\n"
            "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-0c1d2e3f-4a5b-6c7d-8e9f-a0b1c2d3e4f5)\n"
            "GPU 2: NVIDIA H100 80GB HBM3 (UUID: GPU-77aa88bb-99cc-0dd1-1ee2-2ff33a44b55c)\n"
            "GPU 3: NVIDIA H100 PCIe (UUID: GPU-deadbeef-0000-1111-2222-333344445555)\n",
            "1,3") {}
};

// GPU 0 split into two MIG instances, GPU 1 whole (nvidia-smi -L's format).
class MigAgentTest : public FakeGpuHostTest {
 protected:
  MigAgentTest()
      : FakeGpuHostTest(
            "0, GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3, NVIDIA A100-SXM4-40GB, 40960, Enabled\n"
            "1, GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901, NVIDIA A100-SXM4-40GB, 40960, Disabled\n",
            "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-e91edf3b-b297-37c1-a2a7-7601c7b5c6d3)\n"
            "  MIG 3g.20gb     Device  0: (UUID: MIG-4d1f8b3c-6a2e-5b7d-9c0e-1f2a3b4c5d6e)\n"
            "  MIG 2g.10gb     Device  1: (UUID: MIG-8b5ed2b0-2fa6-5f1c-a7b4-6bbd9ce0ad4a)\n"
            "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901)\n",
            nullptr) {}
};

TEST_F(MigAgentTest, OffersMigInstancesPinsByUuidAndRefusesMultiRankJobsOnThem) {
  const gcl::v1::RegisterRequest reg = AwaitRegister();
  ASSERT_EQ(reg.devices_size(), 3);
  EXPECT_EQ(reg.devices(0).id(), "cuda:0/mig0");
  EXPECT_EQ(reg.devices(0).name(), "NVIDIA A100-SXM4-40GB MIG 3g.20gb");
  EXPECT_EQ(reg.devices(0).memory_bytes(), int64_t{20} << 30);
  EXPECT_EQ(reg.devices(1).id(), "cuda:0/mig1");
  EXPECT_EQ(reg.devices(2).id(), "cuda:1");
  EXPECT_EQ(reg.devices(2).memory_bytes(), int64_t{40960} << 20);

  auto done = RunOn("j-mig", {"cuda:0/mig1"});
  EXPECT_EQ(done.exit_code(), 0) << done.reason();
  EXPECT_THAT(LogTexts("j-mig"),
              ::testing::Contains("rank 0 visible MIG-8b5ed2b0-2fa6-5f1c-a7b4-6bbd9ce0ad4a order "
                                  "PCI_BUS_ID threads "));
  done = RunOn("j-whole", {"cuda:1"});
  EXPECT_EQ(done.exit_code(), 0) << done.reason();
  EXPECT_THAT(LogTexts("j-whole"),
              ::testing::Contains("rank 0 visible 1 order PCI_BUS_ID threads "));
  // NCCL cannot connect MIG instances: refused before any trainer starts.
  done = RunOn("j-mig-gang", {"cuda:1", "cuda:0/mig0"});
  EXPECT_NE(done.exit_code(), 0);
  EXPECT_THAT(done.reason(),
              HasSubstr("rank 0 of 2 was placed on MIG instance cuda:0/mig0, and NCCL "
                        "cannot connect ranks on MIG instances"));
  EXPECT_THAT(LogTexts("j-mig-gang"), ::testing::Not(::testing::Contains(HasSubstr("hello from"))));
}

TEST_F(GpuAgentTest, RegistersTheVisibleGpusAndPinsEachRankToItsGpu) {
  const gcl::v1::RegisterRequest reg = AwaitRegister();
  ASSERT_EQ(reg.devices_size(), 2);
  EXPECT_EQ(reg.devices(0).id(), "cuda:1");
  EXPECT_EQ(reg.devices(0).type(), gcl::v1::DEVICE_TYPE_CUDA);
  EXPECT_EQ(reg.devices(0).name(), "NVIDIA H100 80GB HBM3");
  EXPECT_EQ(reg.devices(0).memory_bytes(), int64_t{81559} << 20);
  EXPECT_EQ(reg.devices(1).id(), "cuda:3");
  EXPECT_EQ(reg.devices(1).name(), "NVIDIA H100 PCIe");

  // One rank on cuda:1, then a 2-rank job on cuda:3 and cuda:1.
  auto done = RunOn("j-gpu", {"cuda:1"});
  EXPECT_EQ(done.exit_code(), 0) << done.reason();
  // No --threads for a GPU rank; CUDA counts GPUs in nvidia-smi's order.
  EXPECT_THAT(LogTexts("j-gpu"), ::testing::Contains("rank 0 visible 1 order PCI_BUS_ID threads "));

  done = RunOn("j-gpu-2", {"cuda:3", "cuda:1"});
  EXPECT_EQ(done.exit_code(), 0) << done.reason();
  const auto logs = LogTexts("j-gpu-2");
  EXPECT_THAT(logs, ::testing::Contains("[rank 0] rank 0 visible 3 order PCI_BUS_ID threads "));
  EXPECT_THAT(logs, ::testing::Contains("[rank 1] rank 1 visible 1 order PCI_BUS_ID threads "));
}

TEST(AgentCreateTest, GpuFlagsAndAFailingNvidiaSmi) {
  testing::TempDir dir;
  const std::string trainer = (dir.path() / "fake-train").string();
  std::ofstream(trainer) << "#!/bin/sh\nexit 0\n";
  ::chmod(trainer.c_str(), 0755);
  const std::string smi = (dir.path() / "nvidia-smi").string();
  std::ofstream(smi) << "#!/bin/sh\necho 'Failed to initialize NVML: Driver/library version mismatch'\n"
                        "exit 18\n";
  ::chmod(smi.c_str(), 0755);
  const std::string old_path = std::getenv("PATH") ? std::getenv("PATH") : "";
  ::setenv("PATH", (dir.path().string() + ":" + old_path).c_str(), 1);
  AgentOptions o;
  o.coordinator = "127.0.0.1:1";
  o.work_dir = (dir.path() / "work").string();
  o.trainer_path = trainer;
  auto agent = Agent::Create(o);
  EXPECT_THAT(agent.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       "exited with code 18: Failed to initialize NVML"));
  EXPECT_THAT(agent.status().message(), HasSubstr("nvidia-smi --query-gpu="));
  // --gpus none and an explicit --cpu-devices do not run it.
  o.gpus = "none";
  GCL_ASSERT_OK_AND_ASSIGN(auto cpu, Agent::Create(o));
  ASSERT_EQ(cpu->devices().size(), 1u);
  EXPECT_EQ(cpu->devices()[0].id(), "cpu:0");
  o.gpus = "auto";
  o.cpu_devices = 2;
  GCL_ASSERT_OK_AND_ASSIGN(cpu, Agent::Create(o));
  ASSERT_EQ(cpu->devices().size(), 2u);
  EXPECT_EQ(cpu->devices()[1].type(), gcl::v1::DEVICE_TYPE_CPU);
  o.gpus = "0";
  EXPECT_THAT(Agent::Create(o).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, "exclude each other"));
  o.gpus = "zero";
  o.cpu_devices = 0;
  EXPECT_THAT(Agent::Create(o).status(), StatusIs(absl::StatusCode::kInvalidArgument, "--gpus zero"));
  ::setenv("PATH", old_path.c_str(), 1);
}

}  // namespace
}  // namespace gcl::agent
