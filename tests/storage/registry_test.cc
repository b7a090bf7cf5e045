#include "storage/registry.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::storage {
namespace {

using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_.path() / "registry.db").string();
    GCL_ASSERT_OK_AND_ASSIGN(reg_, Registry::Open(path_, Options()));
  }
  RegistryOptions Options() {
    RegistryOptions o;
    o.now_ms = [this] { return clock_.load(); };
    o.id_seed = 42;
    return o;
  }
  NewJob Job(const std::string& name, int32_t priority = 0, int32_t max_attempts = 3) {
    NewJob j;
    j.name = name;
    j.kind = "pretrain";
    j.owner = "alice";
    j.priority = priority;
    j.spec_blob = std::string("\x08\x01\x00\xff", 4);
    j.spec_text = "name: " + name + "\n";
    j.max_attempts = max_attempts;
    return j;
  }
  std::vector<std::string> EventKinds(const std::string& id) {
    auto ev = reg_->EventsAfter(id, 0, 0);
    EXPECT_TRUE(ev.ok());
    std::vector<std::string> out;
    for (const JobEvent& e : *ev) out.push_back(e.kind + ":" + e.to_state);
    return out;
  }

  gcl::testing::TempDir dir_;
  std::string path_;
  std::atomic<int64_t> clock_{1000};
  std::unique_ptr<Registry> reg_;
};

TEST_F(RegistryTest, SameOwnerAndRequestIdReturnsTheFirstJob) {
  NewJob job = Job("retry");
  job.owner = "alice";
  job.request_id = "req-1";
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord first, reg_->CreateJob(job));
  job.name = "retry-again";  // a retry carries the same key; its body does not matter
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord again, reg_->CreateJob(job));
  EXPECT_EQ(again.id, first.id);
  EXPECT_EQ(again.name, "retry");
  job.owner = "bob";  // keys are per owner
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord other, reg_->CreateJob(job));
  EXPECT_NE(other.id, first.id);
  job.request_id = "";  // no key: always a new job
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(job));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(job));
  EXPECT_NE(a.id, b.id);
  GCL_ASSERT_OK_AND_ASSIGN(auto events, reg_->EventsAfter(first.id, 0));
  EXPECT_EQ(events.size(), 1u);  // the retry wrote no second "submitted" event
}

TEST_F(RegistryTest, CreateAndGet) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a")));
  EXPECT_THAT(j.id, ::testing::MatchesRegex("j-[0-9a-f]{12}"));
  EXPECT_EQ(j.state, JobState::kQueued);
  EXPECT_EQ(j.reason, "waiting for a worker");
  EXPECT_EQ(j.attempt, 0);
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord g, reg_->GetJob(j.id));
  EXPECT_EQ(g.name, "a");
  EXPECT_EQ(g.kind, "pretrain");
  EXPECT_EQ(g.owner, "alice");
  EXPECT_EQ(g.spec_blob, std::string("\x08\x01\x00\xff", 4));
  EXPECT_EQ(g.spec_text, "name: a\n");
  EXPECT_EQ(g.created_ms, 1000);
  EXPECT_EQ(g.queued_ms, 1000);
  EXPECT_EQ(g.max_attempts, 3);
  EXPECT_THAT(EventKinds(j.id), ElementsAre("submitted:QUEUED"));
  EXPECT_THAT(reg_->GetJob("j-nope"), StatusIs(absl::StatusCode::kNotFound, "j-nope"));

  NewJob bad = Job("");
  EXPECT_THAT(reg_->CreateJob(bad), StatusIs(absl::StatusCode::kInvalidArgument, "name"));
  bad = Job("x", 0, 0);
  EXPECT_THAT(reg_->CreateJob(bad), StatusIs(absl::StatusCode::kInvalidArgument, "max_attempts"));
  bad = Job("x");
  bad.parent_id = "j-missing";
  EXPECT_THAT(reg_->CreateJob(bad), StatusIs(absl::StatusCode::kNotFound, "parent"));
}

TEST_F(RegistryTest, IllegalTransitionRejectedAndNothingWritten) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a")));
  ASSERT_THAT(reg_->Transition(j.id, JobState::kCancelled, "user cancelled"), IsOk());
  clock_ = 2000;
  EXPECT_THAT(reg_->Transition(j.id, JobState::kQueued, "again"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "CANCELLED -> QUEUED"));
  EXPECT_THAT(reg_->StartAttempt(j.id, "w1"), StatusIs(absl::StatusCode::kFailedPrecondition, "illegal"));
  EXPECT_THAT(reg_->Transition(j.id, JobState::kRunning, "x"),
              StatusIs(absl::StatusCode::kInvalidArgument, "StartAttempt"));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord g, reg_->GetJob(j.id));
  EXPECT_EQ(g.state, JobState::kCancelled);
  EXPECT_EQ(g.reason, "user cancelled");
  EXPECT_EQ(g.updated_ms, 1000);
  EXPECT_THAT(EventKinds(j.id), ElementsAre("submitted:QUEUED", "state:CANCELLED"));
  GCL_ASSERT_OK_AND_ASSIGN(auto attempts, reg_->ListAttempts(j.id));
  EXPECT_TRUE(attempts.empty());

  GCL_ASSERT_OK_AND_ASSIGN(JobRecord k, reg_->CreateJob(Job("b")));
  EXPECT_THAT(reg_->Transition(k.id, JobState::kQueued, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "QUEUED -> QUEUED"));
  EXPECT_THAT(reg_->Transition(k.id, JobState::kSucceeded, "x"),
              StatusIs(absl::StatusCode::kFailedPrecondition, "QUEUED -> SUCCEEDED"));
  EXPECT_THAT(reg_->Transition(k.id, JobState::kScheduled, "placed", /*expected_attempt=*/3),
              StatusIs(absl::StatusCode::kFailedPrecondition, "attempt 0"));
}

TEST(JobStateTest, TableAndNames) {
  for (int i = 0; i < kNumJobStates; ++i) {
    JobState s = static_cast<JobState>(i);
    GCL_ASSERT_OK_AND_ASSIGN(JobState back, ParseJobState(ToString(s)));
    EXPECT_EQ(back, s);
    EXPECT_FALSE(IsLegalTransition(s, s));
    if (IsTerminal(s)) {
      for (int t = 0; t < kNumJobStates; ++t) EXPECT_FALSE(IsLegalTransition(s, static_cast<JobState>(t)));
    }
  }
  EXPECT_EQ(*ParseJobState("canceled"), JobState::kCancelled);
  EXPECT_FALSE(ParseJobState("PAUSED").ok());
  EXPECT_TRUE(IsLegalTransition(JobState::kRunning, JobState::kQueued));
  EXPECT_TRUE(IsLegalTransition(JobState::kCancelling, JobState::kCancelled));
  EXPECT_FALSE(IsLegalTransition(JobState::kQueued, JobState::kCancelling));
}

