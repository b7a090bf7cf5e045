#include "storage/migrations.h"

#include <string>

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

bool TableExists(Db& db, const std::string& name) {
  auto st = db.Prepare("SELECT COUNT(*) FROM sqlite_master WHERE type='table' AND name=?1");
  EXPECT_TRUE(st.ok());
  st->Bind(1, name);
  auto row = st->Step();
  return row.ok() && *row && st->ColumnInt64(0) == 1;
}

TEST(MigrationsTest, VersionsAreConsecutive) {
  const auto& all = Migrations();
  ASSERT_FALSE(all.empty());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].version, static_cast<int>(i) + 1);
  EXPECT_EQ(HeadVersion(), static_cast<int>(all.size()));
}

TEST(MigrationsTest, EmptyToHeadSetsUserVersionAndTables) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open((dir.path() / "r.db").string()));
  GCL_ASSERT_OK_AND_ASSIGN(int v0, SchemaVersion(*db));
  EXPECT_EQ(v0, 0);
  ASSERT_THAT(Migrate(*db), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(int v, SchemaVersion(*db));
  EXPECT_EQ(v, HeadVersion());
  for (const char* t : {"jobs", "job_events", "workers", "attempts", "checkpoints", "results",
                        "metrics_summaries", "attempt_members"}) {
    EXPECT_TRUE(TableExists(*db, t)) << t;
  }
  // STRICT: a text in an INTEGER column is rejected.
  EXPECT_FALSE(db->Exec("INSERT INTO workers(id,devices,state,registered_ms,last_seen_ms,lease_expiry_ms) "
                        "VALUES('w','many','ALIVE',0,0,0)")
                   .ok());
  // CHECK on the enum column.
  EXPECT_FALSE(db->Exec("INSERT INTO workers(id,devices,state,registered_ms,last_seen_ms,lease_expiry_ms) "
                        "VALUES('w',1,'ZOMBIE',0,0,0)")
                   .ok());
}

TEST(MigrationsTest, ReopenIsIdempotent) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "r.db").string();
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto reg, Registry::Open(path));
    NewJob j;
    j.name = "a";
    j.kind = "pretrain";
    ASSERT_THAT(reg->CreateJob(j), IsOk());
  }
  for (int i = 0; i < 2; ++i) {
    GCL_ASSERT_OK_AND_ASSIGN(auto reg, Registry::Open(path));
    GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg->ListJobs({}));
    EXPECT_EQ(page.jobs.size(), 1u);
  }
  GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
  GCL_ASSERT_OK_AND_ASSIGN(int v, SchemaVersion(*db));
  EXPECT_EQ(v, HeadVersion());
  ASSERT_THAT(Migrate(*db), IsOk());  // nothing to do
}

TEST(MigrationsTest, V1FileWithDataMigratesToHead) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "r.db").string();
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
    ASSERT_THAT(Migrate(*db, 1), IsOk());
    GCL_ASSERT_OK_AND_ASSIGN(int v, SchemaVersion(*db));
    ASSERT_EQ(v, 1);
    EXPECT_FALSE(TableExists(*db, "metrics_summaries"));
    ASSERT_THAT(db->Exec("INSERT INTO jobs(id,name,kind,spec_blob,state,reason,submit_seq,created_ms,"
                         "updated_ms,queued_ms) VALUES('j-000000000001','old','pretrain',x'0102',"
                         "'QUEUED','waiting for a worker',1,10,10,10)"),
                IsOk());
  }
  GCL_ASSERT_OK_AND_ASSIGN(auto reg, Registry::Open(path));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord job, reg->GetJob("j-000000000001"));
  EXPECT_EQ(job.name, "old");
  EXPECT_EQ(job.spec_blob, std::string("\x01\x02", 2));
  ASSERT_THAT(reg->PutMetricSummary(job.id, "final_loss", "{}", 0.25), IsOk());
  GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
  GCL_ASSERT_OK_AND_ASSIGN(int v, SchemaVersion(*db));
  EXPECT_EQ(v, HeadVersion());
}

