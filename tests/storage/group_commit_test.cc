#include "storage/group_commit.h"

#include <chrono>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "storage/registry.h"
#include "storage/sqlite_db.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::storage {
namespace {

using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;

NewJob Job(const std::string& name) {
  NewJob j;
  j.name = name;
  j.kind = "pretrain";
  j.spec_blob = "\x08\x01";
  j.reason = "waiting for " + name;
  return j;
}

class GroupCommitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_.path() / "registry.db").string();
    GCL_ASSERT_OK_AND_ASSIGN(reg_, Registry::Open(path_));
  }
  gcl::testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<Registry> reg_;
};

TEST_F(GroupCommitTest, ConcurrentCallersEachGetTheirOwnDurableJob) {
  GroupCommitter committer(reg_.get());
  constexpr int kThreads = 16, kEach = 8;
  std::vector<std::vector<absl::StatusOr<JobRecord>>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        results[t].push_back(
            committer.CreateJob(Job("t" + std::to_string(t) + "-" + std::to_string(i))));
      }
    });
  }
  for (auto& th : threads) th.join();
  std::set<std::string> ids;
  std::set<int64_t> seqs;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(results[t].size(), static_cast<size_t>(kEach));
    for (int i = 0; i < kEach; ++i) {
      ASSERT_THAT(results[t][i].status(), IsOk());
      const JobRecord& rec = *results[t][i];
      const std::string name = "t" + std::to_string(t) + "-" + std::to_string(i);
      EXPECT_EQ(rec.name, name);  // its own job, not a neighbour's
      EXPECT_EQ(rec.reason, "waiting for " + name);
      ids.insert(rec.id);
      seqs.insert(rec.submit_seq);
      if (i > 0) {
        EXPECT_GT(rec.submit_seq, results[t][i - 1]->submit_seq);  // FIFO per caller
      }
    }
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kEach));
  EXPECT_EQ(seqs.size(), ids.size());
  EXPECT_EQ(committer.jobs(), kThreads * kEach);
  EXPECT_LE(committer.batches(), kThreads * kEach);
  // Committed: a second handle on the file sees every job with its event.
  GCL_ASSERT_OK_AND_ASSIGN(auto other, Registry::Open(path_));
  for (const std::string& id : ids) {
    GCL_ASSERT_OK_AND_ASSIGN(JobRecord rec, other->GetJob(id));
    EXPECT_EQ(rec.state, JobState::kQueued);
    GCL_ASSERT_OK_AND_ASSIGN(auto events, other->EventsAfter(id, 0));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, "submitted");
  }
}

// Callers that arrive while a commit is in flight share the next one; an
// invalid job among them fails alone and leaves nothing behind.
TEST_F(GroupCommitTest, WaitingCallersShareOneCommitAndABadJobFailsAlone) {
  GroupCommitter committer(reg_.get());
  // Hold the write lock from another connection: the first leader's commit waits.
  GCL_ASSERT_OK_AND_ASSIGN(auto blocker, Db::Open(path_));
  GCL_ASSERT_OK_AND_ASSIGN(Transaction held, Transaction::Begin(*blocker));

  absl::StatusOr<JobRecord> first;
  std::thread leader([&] { first = committer.CreateJob(Job("first")); });
  std::vector<std::string> names = {"a", "", "b", "orphan", "c"};  // "" and "orphan" are invalid
  std::vector<absl::StatusOr<JobRecord>> got(names.size());
  std::vector<std::thread> callers;
  for (size_t i = 0; i < names.size(); ++i) {
    callers.emplace_back([&, i] {
      NewJob j = Job(names[i]);
      if (names[i] == "orphan") j.parent_id = "j-000000000bad";
      got[i] = committer.CreateJob(j);
    });
  }
  // Wait until all five queue behind the blocked leader, then let it commit.
  for (int i = 0; i < 500 && committer.pending() < static_cast<int64_t>(names.size()); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(committer.pending(), static_cast<int64_t>(names.size()));
  held.Rollback();
  leader.join();
  for (auto& th : callers) th.join();

  ASSERT_THAT(first.status(), IsOk());
  EXPECT_EQ(committer.batches(), 2);  // the blocked leader's, then all five together
  EXPECT_EQ(committer.jobs(), 6);
  for (size_t i : {0, 2, 4}) {
    ASSERT_THAT(got[i].status(), IsOk()) << names[i];
    EXPECT_EQ(got[i]->name, names[i]);
  }
  EXPECT_THAT(got[1], StatusIs(absl::StatusCode::kInvalidArgument, "name must not be empty"));
  EXPECT_THAT(got[3], StatusIs(absl::StatusCode::kNotFound, "parent job 'j-000000000bad'"));
  GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg_->ListJobs({}));
  EXPECT_EQ(page.jobs.size(), 4u);  // first, a, b, c: nothing of the two bad ones
  for (const JobRecord& j : page.jobs) EXPECT_NE(j.name, "orphan");
}

TEST_F(GroupCommitTest, CreateJobsIndependentlyIsolatesFailures) {
  std::vector<NewJob> jobs = {Job("x"), Job("y"), Job("z")};
  jobs[1].max_attempts = 0;  // invalid
  GCL_ASSERT_OK_AND_ASSIGN(auto out, reg_->CreateJobsIndependently(jobs));
  ASSERT_EQ(out.size(), 3u);
  ASSERT_THAT(out[0].status(), IsOk());
  EXPECT_THAT(out[1], StatusIs(absl::StatusCode::kInvalidArgument, "max_attempts must be >= 1"));
  ASSERT_THAT(out[2].status(), IsOk());
  EXPECT_EQ(out[2]->submit_seq, out[0]->submit_seq + 1);
  GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg_->ListJobs({}));
  EXPECT_EQ(page.jobs.size(), 2u);
  GCL_ASSERT_OK_AND_ASSIGN(auto none, reg_->CreateJobsIndependently({}));
  EXPECT_TRUE(none.empty());
}

}  // namespace
}  // namespace gcl::storage