TEST_F(RegistryTest, AttemptsAndRequeueUpToMaxAttemptsThenFailed) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a", 0, /*max_attempts=*/2)));
  GCL_ASSERT_OK_AND_ASSIGN(int32_t a1, reg_->StartAttempt(j.id, "w1"));
  EXPECT_EQ(a1, 1);
  // A preemption does not charge an attempt.
  clock_ = 1500;
  ASSERT_THAT(reg_->Transition(j.id, JobState::kQueued, "preempted by higher priority"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord p, reg_->GetJob(j.id));
  EXPECT_EQ(p.failures, 0);
  EXPECT_EQ(p.queued_ms, 1500);
  GCL_ASSERT_OK_AND_ASSIGN(int32_t a2, reg_->StartAttempt(j.id, "w2"));
  EXPECT_EQ(a2, 2);
  // A stale report for attempt 1 is refused.
  AttemptOutcome fail{AttemptState::kFailed, 1, "exit code 1"};
  EXPECT_THAT(reg_->FinishAttempt(j.id, 1, fail), StatusIs(absl::StatusCode::kFailedPrecondition, "stale"));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord r1, reg_->FinishAttempt(j.id, 2, fail));
  EXPECT_EQ(r1.state, JobState::kQueued);
  EXPECT_EQ(r1.failures, 1);
  EXPECT_THAT(r1.reason, HasSubstr("retrying"));
  EXPECT_THAT(r1.reason, HasSubstr("1/2"));
  GCL_ASSERT_OK_AND_ASSIGN(int32_t a3, reg_->StartAttempt(j.id, "w1"));
  EXPECT_EQ(a3, 3);
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord r2, reg_->Requeue(j.id, "worker w1 lost"));
  EXPECT_EQ(r2.state, JobState::kFailed);
  EXPECT_EQ(r2.failures, 2);
  EXPECT_THAT(r2.reason, HasSubstr("max_attempts"));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord g, reg_->GetJob(j.id));
  EXPECT_EQ(g.state, JobState::kFailed);
  EXPECT_EQ(g.attempt, 3);

  GCL_ASSERT_OK_AND_ASSIGN(auto attempts, reg_->ListAttempts(j.id));
  ASSERT_EQ(attempts.size(), 3u);
  EXPECT_EQ(attempts[0].state, AttemptState::kPreempted);
  EXPECT_EQ(attempts[0].worker_id, "w1");
  EXPECT_EQ(attempts[1].state, AttemptState::kFailed);
  EXPECT_EQ(attempts[1].exit_code, 1);
  EXPECT_EQ(attempts[2].state, AttemptState::kLost);
  EXPECT_FALSE(attempts[2].exit_code.has_value());
  EXPECT_TRUE(attempts[2].ended_ms.has_value());
  EXPECT_THAT(EventKinds(j.id),
              ElementsAre("submitted:QUEUED", "state:RUNNING", "state:QUEUED", "state:RUNNING", "state:QUEUED",
                          "state:RUNNING", "state:FAILED"));
}

TEST_F(RegistryTest, SuccessAndCancellingPaths) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a")));
  ASSERT_THAT(reg_->Transition(j.id, JobState::kScheduled, "placed on w1"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(int32_t a, reg_->StartAttempt(j.id, "w1"));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord done, reg_->FinishAttempt(j.id, a, {AttemptState::kSucceeded, 0, ""}));
  EXPECT_EQ(done.state, JobState::kSucceeded);

  GCL_ASSERT_OK_AND_ASSIGN(JobRecord k, reg_->CreateJob(Job("b")));
  GCL_ASSERT_OK_AND_ASSIGN(int32_t b, reg_->StartAttempt(k.id, "w1"));
  ASSERT_THAT(reg_->Transition(k.id, JobState::kCancelling, "cancel requested by alice"), IsOk());
  // The killed trainer reports a failure: the job ends CANCELLED, uncharged.
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->FinishAttempt(k.id, b, {AttemptState::kFailed, 137, "killed"}));
  EXPECT_EQ(c.state, JobState::kCancelled);
}

TEST_F(RegistryTest, EventsReplayInOrderAfterSeq) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord other, reg_->CreateJob(Job("b")));
  ASSERT_THAT(reg_->SetReason(j.id, "needs 4 devices; largest worker has 2"), IsOk());
  ASSERT_THAT(reg_->SetReason(j.id, "needs 4 devices; largest worker has 2"), IsOk());  // no new event
  ASSERT_THAT(reg_->StartAttempt(other.id, "w9"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(j.id, "w1"), IsOk());
  ASSERT_THAT(reg_->AppendEvent(j.id, "note", "hello", "{\"k\":1}"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto all, reg_->EventsAfter(j.id, 0));
  ASSERT_EQ(all.size(), 4u);
  for (size_t i = 1; i < all.size(); ++i) EXPECT_GT(all[i].seq, all[i - 1].seq);
  EXPECT_EQ(all[1].kind, "reason");
  EXPECT_EQ(all[2].from_state, "QUEUED");
  EXPECT_EQ(all[2].to_state, "RUNNING");
  EXPECT_EQ(all[2].attempt, 1);
  EXPECT_EQ(all[2].payload_json, "{\"worker_id\":\"w1\"}");
  EXPECT_EQ(all[3].payload_json, "{\"k\":1}");
  GCL_ASSERT_OK_AND_ASSIGN(auto tail, reg_->EventsAfter(j.id, all[1].seq));
  ASSERT_EQ(tail.size(), 2u);
  EXPECT_EQ(tail[0].seq, all[2].seq);
  GCL_ASSERT_OK_AND_ASSIGN(auto limited, reg_->EventsAfter(j.id, 0, 2));
  EXPECT_EQ(limited.size(), 2u);
  GCL_ASSERT_OK_AND_ASSIGN(auto none, reg_->EventsAfter(j.id, all.back().seq));
  EXPECT_TRUE(none.empty());
  EXPECT_THAT(reg_->EventsAfter("j-missing", 0), StatusIs(absl::StatusCode::kNotFound, ""));
}

TEST_F(RegistryTest, ListPagingIsStableAndFiltered) {
  std::set<std::string> ids;
  for (int i = 0; i < 25; ++i) {
    clock_ = 1000 + i / 3;  // ties in created_ms exercise the id tiebreak
    NewJob nj = Job("j" + std::to_string(i));
    if (i % 5 == 0) nj.kind = "finetune";
    GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(nj));
    ids.insert(j.id);
  }
  std::vector<std::string> seen;
  JobFilter f;
  f.page_size = 7;
  int pages = 0;
  while (true) {
    GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg_->ListJobs(f));
    ++pages;
    for (const JobRecord& j : page.jobs) seen.push_back(j.id);
    if (pages == 1) {
      // A job submitted meanwhile does not shift later pages (newest first).
      clock_ = 5000;
      ASSERT_THAT(reg_->CreateJob(Job("late")), IsOk());
    }
    if (page.next_page_token.empty()) break;
    f.page_token = page.next_page_token;
  }
  EXPECT_EQ(pages, 4);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), ids);
  // Order: created_ms DESC, id DESC.
  for (size_t i = 1; i < seen.size(); ++i) {
    GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->GetJob(seen[i - 1]));
    GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->GetJob(seen[i]));
    EXPECT_TRUE(a.created_ms > b.created_ms || (a.created_ms == b.created_ms && a.id > b.id));
  }
  JobFilter kind;
  kind.kind = "finetune";
  GCL_ASSERT_OK_AND_ASSIGN(JobPage fp, reg_->ListJobs(kind));
  EXPECT_EQ(fp.jobs.size(), 5u);
  JobFilter st;
  st.states = {JobState::kRunning, JobState::kCancelled};
  GCL_ASSERT_OK_AND_ASSIGN(JobPage none, reg_->ListJobs(st));
  EXPECT_TRUE(none.jobs.empty());
  ASSERT_THAT(reg_->Transition(*ids.begin(), JobState::kCancelled, "x"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(JobPage one, reg_->ListJobs(st));
  ASSERT_EQ(one.jobs.size(), 1u);
  EXPECT_EQ(one.jobs[0].id, *ids.begin());
  JobFilter owner;
  owner.owner = "bob";
  GCL_ASSERT_OK_AND_ASSIGN(JobPage bob, reg_->ListJobs(owner));
  EXPECT_TRUE(bob.jobs.empty());
  JobFilter bad;
  bad.page_token = "garbage";
  EXPECT_THAT(reg_->ListJobs(bad), StatusIs(absl::StatusCode::kInvalidArgument, "page_token"));
}

TEST_F(RegistryTest, QueuePositionByPriorityThenFifo) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(Job("a", 0)));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b", 5)));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->CreateJob(Job("c", 0)));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord d, reg_->CreateJob(Job("d", 5)));
  EXPECT_EQ(*reg_->QueuePosition(b.id), 0);
  EXPECT_EQ(*reg_->QueuePosition(d.id), 1);
  EXPECT_EQ(*reg_->QueuePosition(a.id), 2);
  EXPECT_EQ(*reg_->QueuePosition(c.id), 3);
  GCL_ASSERT_OK_AND_ASSIGN(auto q, reg_->ListQueued());
  ASSERT_EQ(q.size(), 4u);
  EXPECT_EQ(q[0].id, b.id);
  EXPECT_EQ(q[1].id, d.id);
  EXPECT_EQ(q[2].id, a.id);
  EXPECT_EQ(q[3].id, c.id);
  // b runs: everyone moves up; a requeued job keeps its submission place.
  ASSERT_THAT(reg_->StartAttempt(b.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(a.id, "w2"), IsOk());
  EXPECT_EQ(*reg_->QueuePosition(d.id), 0);
  EXPECT_EQ(*reg_->QueuePosition(c.id), 1);
  ASSERT_THAT(reg_->Requeue(a.id, "worker w2 lost"), IsOk());
  EXPECT_EQ(*reg_->QueuePosition(a.id), 1);
  EXPECT_EQ(*reg_->QueuePosition(c.id), 2);
  EXPECT_THAT(reg_->QueuePosition(b.id), StatusIs(absl::StatusCode::kFailedPrecondition, "not QUEUED"));
}