bool IndexExists(Db& db, const std::string& name) {
  auto st = db.Prepare("SELECT COUNT(*) FROM sqlite_master WHERE type='index' AND name=?1");
  EXPECT_TRUE(st.ok());
  st->Bind(1, name);
  auto row = st->Step();
  return row.ok() && *row && st->ColumnInt64(0) == 1;
}

TEST(MigrationsTest, V2FileWithJobsGetsTheV3StateIndex) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "r.db").string();
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
    ASSERT_THAT(Migrate(*db, 2), IsOk());
    EXPECT_FALSE(IndexExists(*db, "jobs_by_state_created"));
    for (int i = 1; i <= 3; ++i) {
      const std::string n = std::to_string(i);
      ASSERT_THAT(db->Exec("INSERT INTO jobs(id,name,kind,spec_blob,state,reason,submit_seq,"
                           "created_ms,updated_ms,queued_ms) VALUES('j-00000000000" +
                           n + "','v2job','pretrain',x'01','" + (i == 2 ? "SUCCEEDED" : "QUEUED") +
                           "','r'," + n + "," + n + "0," + n + "0," + n + "0)"),
                  IsOk());
    }
  }
  GCL_ASSERT_OK_AND_ASSIGN(auto reg, Registry::Open(path));
  JobFilter queued;
  queued.states = {JobState::kQueued};
  GCL_ASSERT_OK_AND_ASSIGN(JobPage page, reg->ListJobs(queued));
  ASSERT_EQ(page.jobs.size(), 2u);
  EXPECT_EQ(page.jobs[0].id, "j-000000000003");  // newest first
  EXPECT_EQ(page.jobs[1].id, "j-000000000001");
  GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
  GCL_ASSERT_OK_AND_ASSIGN(int v, SchemaVersion(*db));
  EXPECT_EQ(v, HeadVersion());
  EXPECT_TRUE(IndexExists(*db, "jobs_by_state_created"));
  EXPECT_TRUE(IndexExists(*db, "jobs_by_request"));  // v4
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord old, reg->GetJob("j-000000000001"));
  EXPECT_EQ(old.name, "v2job");  // rows from before v4 read back (request_id NULL)
  // The state filter is answered from the new index, newest first, not by a sort.
  GCL_ASSERT_OK_AND_ASSIGN(
      Statement plan, db->Prepare("EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE state='QUEUED' "
                                  "ORDER BY created_ms DESC, id DESC LIMIT 51"));
  std::string details;
  while (true) {
    GCL_ASSERT_OK_AND_ASSIGN(bool row, plan.Step());
    if (!row) break;
    details += plan.ColumnText(3) + "\n";
  }
  EXPECT_THAT(details, ::testing::HasSubstr("jobs_by_state_created"));
  EXPECT_THAT(details, ::testing::Not(::testing::HasSubstr("TEMP B-TREE")));
}

TEST(MigrationsTest, V4RunningAttemptBecomesASingleMemberOfV5) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "r.db").string();
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
    ASSERT_THAT(Migrate(*db, 4), IsOk());
    EXPECT_FALSE(TableExists(*db, "attempt_members"));
    ASSERT_THAT(db->Exec("INSERT INTO jobs(id,name,kind,spec_blob,state,reason,attempt,devices,"
                         "submit_seq,created_ms,updated_ms,queued_ms) VALUES('j-000000000001',"
                         "'v4job','pretrain',x'01','RUNNING','attempt 1 on worker w1',1,2,1,10,10,10)"),
                IsOk());
    ASSERT_THAT(db->Exec("INSERT INTO attempts(job_id,attempt,worker_id,state,started_ms) "
                         "VALUES('j-000000000001',1,'w1','RUNNING',10)"),
                IsOk());
  }
  GCL_ASSERT_OK_AND_ASSIGN(auto reg, Registry::Open(path));
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord job, reg->GetJob("j-000000000001"));
  EXPECT_EQ(job.nodes, 1);
  GCL_ASSERT_OK_AND_ASSIGN(auto in_use, reg->DevicesInUse());
  ASSERT_EQ(in_use.size(), 1u);
  EXPECT_EQ(in_use[0].worker_id, "w1");
  EXPECT_EQ(in_use[0].devices, 2);
  EXPECT_TRUE(in_use[0].indices.empty());  // v4 rows name no device
  GCL_ASSERT_OK_AND_ASSIGN(auto open, reg->OpenAttemptsOn("w1"));
  ASSERT_EQ(open.size(), 1u);
  EXPECT_TRUE(open[0].current);
  GCL_ASSERT_OK_AND_ASSIGN(JobRecord done,
                           reg->FinishMember(job.id, 1, "w1", {AttemptState::kSucceeded, 0, "ok"}));
  EXPECT_EQ(done.state, JobState::kSucceeded);
}