TEST_F(RegistryTest, WorkersLeaseAndLost) {
  WorkerRecord w;
  w.id = "w1";
  w.address = "10.0.0.2:7001";
  w.devices = 2;
  w.lease_expiry_ms = 11000;
  ASSERT_THAT(reg_->UpsertWorker(w), IsOk());
  clock_ = 3000;
  ASSERT_THAT(reg_->TouchWorker("w1", 13000), IsOk());
  EXPECT_THAT(reg_->TouchWorker("w2", 13000), StatusIs(absl::StatusCode::kNotFound, "w2"));
  GCL_ASSERT_OK_AND_ASSIGN(WorkerRecord got, reg_->GetWorker("w1"));
  EXPECT_EQ(got.registered_ms, 1000);
  EXPECT_EQ(got.last_seen_ms, 3000);
  EXPECT_EQ(got.lease_expiry_ms, 13000);
  EXPECT_EQ(got.devices, 2);

  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b", 0, 1)));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->CreateJob(Job("c")));
  ASSERT_THAT(reg_->StartAttempt(a.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(b.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(c.id, "w2"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto requeued, reg_->MarkWorkerLost("w1", ""));
  EXPECT_THAT(requeued, ElementsAre(a.id, b.id));
  EXPECT_EQ(reg_->GetJob(a.id)->state, JobState::kQueued);
  EXPECT_EQ(reg_->GetJob(b.id)->state, JobState::kFailed);  // max_attempts 1
  EXPECT_EQ(reg_->GetJob(c.id)->state, JobState::kRunning);
  EXPECT_THAT(reg_->GetJob(a.id)->reason, HasSubstr("worker w1 lost"));
  EXPECT_THAT(reg_->TouchWorker("w1", 20000), StatusIs(absl::StatusCode::kFailedPrecondition, "LOST"));
  ASSERT_THAT(reg_->UpsertWorker(w), IsOk());  // re-register
  GCL_ASSERT_OK_AND_ASSIGN(auto workers, reg_->ListWorkers());
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].state, WorkerState::kAlive);
  EXPECT_EQ(workers[0].registered_ms, 1000);
}

TEST_F(RegistryTest, ControlPlaneQueriesOpenAttemptsDevicesAndWorkerOfJob) {
  NewJob two = Job("two");
  two.devices = 2;
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(two));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->CreateJob(Job("c")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord d, reg_->CreateJob(Job("d")));
  EXPECT_EQ(a.worker_id, "");
  ASSERT_THAT(reg_->StartAttempt(a.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(b.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(c.id, "w2"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(d.id, "w1"), IsOk());
  ASSERT_THAT(reg_->Transition(b.id, JobState::kCancelling, "user", 1), IsOk());
  ASSERT_THAT(reg_->FinishAttempt(d.id, 1, {AttemptState::kSucceeded, 0, "ok"}), IsOk());

  GCL_ASSERT_OK_AND_ASSIGN(auto open, reg_->OpenAttemptsOn("w1"));
  ASSERT_EQ(open.size(), 2u);  // d finished: not open
  EXPECT_EQ(open[0].job_id, a.id);
  EXPECT_EQ(open[0].state, JobState::kRunning);
  EXPECT_EQ(open[0].devices, 2);
  EXPECT_EQ(open[1].job_id, b.id);
  EXPECT_EQ(open[1].state, JobState::kCancelling);
  GCL_ASSERT_OK_AND_ASSIGN(auto none, reg_->OpenAttemptsOn("w9"));
  EXPECT_TRUE(none.empty());
  GCL_ASSERT_OK_AND_ASSIGN(auto in_use, reg_->DevicesInUse());
  EXPECT_THAT(in_use, ElementsAre(DeviceUse{"w1", 3, {0, 1, 2}}, DeviceUse{"w2", 1, {0}}));
  // The worker of the current attempt comes with the record, also after it ended.
  EXPECT_EQ(reg_->GetJob(c.id)->worker_id, "w2");
  EXPECT_EQ(reg_->GetJob(d.id)->worker_id, "w1");
  // A requeued job's next attempt moves it.
  ASSERT_THAT(reg_->Requeue(c.id, "w2 lost"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(c.id, "w3"), IsOk());
  EXPECT_EQ(reg_->GetJob(c.id)->worker_id, "w3");
  JobFilter running;
  running.states = {JobState::kRunning};
  GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg_->ListJobs(running));
  ASSERT_EQ(page.jobs.size(), 2u);
  for (const JobRecord& j : page.jobs) EXPECT_EQ(j.worker_id, j.id == c.id ? "w3" : "w1");
}

TEST_F(RegistryTest, SetQueuedReasonsWritesOnlyChangesOfQueuedJobs) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->CreateJob(Job("c")));
  ASSERT_THAT(reg_->Transition(c.id, JobState::kCancelled, "user"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(int changed, reg_->SetQueuedReasons({{a.id, "placed on worker w1"},
                                                                {b.id, a.reason},  // unchanged
                                                                {c.id, "too late"},
                                                                {"j-000000000000", "unknown"}}));
  EXPECT_EQ(changed, 1);
  EXPECT_EQ(reg_->GetJob(a.id)->reason, "placed on worker w1");
  EXPECT_EQ(reg_->GetJob(c.id)->reason, "user");
  EXPECT_THAT(EventKinds(a.id), ElementsAre("submitted:QUEUED", "reason:QUEUED"));
  EXPECT_THAT(EventKinds(b.id), ElementsAre("submitted:QUEUED"));
  EXPECT_THAT(reg_->SetQueuedReasons({{a.id, ""}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "needs a reason"));
}

TEST_F(RegistryTest, QueueAndBatchedPositionsAgreeWithQueuePosition) {
  std::vector<JobRecord> jobs;
  for (int i = 0; i < 12; ++i) {
    GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("q" + std::to_string(i), i % 3)));
    jobs.push_back(j);
  }
  ASSERT_THAT(reg_->StartAttempt(jobs[4].id, "w1"), IsOk());
  jobs[4].state = JobState::kRunning;
  GCL_ASSERT_OK_AND_ASSIGN(auto queue, reg_->ListQueue());
  ASSERT_EQ(queue.size(), 11u);
  GCL_ASSERT_OK_AND_ASSIGN(auto full, reg_->ListQueued());
  for (size_t i = 0; i < queue.size(); ++i) EXPECT_EQ(queue[i].id, full[i].id);
  GCL_ASSERT_OK_AND_ASSIGN(std::vector<int64_t> ahead, reg_->QueuePositions(jobs));
  ASSERT_EQ(ahead.size(), jobs.size());
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (i == 4) {
      EXPECT_EQ(ahead[i], -1);
      continue;
    }
    GCL_ASSERT_OK_AND_ASSIGN(int64_t one, reg_->QueuePosition(jobs[i].id));
    EXPECT_EQ(ahead[i], one) << i;
    EXPECT_EQ(queue[one].id, jobs[i].id);
  }
}

TEST_F(RegistryTest, StateFiltersMergeNewestFirstAcrossStatesAndPage) {
  std::vector<std::string> expected;  // newest first, of the QUEUED or FAILED ones
  for (int i = 0; i < 20; ++i) {
    clock_ = 1000 + i / 2;
    GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("m" + std::to_string(i), 0, 1)));
    if (i % 3 == 1) {
      ASSERT_THAT(reg_->StartAttempt(j.id, "w"), IsOk());  // stays RUNNING
    } else if (i % 3 == 2) {
      ASSERT_THAT(reg_->StartAttempt(j.id, "w"), IsOk());
      ASSERT_THAT(reg_->FinishAttempt(j.id, 1, {AttemptState::kFailed, 1, "boom"}), IsOk());
      expected.push_back(j.id);
    } else {
      expected.push_back(j.id);
    }
  }
  std::vector<std::pair<int64_t, std::string>> order;
  for (const std::string& id : expected) order.push_back({reg_->GetJob(id)->created_ms, id});
  std::sort(order.rbegin(), order.rend());
  JobFilter f;
  f.states = {JobState::kFailed, JobState::kQueued, JobState::kFailed};  // a repeat counts once
  f.page_size = 4;
  std::vector<std::string> seen;
  while (true) {
    GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg_->ListJobs(f));
    ASSERT_LE(page.jobs.size(), 4u);
    for (const JobRecord& j : page.jobs) seen.push_back(j.id);
    if (page.next_page_token.empty()) break;
    f.page_token = page.next_page_token;
  }
  ASSERT_EQ(seen.size(), order.size());
  for (size_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i], order[i].second) << i;
  f = {};
  f.states = {JobState::kRunning};
  f.owner = "nobody";
  GCL_ASSERT_OK_AND_ASSIGN(JobPage none, reg_->ListJobs(f));
  EXPECT_TRUE(none.jobs.empty());
}