TEST(MigrationsTest, NewerDatabaseIsRefused) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "r.db").string();
  {
    GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open(path));
    ASSERT_THAT(db->Exec("PRAGMA user_version = 999"), IsOk());
  }
  auto reg = Registry::Open(path);
  EXPECT_THAT(reg, StatusIs(absl::StatusCode::kFailedPrecondition, "schema version 999"));
  EXPECT_THAT(reg, StatusIs(absl::StatusCode::kFailedPrecondition,
                            "knows up to version " + std::to_string(HeadVersion())));
}

TEST(MigrationsTest, PragmasAreOn) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open((dir.path() / "r.db").string()));
  GCL_ASSERT_OK_AND_ASSIGN(std::string mode, db->QueryText("PRAGMA journal_mode"));
  EXPECT_EQ(mode, "wal");
  GCL_ASSERT_OK_AND_ASSIGN(int64_t fk, db->QueryInt64("PRAGMA foreign_keys"));
  EXPECT_EQ(fk, 1);
  GCL_ASSERT_OK_AND_ASSIGN(int64_t sync, db->QueryInt64("PRAGMA synchronous"));
  EXPECT_EQ(sync, 2);  // FULL
  GCL_ASSERT_OK_AND_ASSIGN(int64_t busy, db->QueryInt64("PRAGMA busy_timeout"));
  EXPECT_EQ(busy, 5000);
}

TEST(SqliteDbTest, TransactionRollsBackUnlessCommitted) {
  gcl::testing::TempDir dir;
  GCL_ASSERT_OK_AND_ASSIGN(auto db, Db::Open((dir.path() / "t.db").string()));
  ASSERT_THAT(db->Exec("CREATE TABLE t(x INTEGER) STRICT"), IsOk());
  {
    GCL_ASSERT_OK_AND_ASSIGN(Transaction tx, Transaction::Begin(*db));
    ASSERT_THAT(db->Exec("INSERT INTO t VALUES(1)"), IsOk());
  }  // no commit
  EXPECT_FALSE(db->InTransaction());
  GCL_ASSERT_OK_AND_ASSIGN(int64_t n, db->QueryInt64("SELECT COUNT(*) FROM t"));
  EXPECT_EQ(n, 0);
  {
    GCL_ASSERT_OK_AND_ASSIGN(Transaction tx, Transaction::Begin(*db));
    GCL_ASSERT_OK_AND_ASSIGN(Statement st, db->Prepare("INSERT INTO t VALUES(?1)"));
    st.Bind(1, int64_t{7});
    ASSERT_THAT(st.Run(), IsOk());
    ASSERT_THAT(tx.Commit(), IsOk());
  }
  GCL_ASSERT_OK_AND_ASSIGN(int64_t sum, db->QueryInt64("SELECT SUM(x) FROM t"));
  EXPECT_EQ(sum, 7);
  // Values are bound, never spliced: a quote is data.
  GCL_ASSERT_OK_AND_ASSIGN(Statement q, db->Prepare("SELECT ?1"));
  q.Bind(1, "'); DROP TABLE t; --");
  GCL_ASSERT_OK_AND_ASSIGN(bool row, q.Step());
  ASSERT_TRUE(row);
  EXPECT_EQ(q.ColumnText(0), "'); DROP TABLE t; --");
}

}  // namespace
}  // namespace gcl::storage