TEST_F(RegistryTest, RenewLeasesInOneTransactionSkipsLostAndUnknown) {
  WorkerRecord w;
  w.devices = 1;
  w.lease_expiry_ms = 2000;
  for (const char* id : {"w1", "w2"}) {
    w.id = id;
    ASSERT_THAT(reg_->UpsertWorker(w), IsOk());
  }
  ASSERT_THAT(reg_->MarkWorkerLost("w2", "gone"), IsOk());
  ASSERT_THAT(reg_->RenewLeases({{"w1", 5000, 9000}, {"w2", 5000, 9000}, {"w9", 5000, 9000}}),
              IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(WorkerRecord w1, reg_->GetWorker("w1"));
  EXPECT_EQ(w1.last_seen_ms, 5000);
  EXPECT_EQ(w1.lease_expiry_ms, 9000);
  GCL_ASSERT_OK_AND_ASSIGN(WorkerRecord w2, reg_->GetWorker("w2"));
  EXPECT_EQ(w2.state, WorkerState::kLost);
  EXPECT_EQ(w2.lease_expiry_ms, 2000);
  EXPECT_THAT(reg_->GetWorker("w9"), StatusIs(absl::StatusCode::kNotFound, "w9"));
}

CheckpointRecord Ckpt(const std::string& job, int64_t step, std::optional<double> metric) {
  CheckpointRecord c;
  c.job_id = job;
  c.attempt = 1;
  c.step = step;
  c.path = "jobs/" + job + "/attempt-1/checkpoints/step-" + std::to_string(step);
  c.sha256 = std::string(64, 'a');
  c.bytes = 100 + step;
  c.metric_name = "val_dice";
  c.metric_value = metric;
  return c;
}

std::vector<int64_t> Steps(const std::vector<CheckpointRecord>& v) {
  std::vector<int64_t> out;
  for (const auto& c : v) out.push_back(c.step);
  return out;
}

TEST_F(RegistryTest, RetentionKeepsNewestAndBestNeverTheOnlyOne) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a")));
  EXPECT_THAT(reg_->NewestCheckpoint(j.id), StatusIs(absl::StatusCode::kNotFound, "no completed"));
  // Only one checkpoint: even keep_newest=0 keeps it.
  ASSERT_THAT(reg_->AddCheckpoint(Ckpt(j.id, 100, std::nullopt)), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto released0, reg_->ApplyRetention(j.id, 0, true));
  EXPECT_TRUE(released0.empty());

  const double metric[] = {0.5, 0.9, 0.7, 0.6, 0.65};  // steps 200..600; best is step 300
  for (int i = 0; i < 5; ++i) ASSERT_THAT(reg_->AddCheckpoint(Ckpt(j.id, 200 + 100 * i, metric[i])), IsOk());
  CheckpointRecord broken = Ckpt(j.id, 650, 0.99);
  broken.state = CheckpointState::kError;  // failed sha check: never kept, never "best"
  ASSERT_THAT(reg_->AddCheckpoint(broken), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto released, reg_->ApplyRetention(j.id, 2, /*higher_is_better=*/true));
  EXPECT_THAT(Steps(released), ElementsAre(650, 400, 200, 100));
  for (const auto& c : released) EXPECT_EQ(c.state, CheckpointState::kDeleted);
  GCL_ASSERT_OK_AND_ASSIGN(auto kept, reg_->ListCheckpoints(j.id));
  EXPECT_THAT(Steps(kept), ElementsAre(300, 500, 600));
  GCL_ASSERT_OK_AND_ASSIGN(CheckpointRecord newest, reg_->NewestCheckpoint(j.id));
  EXPECT_EQ(newest.step, 600);
  EXPECT_EQ(newest.bytes, 700);
  // Lower is better (a loss): the best is the lowest kept value, 0.6 at step 500.
  GCL_ASSERT_OK_AND_ASSIGN(auto released2, reg_->ApplyRetention(j.id, 1, /*higher_is_better=*/false));
  EXPECT_THAT(Steps(released2), ElementsAre(300));
  GCL_ASSERT_OK_AND_ASSIGN(auto kept2, reg_->ListCheckpoints(j.id));
  EXPECT_THAT(Steps(kept2), ElementsAre(500, 600));

  CheckpointRecord bad = Ckpt(j.id, 1, 0.1);
  bad.sha256 = "xyz";
  EXPECT_THAT(reg_->AddCheckpoint(bad), StatusIs(absl::StatusCode::kInvalidArgument, "sha256"));
  EXPECT_THAT(reg_->AddCheckpoint(Ckpt("j-missing", 1, 0.1)), StatusIs(absl::StatusCode::kNotFound, ""));
}

TEST_F(RegistryTest, ResultsSummaryMeanAndSampleStd) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord parent, reg_->CreateJob(Job("exp")));
  NewJob c1 = Job("ft1");
  c1.parent_id = parent.id;
  NewJob c2 = Job("ft2");
  c2.parent_id = parent.id;
  GCL_ASSERT_OK_AND_ASSIGN(auto kids, reg_->CreateJobs({c1, c2}));
  // Repeat 0 (child 1): LV dice 0.8, 0.9 -> 0.85; repeat 1 (child 2): 0.7, 0.8 -> 0.75;
  // repeat 2 (child 2): 0.95 -> 0.95. Mean 0.85; sample std
  // sqrt(((0)^2 + (-0.1)^2 + (0.1)^2) / 2) = 0.1.
  std::vector<ResultRecord> rows;
  auto add = [&](const std::string& job, int rep, const std::string& cs, double dice, std::optional<double> hd) {
    ResultRecord r;
    r.job_id = job;
    r.variant = "gcl";
    r.m_lab = 1;
    r.repeat = rep;
    r.case_id = cs;
    r.class_name = "LV";
    r.dice = dice;
    r.hd95 = hd;
    rows.push_back(r);
  };
  add(kids[0].id, 0, "p1", 0.8, 2.0);
  add(kids[0].id, 0, "p2", 0.9, 4.0);
  add(kids[1].id, 1, "p1", 0.7, std::nullopt);
  add(kids[1].id, 1, "p2", 0.8, std::nullopt);
  add(kids[1].id, 2, "p1", 0.95, 5.0);
  ASSERT_THAT(reg_->AddResults(rows), IsOk());
  ASSERT_THAT(reg_->AddResult(rows[0]), IsOk());  // idempotent replace
  ResultRecord other = rows[0];
  other.class_name = "RV";
  other.dice = 0.5;
  ASSERT_THAT(reg_->AddResult(other), IsOk());

  GCL_ASSERT_OK_AND_ASSIGN(auto sum, reg_->SummarizeResults(parent.id));
  ASSERT_EQ(sum.size(), 2u);
  EXPECT_EQ(sum[0].class_name, "LV");
  EXPECT_EQ(sum[0].repeats, 3);
  EXPECT_EQ(sum[0].cases, 5);
  EXPECT_NEAR(sum[0].dice_mean, 0.85, 1e-12);
  EXPECT_NEAR(sum[0].dice_std, 0.1, 1e-12);
  ASSERT_TRUE(sum[0].hd95_mean.has_value());
  EXPECT_NEAR(*sum[0].hd95_mean, 4.0, 1e-12);  // repeats 0 (3.0) and 2 (5.0)
  EXPECT_NEAR(*sum[0].hd95_std, std::sqrt(2.0), 1e-12);
  EXPECT_EQ(sum[1].class_name, "RV");
  EXPECT_EQ(sum[1].repeats, 1);
  EXPECT_DOUBLE_EQ(sum[1].dice_std, 0.0);
  GCL_ASSERT_OK_AND_ASSIGN(auto one, reg_->SummarizeResults(kids[0].id));
  ASSERT_EQ(one.size(), 2u);
  EXPECT_NEAR(one[0].dice_mean, 0.85, 1e-12);
  GCL_ASSERT_OK_AND_ASSIGN(auto listed, reg_->ListResults(parent.id));
  EXPECT_EQ(listed.size(), 6u);

  ResultRecord nan = rows[0];
  nan.dice = std::nan("");
  EXPECT_THAT(reg_->AddResult(nan), StatusIs(absl::StatusCode::kInvalidArgument, "not finite"));

  ASSERT_THAT(reg_->PutMetricSummary(parent.id, "final_loss", "{\"meta\":\"patient\"}", 1.5), IsOk());
  ASSERT_THAT(reg_->PutMetricSummary(parent.id, "final_loss", "{\"meta\":\"patient\"}", 1.25), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto ms, reg_->ListMetricSummaries(parent.id));
  ASSERT_EQ(ms.size(), 1u);
  EXPECT_DOUBLE_EQ(ms[0].value, 1.25);
}

TEST_F(RegistryTest, TwoHandlesWritingConcurrentlyNeverSurfaceBusy) {
  RegistryOptions other_options = Options();
  other_options.id_seed = 4242;  // equal seeds would draw the same ids
  GCL_ASSERT_OK_AND_ASSIGN(auto other, Registry::Open(path_, other_options));
  constexpr int kPerThread = 60;
  std::atomic<int> errors{0};
  std::string first_error;
  std::mutex mu;
  auto work = [&](Registry* r, const std::string& tag) {
    for (int i = 0; i < kPerThread; ++i) {
      auto j = r->CreateJob(Job(tag + std::to_string(i)));
      absl::Status s = j.status();
      if (s.ok()) s = r->StartAttempt(j->id, tag).status();
      if (s.ok()) s = r->FinishAttempt(j->id, 1, {AttemptState::kSucceeded, 0, ""}).status();
      if (!s.ok()) {
        ++errors;
        std::lock_guard<std::mutex> l(mu);
        if (first_error.empty()) first_error = s.ToString();
      }
    }
  };
  std::thread t1(work, reg_.get(), "x");
  std::thread t2(work, other.get(), "y");
  std::thread t3(work, reg_.get(), "z");  // same handle from a second thread
  t1.join();
  t2.join();
  t3.join();
  EXPECT_EQ(errors.load(), 0) << first_error;
  JobFilter f;
  f.page_size = 1000;
  f.states = {JobState::kSucceeded};
  GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg_->ListJobs(f));
  EXPECT_EQ(page.jobs.size(), 3u * kPerThread);
}

TEST_F(RegistryTest, CommittedStateSurvivesCloseAndRecoverActive) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->CreateJob(Job("c")));
  ASSERT_THAT(reg_->StartAttempt(b.id, "w1"), IsOk());
  ASSERT_THAT(reg_->Transition(c.id, JobState::kCancelled, "user"), IsOk());
  {
    // An uncommitted write on a second connection, abandoned (as by a crash).
    GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path_));
    GCL_ASSERT_OK_AND_ASSIGN(Transaction tx, Transaction::Begin(*db));
    ASSERT_THAT(db->Exec("UPDATE jobs SET state='SUCCEEDED'"), IsOk());
    ASSERT_THAT(db->Exec("DELETE FROM job_events"), IsOk());
  }
  reg_.reset();
  GCL_ASSERT_OK_AND_ASSIGN(auto reopened, Registry::Open(path_, Options()));
  GCL_ASSERT_OK_AND_ASSIGN(auto active, reopened->RecoverActive());
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0].id, a.id);
  EXPECT_EQ(active[0].state, JobState::kQueued);
  EXPECT_EQ(active[1].id, b.id);
  EXPECT_EQ(active[1].state, JobState::kRunning);
  EXPECT_EQ(active[1].attempt, 1);
  GCL_ASSERT_OK_AND_ASSIGN(auto ev, reopened->EventsAfter(b.id, 0));
  EXPECT_EQ(ev.size(), 2u);
  GCL_ASSERT_OK_AND_ASSIGN(auto att, reopened->ListAttempts(b.id));
  ASSERT_EQ(att.size(), 1u);
  EXPECT_EQ(att[0].worker_id, "w1");
  // The reopened registry continues: the old attempt can be finished.
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord done, reopened->FinishAttempt(b.id, 1, {AttemptState::kSucceeded, 0, ""}));
  EXPECT_EQ(done.state, JobState::kSucceeded);
}

TEST_F(RegistryTest, RunningAttemptsByWorker) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord c, reg_->CreateJob(Job("c")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord d, reg_->CreateJob(Job("d")));
  ASSERT_THAT(reg_->StartAttempt(a.id, "w2"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(b.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(c.id, "w1"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(d.id, "w1"), IsOk());
  AttemptOutcome done;
  done.state = AttemptState::kSucceeded;
  ASSERT_THAT(reg_->FinishAttempt(d.id, 1, done), IsOk());                     // no longer running
  ASSERT_THAT(reg_->Transition(c.id, JobState::kCancelling, "user"), IsOk());  // still running
  GCL_ASSERT_OK_AND_ASSIGN(auto running, reg_->ListRunningAttempts());
  std::vector<std::string> got;
  for (const AttemptRecord& r : running) got.push_back(r.worker_id + ":" + r.job_id);
  EXPECT_THAT(got, ElementsAre("w1:" + b.id, "w1:" + c.id, "w2:" + a.id));
  EXPECT_EQ(running[0].attempt, 1);
}

TEST_F(RegistryTest, JobsWithResultsFoldsChildrenIntoTheirExperiment) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord exp, reg_->CreateJob(Job("exp")));
  NewJob child = Job("ft");
  child.parent_id = exp.id;
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord kid1, reg_->CreateJob(child));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord kid2, reg_->CreateJob(child));
  clock_ = 2000;
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord solo, reg_->CreateJob(Job("solo")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord empty, reg_->CreateJob(Job("no-results")));
  (void)empty;
  std::vector<ResultRecord> rows;
  for (const std::string& id : {kid1.id, kid2.id, solo.id}) {
    ResultRecord r;
    r.job_id = id;
    r.variant = "gcl";
    r.m_lab = 1;
    r.case_id = "p1";
    r.class_name = "mean";
    r.dice = 0.5;
    rows.push_back(r);
  }
  ASSERT_THAT(reg_->AddResults(rows), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto jobs, reg_->JobsWithResults());
  std::vector<std::string> ids;
  for (const JobRecord& j : jobs) ids.push_back(j.id);
  EXPECT_THAT(ids, ElementsAre(solo.id, exp.id));  // newest first, the experiment once
}

TEST_F(RegistryTest, CountJobsByStateListsEveryState) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord a, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord b, reg_->CreateJob(Job("b")));
  ASSERT_THAT(reg_->CreateJob(Job("c")), IsOk());
  ASSERT_THAT(reg_->StartAttempt(a.id, "w1"), IsOk());
  ASSERT_THAT(reg_->Transition(b.id, JobState::kCancelled, "user"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto counts, reg_->CountJobsByState());
  ASSERT_EQ(counts.size(), static_cast<size_t>(kNumJobStates));
  std::map<JobState, int64_t> by(counts.begin(), counts.end());
  EXPECT_EQ(by[JobState::kQueued], 1);
  EXPECT_EQ(by[JobState::kRunning], 1);
  EXPECT_EQ(by[JobState::kCancelled], 1);
  EXPECT_EQ(by[JobState::kSucceeded], 0);
}

TEST_F(RegistryTest, LastEventOfAKindAndMetricSummariesInOneTransaction) {
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord j, reg_->CreateJob(Job("a")));
  GCL_ASSERT_OK_AND_ASSIGN(auto none, reg_->LastEvent(j.id, "metrics"));
  EXPECT_FALSE(none.has_value());
  ASSERT_THAT(reg_->AppendEvent(j.id, "metrics", "", R"({"step":"1"})"), IsOk());
  ASSERT_THAT(reg_->AppendEvent(j.id, "metrics", "", R"({"step":"2"})"), IsOk());
  ASSERT_THAT(reg_->AppendEvent(j.id, "log", "", "{}"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto last, reg_->LastEvent(j.id, "metrics"));
  ASSERT_TRUE(last.has_value());
  EXPECT_EQ(last->payload_json, R"({"step":"2"})");
  EXPECT_THAT(reg_->LastEvent("j-000000000000", "metrics").status(),
              StatusIs(absl::StatusCode::kNotFound, "j-000000000000"));

  MetricSummary a, b, bad;
  a.name = "gcl_grad_modified_total";
  a.labels_json = R"({"pair":"x|y"})";
  a.value = 3;
  b.name = "gcl_train_steps_total";
  b.value = 20;
  ASSERT_THAT(reg_->PutMetricSummaries(j.id, {a, b}), IsOk());
  a.value = 4;  // replaces
  bad.name = "gcl_grad_cosine";
  bad.value = std::nan("");
  EXPECT_THAT(reg_->PutMetricSummaries(j.id, {a, bad}),
              StatusIs(absl::StatusCode::kInvalidArgument, "gcl_grad_cosine"));
  ASSERT_THAT(reg_->PutMetricSummaries(j.id, {a}), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto rows, reg_->ListMetricSummaries(j.id));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].name, "gcl_grad_modified_total");
  EXPECT_EQ(rows[0].value, 4);
  EXPECT_EQ(rows[1].labels_json, "{}");
}

// ---- gangs: one attempt, one member per worker

class GangRegistryTest : public RegistryTest {
 protected:
  // A pre-training job over `nodes` workers with `per_node` devices each.
  JobRecord Gang(const std::string& name, int64_t nodes, int64_t per_node, int32_t max_attempts = 3) {
    NewJob j = Job(name, 0, max_attempts);
    j.nodes = nodes;
    j.devices = nodes * per_node;
    auto rec = reg_->CreateJob(j);
    EXPECT_TRUE(rec.ok()) << rec.status();
    return rec.ok() ? *rec : JobRecord();
  }
  std::map<std::string, int64_t> InUse() {
    auto in_use = reg_->DevicesInUse();
    EXPECT_TRUE(in_use.ok());
    std::map<std::string, int64_t> out;
    for (const DeviceUse& use : *in_use) out[use.worker_id] = use.devices;
    return out;
  }
};

TEST_F(GangRegistryTest, AGangAttemptRecordsEveryMemberWithItsDevices) {
  JobRecord g = Gang("g", 2, 2);
  EXPECT_EQ(g.nodes, 2);
  EXPECT_THAT(reg_->StartAttempt(g.id, "w1"), StatusIs(absl::StatusCode::kInvalidArgument, "spans 2"));
  EXPECT_THAT(reg_->StartGangAttempt(g.id, {"w1", "w1"}, "h:1"),
              StatusIs(absl::StatusCode::kInvalidArgument, "twice"));
  // w2 already runs a 1-device job on dev:0: the gang's member there gets dev:1, dev:2.
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord one, reg_->CreateJob(Job("one")));
  ASSERT_THAT(reg_->StartAttempt(one.id, "w2"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt started, reg_->StartGangAttempt(g.id, {"w1", "w2"}, "10.0.0.1:29517"));
  EXPECT_EQ(started.attempt, 1);
  ASSERT_EQ(started.members.size(), 2u);
  EXPECT_EQ(started.members[0].worker_id, "w1");
  EXPECT_THAT(started.members[0].device_ids, ElementsAre("dev:0", "dev:1"));
  EXPECT_EQ(started.members[1].node_index, 1);
  EXPECT_THAT(started.members[1].device_ids, ElementsAre("dev:1", "dev:2"));

  GCL_ASSERT_OK_AND_ASSIGN(JobRecord running, reg_->GetJob(g.id));
  EXPECT_EQ(running.state, JobState::kRunning);
  EXPECT_EQ(running.worker_id, "w1");
  EXPECT_EQ(running.reason, "attempt 1 on workers w1 (rank 0), w2 (rank 2)");
  EXPECT_EQ(InUse(), (std::map<std::string, int64_t>{{"w1", 2}, {"w2", 3}}));
  GCL_ASSERT_OK_AND_ASSIGN(auto open, reg_->OpenAttemptsOn("w2"));
  ASSERT_EQ(open.size(), 2u);  // by submission: the gang first
  EXPECT_EQ(open[0].job_id, g.id);
  EXPECT_TRUE(open[0].current);
  EXPECT_EQ(open[0].node_index, 1);
  EXPECT_EQ(open[0].devices, 2);
  EXPECT_EQ(open[0].rendezvous, "10.0.0.1:29517");
  EXPECT_EQ(open[1].job_id, one.id);
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt again, reg_->GetGang(g.id, 1));
  EXPECT_EQ(again.rendezvous, "10.0.0.1:29517");
  ASSERT_EQ(again.members.size(), 2u);
  EXPECT_THAT(again.members[1].device_ids, ElementsAre("dev:1", "dev:2"));
  EXPECT_THAT(reg_->GetGang(g.id, 2), StatusIs(absl::StatusCode::kNotFound, "attempt"));
  // Nodes must divide the devices.
  NewJob odd = Job("odd");
  odd.nodes = 2;
  odd.devices = 3;
  EXPECT_THAT(reg_->CreateJob(odd), StatusIs(absl::StatusCode::kInvalidArgument, "nodes"));
}

TEST_F(GangRegistryTest, DeviceOrderPicksTheFirstFreeDevicesItNames) {
  // w1 holds dev:3 for a 1-device job that preferred it.
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord one, reg_->CreateJob(Job("one")));
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt first, reg_->StartGangAttempt(one.id, {"w1"}, "", {{3, 2}}));
  EXPECT_THAT(first.members[0].device_ids, ElementsAre("dev:3"));
  // A 2-device job restricted to {0, 3, 1} skips the held dev:3.
  NewJob two = Job("two");
  two.devices = 2;
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord pair, reg_->CreateJob(two));
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt second, reg_->StartGangAttempt(pair.id, {"w1"}, "h:1", {{0, 3, 1}}));
  EXPECT_THAT(second.members[0].device_ids, ElementsAre("dev:0", "dev:1"));
  // Too few free among the ones named: refused, nothing written.
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord pair2, reg_->CreateJob(two));
  EXPECT_THAT(reg_->StartGangAttempt(pair2.id, {"w1"}, "h:2", {{0, 1, 2}}),
              StatusIs(absl::StatusCode::kFailedPrecondition, "worker w1 has 1 of the 2 devices"));
  EXPECT_EQ(reg_->GetJob(pair2.id)->state, JobState::kQueued);
  GCL_ASSERT_OK_AND_ASSIGN(auto in_use, reg_->DevicesInUse());
  EXPECT_THAT(in_use, ElementsAre(DeviceUse{"w1", 3, {0, 1, 3}}));
  // One entry per worker, or none.
  EXPECT_THAT(reg_->StartGangAttempt(pair2.id, {"w1"}, "h:2", {{4, 5}, {6}}),
              StatusIs(absl::StatusCode::kInvalidArgument, "device_order has 2 entries for 1 workers"));
  // An empty entry: the lowest free indices.
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt third, reg_->StartGangAttempt(pair2.id, {"w1"}, "h:2", {{}}));
  EXPECT_THAT(third.members[0].device_ids, ElementsAre("dev:2", "dev:4"));
}

TEST_F(GangRegistryTest, AGangSucceedsOnlyWhenEveryMemberSucceeded) {
  JobRecord g = Gang("g", 2, 1);
  ASSERT_THAT(reg_->StartGangAttempt(g.id, {"w1", "w2"}, "h:29500"), IsOk());
  const AttemptOutcome ok{AttemptState::kSucceeded, 0, "exited with code 0"};
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord half, reg_->FinishMember(g.id, 1, "w2", ok));
  EXPECT_EQ(half.state, JobState::kRunning);
  EXPECT_EQ(InUse(), (std::map<std::string, int64_t>{{"w1", 1}}));
  // The same member cannot report twice; a stranger is no member.
  EXPECT_THAT(reg_->FinishMember(g.id, 1, "w2", ok), StatusIs(absl::StatusCode::kFailedPrecondition, "no member"));
  EXPECT_THAT(reg_->FinishMember(g.id, 1, "w9", ok), StatusIs(absl::StatusCode::kFailedPrecondition, "no member"));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord done, reg_->FinishMember(g.id, 1, "w1", ok));
  EXPECT_EQ(done.state, JobState::kSucceeded);
  EXPECT_TRUE(InUse().empty());
  GCL_ASSERT_OK_AND_ASSIGN(auto attempts, reg_->ListAttempts(g.id));
  ASSERT_EQ(attempts.size(), 1u);
  EXPECT_EQ(attempts[0].state, AttemptState::kSucceeded);
}

TEST_F(GangRegistryTest, OneFailedMemberEndsTheAttemptAndTheOthersDrain) {
  JobRecord g = Gang("g", 2, 1);
  ASSERT_THAT(reg_->StartGangAttempt(g.id, {"w1", "w2"}, "h:29500"), IsOk());
  const AttemptOutcome fail{AttemptState::kFailed, 1, "rank 1 of 2 exited with code 1: boom"};
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord requeued, reg_->FinishMember(g.id, 1, "w2", fail));
  EXPECT_EQ(requeued.state, JobState::kQueued);
  EXPECT_EQ(requeued.failures, 1);
  EXPECT_THAT(requeued.reason, HasSubstr("attempt 1 failed: on worker w2: rank 1 of 2"));
  // w1's ranks still run until its agent confirms: its device stays held.
  EXPECT_EQ(InUse(), (std::map<std::string, int64_t>{{"w1", 1}}));
  GCL_ASSERT_OK_AND_ASSIGN(auto open, reg_->OpenAttemptsOn("w1"));
  ASSERT_EQ(open.size(), 1u);
  EXPECT_FALSE(open[0].current);
  EXPECT_EQ(open[0].state, JobState::kQueued);
  // Its late report is stale for the job but frees the device.
  const AttemptOutcome killed{AttemptState::kFailed, -1, "killed by signal 15"};
  EXPECT_THAT(reg_->FinishMember(g.id, 1, "w1", killed), StatusIs(absl::StatusCode::kFailedPrecondition, "stale"));
  ASSERT_THAT(reg_->CloseMember(g.id, 1, "w1", killed), IsOk());
  ASSERT_THAT(reg_->CloseMember(g.id, 1, "w1", killed), IsOk());  // idempotent
  EXPECT_TRUE(InUse().empty());
  // The next attempt places the whole gang again.
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt second, reg_->StartGangAttempt(g.id, {"w2", "w1"}, "h:29501"));
  EXPECT_EQ(second.attempt, 2);
  EXPECT_EQ(reg_->GetJob(g.id)->worker_id, "w2");
}

TEST_F(GangRegistryTest, ALostMemberRequeuesTheGangAndChargesOneAttempt) {
  JobRecord g = Gang("g", 2, 1, /*max_attempts=*/2);
  ASSERT_THAT(reg_->StartGangAttempt(g.id, {"w1", "w2"}, "h:29500"), IsOk());
  WorkerRecord w;
  w.id = "w2";
  ASSERT_THAT(reg_->UpsertWorker(w), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto requeued, reg_->MarkWorkerLost("w2", "worker w2 stopped sending heartbeats"));
  EXPECT_THAT(requeued, ElementsAre(g.id));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord after, reg_->GetJob(g.id));
  EXPECT_EQ(after.state, JobState::kQueued);
  EXPECT_EQ(after.failures, 1);
  EXPECT_THAT(after.reason, HasSubstr("attempt 1 lost: worker w2 stopped sending heartbeats (1/2 failures)"));
  GCL_ASSERT_OK_AND_ASSIGN(GangAttempt first, reg_->GetGang(g.id, 1));
  EXPECT_EQ(first.members[0].state, AttemptState::kRunning);  // w1 drains
  EXPECT_EQ(first.members[1].state, AttemptState::kLost);
  EXPECT_EQ(InUse(), (std::map<std::string, int64_t>{{"w1", 1}}));
  // w1 loses its lease too: the draining member is closed, nothing requeued twice.
  w.id = "w1";
  ASSERT_THAT(reg_->UpsertWorker(w), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto none, reg_->MarkWorkerLost("w1", ""));
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(InUse().empty());
  EXPECT_EQ(reg_->GetJob(g.id)->failures, 1);
}

TEST_F(GangRegistryTest, AWorkerThatRestartsWithoutItsRanksEndsTheGang) {
  JobRecord g = Gang("g", 2, 1);
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord single, reg_->CreateJob(Job("single")));
  ASSERT_THAT(reg_->StartGangAttempt(g.id, {"w1", "w2"}, "h:29500"), IsOk());
  ASSERT_THAT(reg_->StartAttempt(single.id, "w2"), IsOk());
  // w2 comes back running neither: the gang cannot go on, the single-worker
  // job is sent again (left RUNNING).
  GCL_ASSERT_OK_AND_ASSIGN(auto requeued, reg_->ReconcileWorker("w2", {}));
  EXPECT_THAT(requeued, ElementsAre(g.id));
  EXPECT_EQ(reg_->GetJob(g.id)->state, JobState::kQueued);
  EXPECT_THAT(reg_->GetJob(g.id)->reason, HasSubstr("worker w2 restarted without it"));
  EXPECT_EQ(reg_->GetJob(single.id)->state, JobState::kRunning);
  EXPECT_EQ(InUse(), (std::map<std::string, int64_t>{{"w1", 1}, {"w2", 1}}));
  // w1 still reports the gang: its draining member stays until it confirms.
  GCL_ASSERT_OK_AND_ASSIGN(auto nothing, reg_->ReconcileWorker("w1", {g.id}));
  EXPECT_TRUE(nothing.empty());
  EXPECT_EQ(InUse().at("w1"), 1);
  GCL_ASSERT_OK_AND_ASSIGN(nothing, reg_->ReconcileWorker("w1", {}));
  EXPECT_TRUE(nothing.empty());
  EXPECT_EQ(InUse().count("w1"), 0u);
}

TEST_F(GangRegistryTest, CancellingAGangEndsCancelledAtTheFirstMemberReport) {
  JobRecord g = Gang("g", 2, 1);
  ASSERT_THAT(reg_->StartGangAttempt(g.id, {"w1", "w2"}, "h:29500"), IsOk());
  ASSERT_THAT(reg_->Transition(g.id, JobState::kCancelling, "user", 1), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto open, reg_->OpenAttemptsOn("w2"));
  ASSERT_EQ(open.size(), 1u);
  EXPECT_TRUE(open[0].current);
  EXPECT_EQ(open[0].state, JobState::kCancelling);
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord done,
                           reg_->FinishMember(g.id, 1, "w1", {AttemptState::kFailed, -1, "cancelled: killed"}));
  EXPECT_EQ(done.state, JobState::kCancelled);
}

TEST_F(GangRegistryTest, RunningAttemptsListAGangUnderEachOfItsWorkers) {
  JobRecord g = Gang("g", 2, 1);
  ASSERT_THAT(reg_->StartGangAttempt(g.id, {"w2", "w1"}, "h:29500"), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto running, reg_->ListRunningAttempts());
  ASSERT_EQ(running.size(), 2u);
  EXPECT_EQ(running[0].worker_id, "w1");
  EXPECT_EQ(running[1].worker_id, "w2");
  EXPECT_EQ(running[0].job_id, g.id);
  ASSERT_THAT(reg_->FinishMember(g.id, 1, "w1", {AttemptState::kSucceeded, 0, "ok"}), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(running, reg_->ListRunningAttempts());
  ASSERT_EQ(running.size(), 1u);
  EXPECT_EQ(running[0].worker_id, "w2");
}

TEST_F(GangRegistryTest, WorkersKeepTheirRendezvousPortRange) {
  WorkerRecord w;
  w.id = "w1";
  w.rendezvous_port_min = 40000;
  w.rendezvous_port_max = 40009;
  ASSERT_THAT(reg_->UpsertWorker(w), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(WorkerRecord got, reg_->GetWorker("w1"));
  EXPECT_EQ(got.rendezvous_port_min, 40000);
  EXPECT_EQ(got.rendezvous_port_max, 40009);
  w.rendezvous_port_min = 50000;
  EXPECT_THAT(reg_->UpsertWorker(w), StatusIs(absl::StatusCode::kInvalidArgument, "port range"));
}

}  // namespace
}  // namespace gcl::storage
