#include "storage/registry.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "gcl/base/json.h"
#include "gcl/base/status_macros.h"
#include "storage/migrations.h"
#include "storage/str_util.h"

namespace gcl::storage {
namespace {

constexpr char kJobCols[] =
    "id,name,kind,owner,priority,spec_blob,spec_text,state,reason,attempt,failures,max_attempts,"
    "devices,submit_seq,created_ms,updated_ms,queued_ms,parent_id,progress_step,progress_total,"
    "(SELECT a.worker_id FROM attempts a WHERE a.job_id=jobs.id AND a.attempt=jobs.attempt) "
    "AS worker_id,nodes";
constexpr char kDefaultQueuedReason[] = "waiting for a worker";
constexpr char kEventCols[] = "seq,job_id,at_ms,kind,from_state,to_state,reason,attempt,payload_json";

// A job_events row selected with kEventCols.
JobEvent ReadEvent(const Statement& st) {
  JobEvent e;
  e.seq = st.ColumnInt64(0);
  e.job_id = st.ColumnText(1);
  e.at_ms = st.ColumnInt64(2);
  e.kind = st.ColumnText(3);
  e.from_state = st.ColumnText(4);
  e.to_state = st.ColumnText(5);
  e.reason = st.ColumnText(6);
  e.attempt = static_cast<int32_t>(st.ColumnInt64(7));
  e.payload_json = st.ColumnText(8);
  return e;
}

JobRecord ReadJob(const Statement& st) {
  JobRecord j;
  j.id = st.ColumnText(0);
  j.name = st.ColumnText(1);
  j.kind = st.ColumnText(2);
  j.owner = st.ColumnText(3);
  j.priority = static_cast<int32_t>(st.ColumnInt64(4));
  j.spec_blob = st.ColumnBlob(5);
  j.spec_text = st.ColumnText(6);
  j.state = ParseJobState(st.ColumnText(7)).value_or(JobState::kQueued);  // CHECKed column
  j.reason = st.ColumnText(8);
  j.attempt = static_cast<int32_t>(st.ColumnInt64(9));
  j.failures = static_cast<int32_t>(st.ColumnInt64(10));
  j.max_attempts = static_cast<int32_t>(st.ColumnInt64(11));
  j.devices = st.ColumnInt64(12);
  j.submit_seq = st.ColumnInt64(13);
  j.created_ms = st.ColumnInt64(14);
  j.updated_ms = st.ColumnInt64(15);
  j.queued_ms = st.ColumnInt64(16);
  j.parent_id = st.ColumnText(17);
  j.progress_step = st.ColumnInt64(18);
  j.progress_total = st.ColumnInt64(19);
  j.worker_id = st.ColumnText(20);
  j.nodes = st.ColumnInt64(21);
  return j;
}

constexpr char kCkptCols[] =
    "id,job_id,attempt,step,path,sha256,bytes,metric_name,metric_value,state,parent_checkpoint,"
    "created_ms";
constexpr std::string_view kCkptStates[] = {"ACTIVE", "COMPLETED", "ERROR", "DELETED"};

CheckpointRecord ReadCheckpoint(const Statement& st) {
  CheckpointRecord c;
  c.id = st.ColumnInt64(0);
  c.job_id = st.ColumnText(1);
  c.attempt = static_cast<int32_t>(st.ColumnInt64(2));
  c.step = st.ColumnInt64(3);
  c.path = st.ColumnText(4);
  c.sha256 = st.ColumnText(5);
  c.bytes = st.ColumnInt64(6);
  c.metric_name = st.ColumnText(7);
  if (!st.IsNull(8)) c.metric_value = st.ColumnDouble(8);
  std::string state = st.ColumnText(9);
  for (int i = 0; i < 4; ++i) {
    if (kCkptStates[i] == state) c.state = static_cast<CheckpointState>(i);
  }
  if (!st.IsNull(10)) c.parent_checkpoint = st.ColumnInt64(10);
  c.created_ms = st.ColumnInt64(11);
  return c;
}

// Every row of a prepared query, read by `read`.
template <typename ReadFn>
auto CollectRows(Statement& st, ReadFn read) -> absl::StatusOr<std::vector<decltype(read(st))>> {
  std::vector<decltype(read(st))> out;
  while (true) {
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    out.push_back(read(st));
  }
  return out;
}

bool IsSha256Hex(std::string_view s) {
  if (s.size() != 64) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

absl::Status NotFound(std::string_view what, std::string_view id) {
  return absl::NotFoundError(internal::Cat(what, " '", id, "' not found"));
}

absl::StatusOr<JobRecord> ReadJobById(Db& db, std::string_view id) {
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db.Prepare(internal::Cat("SELECT ", kJobCols, " FROM jobs WHERE id=?1")));
  st.Bind(1, id);
  GCL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFound("job", id);
  return ReadJob(st);
}

// Sample standard deviation (n-1); 0 for fewer than two values.
std::pair<double, double> MeanStd(const std::vector<double>& v) {
  if (v.empty()) return {0.0, 0.0};
  double mean = 0;
  for (double x : v) mean += x;
  mean /= static_cast<double>(v.size());
  if (v.size() < 2) return {mean, 0.0};
  double ss = 0;
  for (double x : v) ss += (x - mean) * (x - mean);
  return {mean, std::sqrt(ss / static_cast<double>(v.size() - 1))};
}

}  // namespace

std::string_view ToString(CheckpointState state) { return kCkptStates[static_cast<int>(state)]; }

// ---------------------------------------------------------------- open

Registry::Registry(std::unique_ptr<Db> db, std::unique_ptr<Db> reader, std::unique_ptr<Db> scanner,
                   std::unique_ptr<Db> checkpointer, RegistryOptions options)
    : db_(std::move(db)),
      reader_(std::move(reader)),
      scanner_(std::move(scanner)),
      checkpointer_(std::move(checkpointer)),
      options_(std::move(options)) {
  uint64_t seed = options_.id_seed;
  if (seed == 0) {
    std::random_device rd;
    seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  id_rng_.seed(seed);
}

Registry::~Registry() = default;

absl::StatusOr<std::unique_ptr<Registry>> Registry::Open(const std::string& path,
                                                         RegistryOptions options) {
  DbOptions db_options;
  db_options.busy_timeout_ms = options.busy_timeout_ms;
  db_options.synchronous_full = options.synchronous_full;
  GCL_ASSIGN_OR_RETURN(std::unique_ptr<Db> db, Db::Open(path, db_options));
  GCL_RETURN_IF_ERROR(Migrate(*db));
  if (!options.wal_autocheckpoint) GCL_RETURN_IF_ERROR(db->Exec("PRAGMA wal_autocheckpoint=0"));
  GCL_ASSIGN_OR_RETURN(std::unique_ptr<Db> reader, Db::Open(path, db_options));
  GCL_ASSIGN_OR_RETURN(std::unique_ptr<Db> scanner, Db::Open(path, db_options));
  GCL_ASSIGN_OR_RETURN(std::unique_ptr<Db> checkpointer, Db::Open(path, db_options));
  return std::unique_ptr<Registry>(new Registry(std::move(db), std::move(reader),
                                                std::move(scanner), std::move(checkpointer),
                                                std::move(options)));
}

absl::Status Registry::CheckpointWal() {
  absl::MutexLock lock(&checkpoint_mu_);
  return checkpointer_->CheckpointPassive();
}

int64_t Registry::NowMs() const {
  if (options_.now_ms) return options_.now_ms();
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string Registry::NewJobIdLocked() {
  return absl::StrFormat("j-%012x", id_rng_() & 0xffffffffffffULL);
}

// ---------------------------------------------------------------- events

absl::StatusOr<int64_t> Registry::AppendEventLocked(const JobEvent& e) {
  GCL_ASSIGN_OR_RETURN(
      Statement st, db_->Prepare("INSERT INTO job_events(job_id,at_ms,kind,from_state,to_state,"
                                 "reason,attempt,payload_json) VALUES(?1,?2,?3,?4,?5,?6,?7,?8)"));
  st.Bind(1, e.job_id).Bind(2, e.at_ms).Bind(3, e.kind).Bind(4, e.from_state).Bind(5, e.to_state);
  st.Bind(6, e.reason).Bind(7, e.attempt).Bind(8, e.payload_json.empty() ? "{}" : e.payload_json);
  GCL_RETURN_IF_ERROR(st.Run());
  return db_->LastInsertRowId();
}

absl::StatusOr<int64_t> Registry::AppendEvent(std::string_view job_id, std::string_view kind,
                                              std::string_view reason,
                                              std::string_view payload_json) {
  if (kind.empty()) return absl::InvalidArgumentError("event kind must not be empty");
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(job_id));
  JobEvent e;
  e.job_id = job.id;
  e.at_ms = NowMs();
  e.kind = std::string(kind);
  e.reason = std::string(reason);
  e.attempt = job.attempt;
  e.payload_json = std::string(payload_json);
  GCL_ASSIGN_OR_RETURN(int64_t seq, AppendEventLocked(e));
  GCL_RETURN_IF_ERROR(tx.Commit());
  return seq;
}

absl::StatusOr<std::vector<JobEvent>> Registry::EventsAfter(std::string_view job_id,
                                                            int64_t after_seq, int limit) {
  if (limit <= 0) limit = 1000;
  absl::MutexLock lock(&read_mu_);
  GCL_RETURN_IF_ERROR(ReadJobById(*reader_, job_id).status());
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      reader_->Prepare(internal::Cat("SELECT ", kEventCols,
                                     " FROM job_events WHERE job_id=?1 AND seq>?2 "
                                     "ORDER BY seq LIMIT ?3")));
  st.Bind(1, job_id).Bind(2, after_seq).Bind(3, static_cast<int64_t>(limit));
  GCL_ASSIGN_OR_RETURN(std::vector<JobEvent> out, CollectRows(st, ReadEvent));
  return out;
}

// ---------------------------------------------------------------- jobs

absl::StatusOr<JobRecord> Registry::CreateJobLocked(const NewJob& in, int64_t now) {
  if (in.name.empty()) return absl::InvalidArgumentError("job name must not be empty");
  if (in.kind.empty()) return absl::InvalidArgumentError("job kind must not be empty");
  if (in.max_attempts < 1) {
    return absl::InvalidArgumentError(
        internal::Cat("max_attempts must be >= 1, got ", in.max_attempts));
  }
  if (in.devices < 0)
    return absl::InvalidArgumentError(internal::Cat("devices must be >= 0, got ", in.devices));
  if (in.nodes < 1 || in.devices % in.nodes != 0) {
    return absl::InvalidArgumentError(internal::Cat("nodes must be >= 1 and divide devices (",
                                                    in.devices, "), got ", in.nodes));
  }
  if (!in.parent_id.empty()) {
    absl::StatusOr<JobRecord> parent = GetJobLocked(in.parent_id);
    if (!parent.ok()) return NotFound("parent job", in.parent_id);
  }
  if (!in.request_id.empty()) {
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare("SELECT id FROM jobs WHERE owner=?1 AND request_id=?2"));
    st.Bind(1, in.owner).Bind(2, in.request_id);
    GCL_ASSIGN_OR_RETURN(bool found, st.Step());
    if (found) return GetJobLocked(st.ColumnText(0));  // a retried submit
  }
  JobRecord j;
  j.name = in.name;
  j.kind = in.kind;
  j.owner = in.owner;
  j.priority = in.priority;
  j.spec_blob = in.spec_blob;
  j.spec_text = in.spec_text;
  j.state = JobState::kQueued;
  j.reason = in.reason.empty() ? kDefaultQueuedReason : in.reason;
  j.max_attempts = in.max_attempts;
  j.devices = in.devices;
  j.nodes = in.nodes;
  j.created_ms = j.updated_ms = j.queued_ms = now;
  j.parent_id = in.parent_id;
  GCL_ASSIGN_OR_RETURN(j.submit_seq,
                       db_->QueryInt64("SELECT COALESCE(MAX(submit_seq),0)+1 FROM jobs"));

  absl::Status inserted;
  for (int tries = 0; tries < 8; ++tries) {
    j.id = NewJobIdLocked();
    GCL_ASSIGN_OR_RETURN(
        Statement st,
        db_->Prepare(
            "INSERT INTO jobs(id,name,kind,owner,priority,spec_blob,spec_text,state,reason,"
            "max_attempts,devices,submit_seq,created_ms,updated_ms,queued_ms,parent_id,request_id,"
            "nodes) VALUES(?1,?2,?3,?4,?5,?6,?7,'QUEUED',?8,?9,?10,?11,?12,?12,?12,?13,?14,?15)"));
    st.Bind(1, j.id).Bind(2, j.name).Bind(3, j.kind).Bind(4, j.owner).Bind(5, j.priority);
    st.BindBlob(6, j.spec_blob).Bind(7, j.spec_text).Bind(8, j.reason).Bind(9, j.max_attempts);
    st.Bind(10, j.devices).Bind(11, j.submit_seq).Bind(12, now);
    if (j.parent_id.empty()) {
      st.BindNull(13);
    } else {
      st.Bind(13, j.parent_id);
    }
    if (in.request_id.empty()) {
      st.BindNull(14);
    } else {
      st.Bind(14, in.request_id);
    }
    st.Bind(15, j.nodes);
    inserted = st.Run();
    if (!absl::IsAlreadyExists(inserted)) break;  // id collision: draw again
  }
  GCL_RETURN_IF_ERROR(inserted);
  JobEvent e;
  e.job_id = j.id;
  e.at_ms = now;
  e.kind = "submitted";
  e.to_state = std::string(ToString(JobState::kQueued));
  e.reason = j.reason;
  GCL_RETURN_IF_ERROR(AppendEventLocked(e).status());
  return j;
}

absl::StatusOr<JobRecord> Registry::CreateJob(const NewJob& job) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord rec, CreateJobLocked(job, NowMs()));
  GCL_RETURN_IF_ERROR(tx.Commit());
  return rec;
}

absl::StatusOr<std::vector<JobRecord>> Registry::CreateJobs(const std::vector<NewJob>& jobs) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  const int64_t now = NowMs();
  std::vector<JobRecord> out;
  out.reserve(jobs.size());
  for (const NewJob& j : jobs) {
    GCL_ASSIGN_OR_RETURN(JobRecord rec, CreateJobLocked(j, now));
    out.push_back(std::move(rec));
  }
  GCL_RETURN_IF_ERROR(tx.Commit());
  return out;
}

absl::StatusOr<std::vector<absl::StatusOr<JobRecord>>> Registry::CreateJobsIndependently(
    const std::vector<NewJob>& jobs) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  const int64_t now = NowMs();
  std::vector<absl::StatusOr<JobRecord>> out;
  out.reserve(jobs.size());
  for (const NewJob& j : jobs) {
    // The savepoint undoes a half-written job (row without its event) alone.
    GCL_RETURN_IF_ERROR(db_->Exec("SAVEPOINT create_job"));
    out.push_back(CreateJobLocked(j, now));
    if (!out.back().ok()) GCL_RETURN_IF_ERROR(db_->Exec("ROLLBACK TO create_job"));
    GCL_RETURN_IF_ERROR(db_->Exec("RELEASE create_job"));
  }
  GCL_RETURN_IF_ERROR(tx.Commit());
  return out;
}

absl::StatusOr<JobRecord> Registry::GetJobLocked(std::string_view id) {
  return ReadJobById(*db_, id);
}

absl::StatusOr<JobRecord> Registry::GetJob(std::string_view id) {
  absl::MutexLock lock(&read_mu_);
  return ReadJobById(*reader_, id);
}

absl::StatusOr<std::vector<JobRecord>> Registry::QueryJobsLocked(std::string_view sql) {
  GCL_ASSIGN_OR_RETURN(Statement st, db_->Prepare(sql));
  GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> out, CollectRows(st, ReadJob));
  return out;
}

absl::StatusOr<JobPage> Registry::ListJobs(const JobFilter& f) {
  const int page_size = std::clamp(f.page_size, 1, 1000);
  bool have_token = false;
  int64_t token_ms = 0;
  std::string token_id;
  if (!f.page_token.empty()) {
    size_t slash = f.page_token.find('/');
    if (slash == std::string::npos || !absl::SimpleAtoi(f.page_token.substr(0, slash), &token_ms) ||
        slash + 1 >= f.page_token.size()) {
      return absl::InvalidArgumentError(internal::Cat("malformed page_token '", f.page_token, "'"));
    }
    token_id = f.page_token.substr(slash + 1);
    have_token = true;
  }
  // Dynamic shape, but only placeholders are added: values are always bound.
  // Without a state filter: newest first off jobs_by_created. With one: each
  // state is paged off jobs_by_state_created (one index range per state, at
  // most page_size + 1 rows each) and the union is merged; cost O(states x
  // page), never a walk over the jobs of other states.
  std::vector<JobState> states;
  for (JobState s : f.states) {
    if (std::find(states.begin(), states.end(), s) == states.end()) states.push_back(s);
  }
  std::string where;
  if (!f.owner.empty()) where += " AND owner=?";
  if (!f.kind.empty()) where += " AND kind=?";
  if (!f.parent_id.empty()) where += " AND parent_id=?";
  if (have_token) where += " AND (created_ms,id)<(?,?)";
  constexpr char kOrder[] = " ORDER BY created_ms DESC, id DESC LIMIT ?";
  std::string sql;
  if (states.empty()) {
    sql = internal::Cat("SELECT ", kJobCols, " FROM jobs WHERE 1=1", where, kOrder);
  } else {
    sql = "SELECT * FROM (";
    for (size_t i = 0; i < states.size(); ++i) {
      if (i > 0) sql += " UNION ALL ";
      sql += internal::Cat("SELECT * FROM (SELECT ", kJobCols,
                           " FROM jobs INDEXED BY jobs_by_state_created WHERE state=?", where,
                           kOrder, ")");
    }
    sql += internal::Cat(")", kOrder);
  }

  absl::MutexLock lock(&read_mu_);
  GCL_ASSIGN_OR_RETURN(Statement st, reader_->Prepare(sql));
  int k = 1;
  auto bind_filters = [&] {
    if (!f.owner.empty()) st.Bind(k++, f.owner);
    if (!f.kind.empty()) st.Bind(k++, f.kind);
    if (!f.parent_id.empty()) st.Bind(k++, f.parent_id);
    if (have_token) {
      st.Bind(k++, token_ms);
      st.Bind(k++, token_id);
    }
  };
  if (states.empty()) {
    bind_filters();
  } else {
    for (JobState s : states) {
      st.Bind(k++, ToString(s));
      bind_filters();
      st.Bind(k++, static_cast<int64_t>(page_size) + 1);
    }
  }
  st.Bind(k++, static_cast<int64_t>(page_size) + 1);
  JobPage page;
  while (true) {
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    page.jobs.push_back(ReadJob(st));
  }
  if (static_cast<int>(page.jobs.size()) > page_size) {
    page.jobs.pop_back();
    const JobRecord& last = page.jobs.back();
    page.next_page_token = internal::Cat(last.created_ms, "/", last.id);
  }
  return page;
}

absl::Status Registry::MoveJobLocked(const JobRecord& job, JobState to, std::string_view reason,
                                     int32_t failures, int64_t now) {
  GCL_ASSIGN_OR_RETURN(
      Statement st, db_->Prepare("UPDATE jobs SET state=?2, reason=?3, failures=?4, updated_ms=?5, "
                                 "queued_ms=CASE WHEN ?2='QUEUED' THEN ?5 ELSE queued_ms END "
                                 "WHERE id=?1"));
  st.Bind(1, job.id).Bind(2, ToString(to)).Bind(3, reason).Bind(4, failures).Bind(5, now);
  GCL_RETURN_IF_ERROR(st.Run());
  JobEvent e;
  e.job_id = job.id;
  e.at_ms = now;
  e.kind = "state";
  e.from_state = std::string(ToString(job.state));
  e.to_state = std::string(ToString(to));
  e.reason = std::string(reason);
  e.attempt = job.attempt;
  return AppendEventLocked(e).status();
}

absl::Status Registry::CloseAttemptLocked(std::string_view job_id, int32_t attempt,
                                          const AttemptOutcome& outcome, int64_t now) {
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("UPDATE attempts SET state=?3, ended_ms=?4, exit_code=?5, reason=?6 "
                   "WHERE job_id=?1 AND attempt=?2 AND state='RUNNING'"));
  st.Bind(1, job_id).Bind(2, attempt).Bind(3, ToString(outcome.state)).Bind(4, now);
  if (outcome.exit_code.has_value()) {
    st.Bind(5, *outcome.exit_code);
  } else {
    st.BindNull(5);
  }
  st.Bind(6, outcome.reason);
  GCL_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() != 1) {
    return absl::FailedPreconditionError(
        internal::Cat("job ", job_id, " has no running attempt ", attempt));
  }
  return absl::OkStatus();
}

absl::Status Registry::Transition(std::string_view id, JobState to, std::string_view reason,
                                  int64_t expected_attempt) {
  if (to == JobState::kQueued && reason.empty()) {
    return absl::InvalidArgumentError("a QUEUED job needs a reason");
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(id));
  if (expected_attempt >= 0 && job.attempt != expected_attempt) {
    return absl::FailedPreconditionError(
        internal::Cat("job ", id, " is at attempt ", job.attempt, ", not ", expected_attempt));
  }
  if (to == JobState::kRunning && job.devices > 0) {
    return absl::InvalidArgumentError("enter RUNNING with StartAttempt (it records the attempt)");
  }
  GCL_RETURN_IF_ERROR(CheckTransition(job.state, to));
  const int64_t now = NowMs();
  const bool attempt_open =
      job.attempt > 0 && (job.state == JobState::kRunning || job.state == JobState::kCancelling);
  if (attempt_open && (IsTerminal(to) || to == JobState::kQueued)) {
    AttemptOutcome outcome;
    outcome.reason = std::string(reason);
    switch (to) {
      case JobState::kSucceeded:
        outcome.state = AttemptState::kSucceeded;
        break;
      case JobState::kFailed:
        outcome.state = AttemptState::kFailed;
        break;
      case JobState::kCancelled:
        outcome.state = AttemptState::kCancelled;
        break;
      default:
        outcome.state = AttemptState::kPreempted;
        break;  // RUNNING -> QUEUED
    }
    GCL_RETURN_IF_ERROR(CloseAttemptLocked(job.id, job.attempt, outcome, now));
    GCL_RETURN_IF_ERROR(CloseMembersLocked(job.id, job.attempt, "", outcome, now).status());
  }
  GCL_RETURN_IF_ERROR(MoveJobLocked(job, to, reason, job.failures, now));
  return tx.Commit();
}

absl::Status Registry::SetReason(std::string_view id, std::string_view reason) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(id));
  if (IsTerminal(job.state)) {
    return absl::FailedPreconditionError(internal::Cat("job ", id, " is ", ToString(job.state)));
  }
  if (job.state == JobState::kQueued && reason.empty()) {
    return absl::InvalidArgumentError("a QUEUED job needs a reason");
  }
  if (job.reason == reason) return absl::OkStatus();
  const int64_t now = NowMs();
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare("UPDATE jobs SET reason=?2, updated_ms=?3 WHERE id=?1"));
  st.Bind(1, id).Bind(2, reason).Bind(3, now);
  GCL_RETURN_IF_ERROR(st.Run());
  JobEvent e;
  e.job_id = job.id;
  e.at_ms = now;
  e.kind = "reason";
  e.from_state = e.to_state = std::string(ToString(job.state));
  e.reason = std::string(reason);
  e.attempt = job.attempt;
  GCL_RETURN_IF_ERROR(AppendEventLocked(e).status());
  return tx.Commit();
}

absl::StatusOr<int> Registry::SetQueuedReasons(
    const std::vector<std::pair<std::string, std::string>>& id_reason) {
  if (id_reason.empty()) return 0;
  for (const auto& [id, reason] : id_reason) {
    if (reason.empty()) {
      return absl::InvalidArgumentError(
          internal::Cat("a QUEUED job needs a reason (job ", id, ")"));
    }
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  const int64_t now = NowMs();
  int changed = 0;
  for (const auto& [id, reason] : id_reason) {
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare("UPDATE jobs SET reason=?2, updated_ms=?3 WHERE id=?1 AND "
                                      "state='QUEUED' AND reason<>?2 RETURNING attempt"));
    st.Bind(1, id).Bind(2, reason).Bind(3, now);
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) continue;  // not QUEUED any more, or unchanged
    JobEvent e;
    e.job_id = id;
    e.at_ms = now;
    e.kind = "reason";
    e.from_state = e.to_state = std::string(ToString(JobState::kQueued));
    e.reason = reason;
    e.attempt = static_cast<int32_t>(st.ColumnInt64(0));
    GCL_RETURN_IF_ERROR(st.Run());  // finish the statement before the next write
    GCL_RETURN_IF_ERROR(AppendEventLocked(e).status());
    ++changed;
  }
  GCL_RETURN_IF_ERROR(tx.Commit());
  return changed;
}

absl::Status Registry::SetProgress(std::string_view id, int64_t step, int64_t total) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare("UPDATE jobs SET progress_step=?2, progress_total=?3, "
                                    "updated_ms=?4 WHERE id=?1"));
  st.Bind(1, id).Bind(2, step).Bind(3, total).Bind(4, NowMs());
  GCL_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() != 1) return NotFound("job", id);
  return tx.Commit();
}

// ---------------------------------------------------------------- attempts

absl::StatusOr<int32_t> Registry::StartAttempt(std::string_view job_id,
                                               std::string_view worker_id) {
  GCL_ASSIGN_OR_RETURN(GangAttempt gang,
                       StartGangAttempt(job_id, {std::string(worker_id)}, /*rendezvous=*/""));
  return gang.attempt;
}

namespace {

// "dev:3" -> 3; -1 for anything else.
int64_t DeviceIndex(std::string_view id) {
  if (id.substr(0, 4) != "dev:") return -1;
  int64_t v = 0;
  return absl::SimpleAtoi(std::string(id.substr(4)), &v) && v >= 0 ? v : -1;
}

std::vector<std::string> SplitIds(const std::string& joined) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start < joined.size()) {
    size_t comma = joined.find(',', start);
    if (comma == std::string::npos) comma = joined.size();
    if (comma > start) out.push_back(joined.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

AttemptMember ReadMember(const Statement& st) {
  AttemptMember m;
  m.job_id = st.ColumnText(0);
  m.attempt = static_cast<int32_t>(st.ColumnInt64(1));
  m.node_index = static_cast<int32_t>(st.ColumnInt64(2));
  m.worker_id = st.ColumnText(3);
  m.devices = st.ColumnInt64(4);
  m.device_ids = SplitIds(st.ColumnText(5));
  m.state = ParseAttemptState(st.ColumnText(6)).value_or(AttemptState::kRunning);
  m.reason = st.ColumnText(7);
  return m;
}
constexpr char kMemberCols[] = "job_id,attempt,node_index,worker_id,devices,device_ids,state,reason";

}  // namespace

absl::StatusOr<GangAttempt> Registry::StartGangAttempt(
    std::string_view job_id, const std::vector<std::string>& workers, std::string_view rendezvous,
    const std::vector<std::vector<int64_t>>& device_order) {
  if (!device_order.empty() && device_order.size() != workers.size()) {
    return absl::InvalidArgumentError(internal::Cat("device_order has ", device_order.size(),
                                                    " entries for ", workers.size(), " workers"));
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    if (workers[i].empty()) return absl::InvalidArgumentError("worker_id must not be empty");
    if (std::find(workers.begin(), workers.begin() + i, workers[i]) != workers.begin() + i) {
      return absl::InvalidArgumentError(
          internal::Cat("worker ", workers[i], " appears twice in one gang"));
    }
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(job_id));
  if (static_cast<int64_t>(workers.size()) != job.nodes) {
    return absl::InvalidArgumentError(internal::Cat("job ", job_id, " spans ", job.nodes,
                                                    " workers, got ", workers.size()));
  }
  GCL_RETURN_IF_ERROR(CheckTransition(job.state, JobState::kRunning));
  if (job.failures >= job.max_attempts) {
    return absl::FailedPreconditionError(
        internal::Cat("job ", job_id, " used all ", job.max_attempts, " attempts"));
  }
  const int64_t now = NowMs();
  GangAttempt gang;
  gang.attempt = job.attempt + 1;
  gang.rendezvous = std::string(rendezvous);
  const int64_t per_node = job.devices / job.nodes;
  std::string reason = internal::Cat("attempt ", gang.attempt, " on worker", workers.size() > 1 ? "s " : " ");
  for (size_t i = 0; i < workers.size(); ++i) {
    absl::StrAppend(&reason, i > 0 ? ", " : "", workers[i]);
    if (workers.size() > 1) absl::StrAppend(&reason, " (rank ", i * per_node, ")");
  }
  {
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare("UPDATE jobs SET state='RUNNING', attempt=?2, reason=?3, "
                                      "updated_ms=?4 WHERE id=?1"));
    st.Bind(1, job.id).Bind(2, gang.attempt).Bind(3, reason).Bind(4, now);
    GCL_RETURN_IF_ERROR(st.Run());
  }
  {
    GCL_ASSIGN_OR_RETURN(
        Statement st,
        db_->Prepare("INSERT INTO attempts(job_id,attempt,worker_id,state,started_ms,rendezvous) "
                     "VALUES(?1,?2,?3,'RUNNING',?4,?5)"));
    st.Bind(1, job.id).Bind(2, gang.attempt).Bind(3, workers[0]).Bind(4, now).Bind(5, rendezvous);
    GCL_RETURN_IF_ERROR(st.Run());
  }
  for (size_t i = 0; i < workers.size(); ++i) {
    AttemptMember m;
    m.job_id = job.id;
    m.attempt = gang.attempt;
    m.node_index = static_cast<int32_t>(i);
    m.worker_id = workers[i];
    m.devices = per_node;
    // Per-device bookkeeping: the lowest indices the worker's RUNNING members do not hold.
    std::set<int64_t> held;
    {
      GCL_ASSIGN_OR_RETURN(Statement st,
                           db_->Prepare("SELECT device_ids FROM attempt_members WHERE "
                                        "worker_id=?1 AND state='RUNNING'"));
      st.Bind(1, workers[i]);
      while (true) {
        GCL_ASSIGN_OR_RETURN(bool row, st.Step());
        if (!row) break;
        for (const std::string& id : SplitIds(st.ColumnText(0))) held.insert(DeviceIndex(id));
      }
    }
    std::string joined;
    auto take = [&](int64_t d) {
      if (held.count(d) > 0) return;
      m.device_ids.push_back(internal::Cat("dev:", d));
      absl::StrAppend(&joined, joined.empty() ? "" : ",", m.device_ids.back());
    };
    if (device_order.empty() || device_order[i].empty()) {
      for (int64_t d = 0; static_cast<int64_t>(m.device_ids.size()) < per_node; ++d) take(d);
    } else {
      for (int64_t d : device_order[i]) {
        if (static_cast<int64_t>(m.device_ids.size()) == per_node) break;
        take(d);
      }
      if (static_cast<int64_t>(m.device_ids.size()) < per_node) {
        return absl::FailedPreconditionError(
            internal::Cat("worker ", workers[i], " has ", m.device_ids.size(), " of the ", per_node,
                          " devices job ", job_id, " may use free"));
      }
    }
    GCL_ASSIGN_OR_RETURN(
        Statement st,
        db_->Prepare("INSERT INTO attempt_members(job_id,attempt,node_index,worker_id,devices,"
                     "device_ids,state) VALUES(?1,?2,?3,?4,?5,?6,'RUNNING')"));
    st.Bind(1, job.id).Bind(2, gang.attempt).Bind(3, m.node_index).Bind(4, m.worker_id);
    st.Bind(5, m.devices).Bind(6, joined);
    GCL_RETURN_IF_ERROR(st.Run());
    gang.members.push_back(std::move(m));
  }
  JobEvent e;
  e.job_id = job.id;
  e.at_ms = now;
  e.kind = "state";
  e.from_state = std::string(ToString(job.state));
  e.to_state = std::string(ToString(JobState::kRunning));
  e.reason = reason;
  e.attempt = gang.attempt;
  e.payload_json = internal::Cat("{\"worker_id\":", JsonQuote(workers[0]));
  if (workers.size() > 1) {
    absl::StrAppend(&e.payload_json, ",\"workers\":[");
    for (size_t i = 0; i < workers.size(); ++i) {
      absl::StrAppend(&e.payload_json, i > 0 ? "," : "", JsonQuote(workers[i]));
    }
    absl::StrAppend(&e.payload_json, "],\"rendezvous\":", JsonQuote(rendezvous));
  }
  absl::StrAppend(&e.payload_json, "}");
  GCL_RETURN_IF_ERROR(AppendEventLocked(e).status());
  GCL_RETURN_IF_ERROR(tx.Commit());
  return gang;
}

absl::StatusOr<GangAttempt> Registry::GetGang(std::string_view job_id, int32_t attempt) {
  absl::MutexLock lock(&read_mu_);
  GangAttempt gang;
  gang.attempt = attempt;
  {
    GCL_ASSIGN_OR_RETURN(Statement st, reader_->Prepare("SELECT rendezvous FROM attempts WHERE "
                                                        "job_id=?1 AND attempt=?2"));
    st.Bind(1, job_id).Bind(2, attempt);
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) return NotFound("attempt", internal::Cat(job_id, "/", attempt));
    gang.rendezvous = st.ColumnText(0);
  }
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      reader_->Prepare(internal::Cat("SELECT ", kMemberCols,
                                     " FROM attempt_members WHERE job_id=?1 AND attempt=?2 "
                                     "ORDER BY node_index")));
  st.Bind(1, job_id).Bind(2, attempt);
  GCL_ASSIGN_OR_RETURN(gang.members, CollectRows(st, ReadMember));
  return gang;
}

absl::StatusOr<int> Registry::CloseMembersLocked(std::string_view job_id, int32_t attempt,
                                                 std::string_view worker_id,
                                                 const AttemptOutcome& outcome, int64_t now) {
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("UPDATE attempt_members SET state=?4, ended_ms=?5, exit_code=?6, reason=?7 "
                   "WHERE job_id=?1 AND attempt=?2 AND (?3='' OR worker_id=?3) AND "
                   "state='RUNNING'"));
  st.Bind(1, job_id).Bind(2, attempt).Bind(3, worker_id).Bind(4, ToString(outcome.state));
  st.Bind(5, now);
  if (outcome.exit_code.has_value()) {
    st.Bind(6, *outcome.exit_code);
  } else {
    st.BindNull(6);
  }
  st.Bind(7, outcome.reason);
  GCL_RETURN_IF_ERROR(st.Run());
  return static_cast<int>(db_->Changes());
}

absl::StatusOr<JobRecord> Registry::FinishAttemptLocked(const JobRecord& job,
                                                        const AttemptOutcome& outcome,
                                                        int64_t now) {
  GCL_RETURN_IF_ERROR(CloseAttemptLocked(job.id, job.attempt, outcome, now));
  JobState to = JobState::kFailed;
  int32_t failures = job.failures;
  std::string reason = outcome.reason;
  switch (outcome.state) {
    case AttemptState::kSucceeded:
      to = JobState::kSucceeded;
      break;
    case AttemptState::kCancelled:
      to = JobState::kCancelled;
      break;
    case AttemptState::kPreempted:
      to = JobState::kQueued;
      reason = internal::Cat("preempted in attempt ", job.attempt,
                             outcome.reason.empty() ? "" : ": ", outcome.reason);
      break;
    case AttemptState::kFailed:
    case AttemptState::kLost:
      ++failures;
      if (failures < job.max_attempts) {
        to = JobState::kQueued;
        reason = internal::Cat("retrying: attempt ", job.attempt, " ",
                               outcome.state == AttemptState::kLost ? "lost" : "failed",
                               outcome.reason.empty() ? "" : ": ", outcome.reason, " (", failures,
                               "/", job.max_attempts, " failures)");
      } else {
        to = JobState::kFailed;
        reason = internal::Cat("attempt ", job.attempt, " ",
                               outcome.state == AttemptState::kLost ? "lost" : "failed",
                               outcome.reason.empty() ? "" : ": ", outcome.reason,
                               "; max_attempts (", job.max_attempts, ") reached");
      }
      break;
    case AttemptState::kRunning:
      return absl::InvalidArgumentError("an attempt cannot finish as RUNNING");
  }
  if (job.state == JobState::kCancelling && to != JobState::kSucceeded) {
    to = JobState::kCancelled;
    if (reason.empty()) reason = "cancelled";
  }
  GCL_RETURN_IF_ERROR(CheckTransition(job.state, to));
  GCL_RETURN_IF_ERROR(MoveJobLocked(job, to, reason, failures, now));
  JobRecord after = job;
  after.state = to;
  after.reason = reason;
  after.failures = failures;
  after.updated_ms = now;
  if (to == JobState::kQueued) after.queued_ms = now;
  return after;
}

namespace {

// A worker's report of an attempt counts only while that attempt is the
// job's current one and still running (or being cancelled).
absl::Status CheckReportIsCurrent(const JobRecord& job, int32_t attempt) {
  if (job.attempt == attempt &&
      (job.state == JobState::kRunning || job.state == JobState::kCancelling)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      internal::Cat("stale report: job ", job.id, " is ", ToString(job.state), " at attempt ",
                    job.attempt, ", report is for attempt ", attempt));
}

}  // namespace

absl::StatusOr<JobRecord> Registry::FinishAttempt(std::string_view job_id, int32_t attempt,
                                                  const AttemptOutcome& outcome) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(job_id));
  GCL_RETURN_IF_ERROR(CheckReportIsCurrent(job, attempt));
  const int64_t now = NowMs();
  GCL_ASSIGN_OR_RETURN(JobRecord after, FinishAttemptLocked(job, outcome, now));
  GCL_RETURN_IF_ERROR(CloseMembersLocked(job.id, attempt, "", outcome, now).status());
  GCL_RETURN_IF_ERROR(tx.Commit());
  return after;
}

absl::StatusOr<JobRecord> Registry::FinishMember(std::string_view job_id, int32_t attempt,
                                                 std::string_view worker_id,
                                                 const AttemptOutcome& outcome) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id must not be empty");
  if (outcome.state == AttemptState::kRunning) {
    return absl::InvalidArgumentError("an attempt cannot finish as RUNNING");
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(job_id));
  GCL_RETURN_IF_ERROR(CheckReportIsCurrent(job, attempt));
  const int64_t now = NowMs();
  GCL_ASSIGN_OR_RETURN(int closed, CloseMembersLocked(job.id, attempt, worker_id, outcome, now));
  if (closed == 0) {
    return absl::FailedPreconditionError(internal::Cat(
        "stale report: worker ", worker_id, " runs no member of attempt ", attempt, " of job ",
        job_id));
  }
  if (outcome.state == AttemptState::kSucceeded) {
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare("SELECT COUNT(*) FROM attempt_members WHERE job_id=?1 AND "
                                      "attempt=?2 AND state='RUNNING'"));
    st.Bind(1, job.id).Bind(2, attempt);
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (row && st.ColumnInt64(0) > 0) {
      GCL_RETURN_IF_ERROR(st.Run());
      GCL_RETURN_IF_ERROR(tx.Commit());
      return job;  // the gang succeeds with its last member
    }
  }
  AttemptOutcome whole = outcome;
  if (job.nodes > 1 && outcome.state != AttemptState::kSucceeded) {
    whole.reason = internal::Cat("on worker ", worker_id, ": ", outcome.reason);
  }
  GCL_ASSIGN_OR_RETURN(JobRecord after, FinishAttemptLocked(job, whole, now));
  GCL_RETURN_IF_ERROR(tx.Commit());
  return after;
}

absl::Status Registry::CloseMember(std::string_view job_id, int32_t attempt,
                                   std::string_view worker_id, const AttemptOutcome& outcome) {
  if (worker_id.empty()) return absl::InvalidArgumentError("worker_id must not be empty");
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_RETURN_IF_ERROR(CloseMembersLocked(job_id, attempt, worker_id, outcome, NowMs()).status());
  return tx.Commit();
}

absl::StatusOr<std::vector<Registry::OpenMember>> Registry::OpenMembersLocked(
    std::string_view worker_id) {
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("SELECT m.job_id, m.attempt, j.nodes, (j.attempt=m.attempt AND j.state IN "
                   "('RUNNING','CANCELLING')) FROM attempt_members m JOIN jobs j ON "
                   "j.id=m.job_id WHERE m.worker_id=?1 AND m.state='RUNNING' "
                   "ORDER BY j.submit_seq"));
  st.Bind(1, worker_id);
  std::vector<OpenMember> open;
  while (true) {
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    open.push_back({st.ColumnText(0), static_cast<int32_t>(st.ColumnInt64(1)), st.ColumnInt64(2),
                    st.ColumnInt64(3) != 0});
  }
  return open;
}

absl::StatusOr<std::vector<std::string>> Registry::ReconcileWorker(
    std::string_view worker_id, const std::vector<std::string>& running_job_ids) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(std::vector<OpenMember> open, OpenMembersLocked(worker_id));
  const int64_t now = NowMs();
  std::vector<std::string> requeued;
  for (const OpenMember& o : open) {
    if (std::find(running_job_ids.begin(), running_job_ids.end(), o.job_id) !=
        running_job_ids.end()) {
      continue;
    }
    if (o.current && o.nodes <= 1) continue;  // sent again at its next heartbeat
    AttemptOutcome gone;
    gone.state = o.current ? AttemptState::kLost : AttemptState::kCancelled;
    gone.reason = internal::Cat("worker ", worker_id, " restarted without it");
    GCL_RETURN_IF_ERROR(CloseMembersLocked(o.job_id, o.attempt, worker_id, gone, now).status());
    if (!o.current) continue;
    GCL_RETURN_IF_ERROR(RequeueLocked(o.job_id, gone.reason, now).status());
    requeued.push_back(o.job_id);
  }
  GCL_RETURN_IF_ERROR(tx.Commit());
  return requeued;
}

absl::StatusOr<JobRecord> Registry::RequeueLocked(std::string_view job_id, std::string_view reason,
                                                  int64_t now) {
  GCL_ASSIGN_OR_RETURN(JobRecord job, GetJobLocked(job_id));
  if (job.state == JobState::kRunning || job.state == JobState::kCancelling) {
    AttemptOutcome lost;
    lost.state = AttemptState::kLost;
    lost.reason = std::string(reason);
    return FinishAttemptLocked(job, lost, now);
  }
  if (job.state == JobState::kScheduled) {
    std::string why = reason.empty() ? std::string(kDefaultQueuedReason) : std::string(reason);
    GCL_RETURN_IF_ERROR(MoveJobLocked(job, JobState::kQueued, why, job.failures, now));
    job.state = JobState::kQueued;
    job.reason = why;
    job.updated_ms = job.queued_ms = now;
    return job;
  }
  return absl::FailedPreconditionError(
      internal::Cat("cannot requeue job ", job_id, " in state ", ToString(job.state)));
}

absl::StatusOr<JobRecord> Registry::Requeue(std::string_view job_id, std::string_view reason) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  const int64_t now = NowMs();
  GCL_ASSIGN_OR_RETURN(JobRecord before, GetJobLocked(job_id));
  GCL_ASSIGN_OR_RETURN(JobRecord after, RequeueLocked(job_id, reason, now));
  if (before.attempt > 0) {
    AttemptOutcome lost;
    lost.state = AttemptState::kLost;
    lost.reason = std::string(reason);
    GCL_RETURN_IF_ERROR(CloseMembersLocked(job_id, before.attempt, "", lost, now).status());
  }
  GCL_RETURN_IF_ERROR(tx.Commit());
  return after;
}

absl::StatusOr<std::vector<AttemptRecord>> Registry::ListAttempts(std::string_view job_id) {
  absl::MutexLock lock(&read_mu_);
  GCL_RETURN_IF_ERROR(ReadJobById(*reader_, job_id).status());
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      reader_->Prepare("SELECT job_id,attempt,worker_id,state,started_ms,ended_ms,exit_code,"
                       "reason FROM attempts WHERE job_id=?1 ORDER BY attempt"));
  st.Bind(1, job_id);
  GCL_ASSIGN_OR_RETURN(std::vector<AttemptRecord> out, CollectRows(st, [](const Statement& st) {
                         AttemptRecord a;
                         a.job_id = st.ColumnText(0);
                         a.attempt = static_cast<int32_t>(st.ColumnInt64(1));
                         a.worker_id = st.ColumnText(2);
                         a.state =
                             ParseAttemptState(st.ColumnText(3)).value_or(AttemptState::kRunning);
                         a.started_ms = st.ColumnInt64(4);
                         if (!st.IsNull(5)) a.ended_ms = st.ColumnInt64(5);
                         if (!st.IsNull(6)) a.exit_code = static_cast<int32_t>(st.ColumnInt64(6));
                         a.reason = st.ColumnText(7);
                         return a;
                       }));
  return out;
}

absl::StatusOr<std::vector<AttemptRecord>> Registry::ListRunningAttempts() {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("SELECT a.job_id,a.attempt,m.worker_id,a.started_ms,a.reason FROM attempts a "
                   "JOIN jobs j ON j.id=a.job_id AND j.attempt=a.attempt JOIN attempt_members m "
                   "ON m.job_id=a.job_id AND m.attempt=a.attempt WHERE a.state='RUNNING' AND "
                   "m.state='RUNNING' ORDER BY m.worker_id, j.submit_seq"));
  GCL_ASSIGN_OR_RETURN(std::vector<AttemptRecord> out, CollectRows(st, [](const Statement& st) {
                         AttemptRecord a;
                         a.job_id = st.ColumnText(0);
                         a.attempt = static_cast<int32_t>(st.ColumnInt64(1));
                         a.worker_id = st.ColumnText(2);
                         a.state = AttemptState::kRunning;
                         a.started_ms = st.ColumnInt64(3);
                         a.reason = st.ColumnText(4);
                         return a;
                       }));
  return out;
}

absl::StatusOr<std::vector<JobRecord>> Registry::ListQueued(int limit) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare(internal::Cat("SELECT ", kJobCols,
                                                  " FROM jobs WHERE state='QUEUED' "
                                                  "ORDER BY priority DESC, submit_seq LIMIT ?1")));
  st.Bind(1, static_cast<int64_t>(limit <= 0 ? -1 : limit));
  GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> out, CollectRows(st, ReadJob));
  return out;
}

absl::StatusOr<std::vector<QueueEntry>> Registry::ListQueue() {
  absl::MutexLock lock(&scan_mu_);
  GCL_ASSIGN_OR_RETURN(Statement st,
                       scanner_->Prepare("SELECT id,priority,submit_seq,devices,reason,kind,nodes FROM jobs "
                                        "WHERE state='QUEUED' ORDER BY priority DESC, submit_seq"));
  GCL_ASSIGN_OR_RETURN(std::vector<QueueEntry> out, CollectRows(st, [](const Statement& st) {
                         QueueEntry q;
                         q.id = st.ColumnText(0);
                         q.priority = static_cast<int32_t>(st.ColumnInt64(1));
                         q.submit_seq = st.ColumnInt64(2);
                         q.devices = st.ColumnInt64(3);
                         q.reason = st.ColumnText(4);
                         q.kind = st.ColumnText(5);
                         q.nodes = st.ColumnInt64(6);
                         return q;
                       }));
  return out;
}

absl::StatusOr<int64_t> Registry::QueuePosition(std::string_view job_id) {
  absl::MutexLock lock(&read_mu_);
  GCL_ASSIGN_OR_RETURN(JobRecord job, ReadJobById(*reader_, job_id));
  if (job.state != JobState::kQueued) {
    return absl::FailedPreconditionError(
        internal::Cat("job ", job_id, " is ", ToString(job.state), ", not QUEUED"));
  }
  // Two index ranges of jobs_by_queue (an OR of them would scan the queue).
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      reader_->Prepare("SELECT (SELECT COUNT(*) FROM jobs WHERE state='QUEUED' AND priority>?1) + "
                       "(SELECT COUNT(*) FROM jobs WHERE state='QUEUED' AND priority=?1 AND "
                       "submit_seq<?2)"));
  st.Bind(1, job.priority).Bind(2, job.submit_seq);
  GCL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return absl::InternalError("COUNT returned no row");
  return st.ColumnInt64(0);
}

absl::StatusOr<std::vector<int64_t>> Registry::QueuePositions(const std::vector<JobRecord>& jobs) {
  std::vector<int64_t> out(jobs.size(), -1);
  std::map<std::pair<int64_t, int64_t>, size_t> wanted;  // (priority, submit_seq) -> index
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (jobs[i].state == JobState::kQueued) wanted[{jobs[i].priority, jobs[i].submit_seq}] = i;
  }
  if (wanted.empty()) return out;
  absl::MutexLock lock(&read_mu_);
  // Covering scan of jobs_by_queue in queue order, stopped at the last one wanted.
  GCL_ASSIGN_OR_RETURN(Statement st,
                       reader_->Prepare("SELECT priority,submit_seq FROM jobs WHERE state='QUEUED' "
                                        "ORDER BY priority DESC, submit_seq"));
  size_t found = 0;
  for (int64_t ahead = 0; found < wanted.size(); ++ahead) {
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    auto it = wanted.find({st.ColumnInt64(0), st.ColumnInt64(1)});
    if (it == wanted.end()) continue;
    out[it->second] = ahead;
    ++found;
  }
  return out;
}

absl::StatusOr<std::vector<JobRecord>> Registry::RecoverActive() {
  absl::MutexLock lock(&mu_);
  return QueryJobsLocked(
      internal::Cat("SELECT ", kJobCols,
                    " FROM jobs WHERE state IN "
                    "('QUEUED','SCHEDULED','RUNNING','CANCELLING') ORDER BY submit_seq"));
}

absl::StatusOr<std::vector<OpenAttempt>> Registry::OpenAttemptsOn(std::string_view worker_id) {
  absl::MutexLock lock(&read_mu_);
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      reader_->Prepare("SELECT j.id,j.state,m.attempt,m.devices,(j.attempt=m.attempt AND j.state "
                       "IN ('RUNNING','CANCELLING')),m.node_index,a.rendezvous FROM "
                       "attempt_members m JOIN jobs j ON j.id=m.job_id JOIN attempts a ON "
                       "a.job_id=m.job_id AND a.attempt=m.attempt WHERE m.worker_id=?1 AND "
                       "m.state='RUNNING' ORDER BY j.submit_seq, m.attempt"));
  st.Bind(1, worker_id);
  GCL_ASSIGN_OR_RETURN(std::vector<OpenAttempt> out, CollectRows(st, [](const Statement& st) {
                         OpenAttempt a;
                         a.job_id = st.ColumnText(0);
                         a.state = ParseJobState(st.ColumnText(1)).value_or(JobState::kRunning);
                         a.attempt = static_cast<int32_t>(st.ColumnInt64(2));
                         a.devices = st.ColumnInt64(3);
                         a.current = st.ColumnInt64(4) != 0;
                         a.node_index = static_cast<int32_t>(st.ColumnInt64(5));
                         a.rendezvous = st.ColumnText(6);
                         return a;
                       }));
  return out;
}

absl::StatusOr<std::vector<DeviceUse>> Registry::DevicesInUse() {
  absl::MutexLock lock(&scan_mu_);
  GCL_ASSIGN_OR_RETURN(Statement st,
                       scanner_->Prepare("SELECT worker_id, devices, device_ids FROM attempt_members "
                                         "WHERE state='RUNNING' ORDER BY worker_id"));
  std::vector<DeviceUse> out;
  while (true) {
    GCL_ASSIGN_OR_RETURN(bool row, st.Step());
    if (!row) break;
    if (out.empty() || out.back().worker_id != st.ColumnText(0)) out.push_back({st.ColumnText(0), 0, {}});
    DeviceUse& use = out.back();
    use.devices += st.ColumnInt64(1);
    for (const std::string& id : SplitIds(st.ColumnText(2))) {
      if (int64_t d = DeviceIndex(id); d >= 0) use.indices.push_back(d);
    }
  }
  for (DeviceUse& use : out) std::sort(use.indices.begin(), use.indices.end());
  return out;
}

// ---------------------------------------------------------------- workers

namespace {
WorkerRecord ReadWorker(const Statement& st) {
  WorkerRecord w;
  w.id = st.ColumnText(0);
  w.address = st.ColumnText(1);
  w.devices = st.ColumnInt64(2);
  w.memory_bytes = st.ColumnInt64(3);
  w.labels_json = st.ColumnText(4);
  w.state = st.ColumnText(5) == "LOST" ? WorkerState::kLost : WorkerState::kAlive;
  w.registered_ms = st.ColumnInt64(6);
  w.last_seen_ms = st.ColumnInt64(7);
  w.lease_expiry_ms = st.ColumnInt64(8);
  w.rendezvous_port_min = static_cast<int32_t>(st.ColumnInt64(9));
  w.rendezvous_port_max = static_cast<int32_t>(st.ColumnInt64(10));
  return w;
}
constexpr char kWorkerCols[] =
    "id,address,devices,memory_bytes,labels_json,state,registered_ms,last_seen_ms,lease_expiry_ms,"
    "rendezvous_port_min,rendezvous_port_max";
}  // namespace

absl::Status Registry::UpsertWorker(const WorkerRecord& w) {
  if (w.id.empty()) return absl::InvalidArgumentError("worker id must not be empty");
  if (w.devices < 0) return absl::InvalidArgumentError("worker devices must be >= 0");
  if (w.rendezvous_port_min < 1 || w.rendezvous_port_max > 65535 ||
      w.rendezvous_port_min > w.rendezvous_port_max) {
    return absl::InvalidArgumentError(internal::Cat("rendezvous ports ", w.rendezvous_port_min, "-",
                                                    w.rendezvous_port_max, ": not a port range"));
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  const int64_t now = NowMs();
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare(
          "INSERT INTO workers(id,address,devices,memory_bytes,labels_json,state,registered_ms,"
          "last_seen_ms,lease_expiry_ms,rendezvous_port_min,rendezvous_port_max) "
          "VALUES(?1,?2,?3,?4,?5,'ALIVE',?6,?6,?7,?8,?9) "
          "ON CONFLICT(id) DO UPDATE SET address=excluded.address, devices=excluded.devices, "
          "memory_bytes=excluded.memory_bytes, labels_json=excluded.labels_json, "
          "state='ALIVE', last_seen_ms=excluded.last_seen_ms, "
          "lease_expiry_ms=excluded.lease_expiry_ms, "
          "rendezvous_port_min=excluded.rendezvous_port_min, "
          "rendezvous_port_max=excluded.rendezvous_port_max"));
  st.Bind(1, w.id).Bind(2, w.address).Bind(3, w.devices).Bind(4, w.memory_bytes);
  st.Bind(5, w.labels_json.empty() ? "{}" : w.labels_json).Bind(6, now).Bind(7, w.lease_expiry_ms);
  st.Bind(8, w.rendezvous_port_min).Bind(9, w.rendezvous_port_max);
  GCL_RETURN_IF_ERROR(st.Run());
  return tx.Commit();
}

absl::Status Registry::TouchWorker(std::string_view worker_id, int64_t lease_expiry_ms) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare("UPDATE workers SET last_seen_ms=?2, lease_expiry_ms=?3 "
                                    "WHERE id=?1 AND state='ALIVE'"));
  st.Bind(1, worker_id).Bind(2, NowMs()).Bind(3, lease_expiry_ms);
  GCL_RETURN_IF_ERROR(st.Run());
  if (db_->Changes() == 1) return tx.Commit();
  GCL_ASSIGN_OR_RETURN(Statement q, db_->Prepare("SELECT state FROM workers WHERE id=?1"));
  q.Bind(1, worker_id);
  GCL_ASSIGN_OR_RETURN(bool row, q.Step());
  if (!row) return NotFound("worker", worker_id);
  return absl::FailedPreconditionError(
      internal::Cat("worker ", worker_id, " is LOST; re-register"));
}

absl::Status Registry::RenewLeases(const std::vector<LeaseRenewal>& renewals) {
  if (renewals.empty()) return absl::OkStatus();
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  for (const LeaseRenewal& r : renewals) {
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare("UPDATE workers SET last_seen_ms=?2, lease_expiry_ms=?3 "
                                      "WHERE id=?1 AND state='ALIVE'"));
    st.Bind(1, r.worker_id).Bind(2, r.last_seen_ms).Bind(3, r.lease_expiry_ms);
    GCL_RETURN_IF_ERROR(st.Run());
  }
  return tx.Commit();
}

absl::StatusOr<WorkerRecord> Registry::GetWorker(std::string_view worker_id) {
  absl::MutexLock lock(&read_mu_);
  GCL_ASSIGN_OR_RETURN(Statement st, reader_->Prepare(internal::Cat("SELECT ", kWorkerCols,
                                                                    " FROM workers WHERE id=?1")));
  st.Bind(1, worker_id);
  GCL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFound("worker", worker_id);
  return ReadWorker(st);
}

absl::StatusOr<std::vector<WorkerRecord>> Registry::ListWorkers() {
  absl::MutexLock lock(&scan_mu_);
  GCL_ASSIGN_OR_RETURN(Statement st, scanner_->Prepare(internal::Cat("SELECT ", kWorkerCols,
                                                                    " FROM workers ORDER BY id")));
  GCL_ASSIGN_OR_RETURN(std::vector<WorkerRecord> out, CollectRows(st, ReadWorker));
  return out;
}

absl::StatusOr<std::vector<std::string>> Registry::MarkWorkerLost(std::string_view worker_id,
                                                                  std::string_view reason) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  const int64_t now = NowMs();
  {
    GCL_ASSIGN_OR_RETURN(Statement st, db_->Prepare("UPDATE workers SET state='LOST' WHERE id=?1"));
    st.Bind(1, worker_id);
    GCL_RETURN_IF_ERROR(st.Run());
    if (db_->Changes() != 1) return NotFound("worker", worker_id);
  }
  // Every member the worker may still run: current ones requeue their job,
  // draining ones (their attempt already ended) only free their devices.
  GCL_ASSIGN_OR_RETURN(std::vector<OpenMember> open, OpenMembersLocked(worker_id));
  std::vector<std::string> jobs;
  for (const OpenMember& o : open) {
    if (o.current) jobs.push_back(o.job_id);
  }
  const std::string why =
      reason.empty() ? internal::Cat("worker ", worker_id, " lost") : std::string(reason);
  AttemptOutcome lost;
  lost.state = AttemptState::kLost;
  lost.reason = why;
  for (const OpenMember& o : open) {
    GCL_RETURN_IF_ERROR(CloseMembersLocked(o.job_id, o.attempt, worker_id, lost, now).status());
  }
  for (const std::string& id : jobs) GCL_RETURN_IF_ERROR(RequeueLocked(id, why, now).status());
  GCL_RETURN_IF_ERROR(tx.Commit());
  return jobs;
}

// ---------------------------------------------------------------- checkpoints

absl::StatusOr<CheckpointRecord> Registry::AddCheckpoint(const CheckpointRecord& in) {
  if (!IsSha256Hex(in.sha256)) {
    return absl::InvalidArgumentError(
        internal::Cat("sha256 must be 64 lowercase hex, got '", in.sha256, "'"));
  }
  if (in.bytes < 0 || in.step < 0) return absl::InvalidArgumentError("bytes and step must be >= 0");
  if (in.path.empty()) return absl::InvalidArgumentError("checkpoint path must not be empty");
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_RETURN_IF_ERROR(GetJobLocked(in.job_id).status());
  CheckpointRecord c = in;
  c.created_ms = NowMs();
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare("INSERT INTO checkpoints(job_id,attempt,step,path,sha256,bytes,"
                                    "metric_name,metric_value,state,parent_checkpoint,created_ms) "
                                    "VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11)"));
  st.Bind(1, c.job_id).Bind(2, c.attempt).Bind(3, c.step).Bind(4, c.path).Bind(5, c.sha256);
  st.Bind(6, c.bytes).Bind(7, c.metric_name);
  if (c.metric_value.has_value() && std::isfinite(*c.metric_value)) {
    st.Bind(8, *c.metric_value);
  } else {
    st.BindNull(8);
    c.metric_value.reset();
  }
  st.Bind(9, ToString(c.state));
  if (c.parent_checkpoint.has_value()) {
    st.Bind(10, *c.parent_checkpoint);
  } else {
    st.BindNull(10);
  }
  st.Bind(11, c.created_ms);
  GCL_RETURN_IF_ERROR(st.Run());
  c.id = db_->LastInsertRowId();
  JobEvent e;
  e.job_id = c.job_id;
  e.at_ms = c.created_ms;
  e.kind = "checkpoint";
  e.attempt = c.attempt;
  // The field names of gcl.v1.Checkpoint, so the event replays as one.
  e.payload_json = internal::Cat("{\"id\":\"", CheckpointId(c.id), "\",\"attempt\":", c.attempt,
                                 ",\"step\":", c.step, ",\"size_bytes\":", c.bytes,
                                 ",\"sha256\":\"", c.sha256, "\",\"created_ms\":", c.created_ms, "}");
  GCL_RETURN_IF_ERROR(AppendEventLocked(e).status());
  GCL_RETURN_IF_ERROR(tx.Commit());
  return c;
}

std::string CheckpointId(int64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "c-%012llx", static_cast<unsigned long long>(id));
  return buf;
}

absl::StatusOr<int64_t> ParseCheckpointId(std::string_view text) {
  if (text.size() != 14 || text.substr(0, 2) != "c-") {
    return absl::InvalidArgumentError(
        internal::Cat("checkpoint id '", text, "': expected c- and 12 hex digits"));
  }
  int64_t id = 0;
  for (char ch : text.substr(2)) {
    int v = (ch >= '0' && ch <= '9') ? ch - '0' : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10 : -1;
    if (v < 0) {
      return absl::InvalidArgumentError(
          internal::Cat("checkpoint id '", text, "': expected c- and 12 hex digits"));
    }
    id = id * 16 + v;
  }
  return id;
}

absl::StatusOr<CheckpointRecord> Registry::GetCheckpoint(int64_t id) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Statement st, db_->Prepare(internal::Cat("SELECT ", kCkptCols,
                                                                " FROM checkpoints WHERE id=?1")));
  st.Bind(1, id);
  GCL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row) return NotFound("checkpoint", internal::Cat(id));
  return ReadCheckpoint(st);
}

absl::StatusOr<std::vector<CheckpointRecord>> Registry::ListCheckpoints(std::string_view job_id) {
  absl::MutexLock lock(&mu_);
  GCL_RETURN_IF_ERROR(GetJobLocked(job_id).status());
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare(internal::Cat("SELECT ", kCkptCols,
                                                  " FROM checkpoints WHERE job_id=?1 "
                                                  "AND state<>'DELETED' ORDER BY step, id")));
  st.Bind(1, job_id);
  GCL_ASSIGN_OR_RETURN(std::vector<CheckpointRecord> out, CollectRows(st, ReadCheckpoint));
  return out;
}

absl::StatusOr<CheckpointRecord> Registry::NewestCheckpoint(std::string_view job_id) {
  absl::MutexLock lock(&read_mu_);
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      reader_->Prepare(internal::Cat("SELECT ", kCkptCols,
                                     " FROM checkpoints WHERE job_id=?1 "
                                     "AND state='COMPLETED' ORDER BY step DESC, id DESC LIMIT 1")));
  st.Bind(1, job_id);
  GCL_ASSIGN_OR_RETURN(bool row, st.Step());
  if (!row)
    return absl::NotFoundError(internal::Cat("job '", job_id, "' has no completed checkpoint"));
  return ReadCheckpoint(st);
}

absl::StatusOr<std::vector<CheckpointRecord>> Registry::ApplyRetention(std::string_view job_id,
                                                                       int keep_newest,
                                                                       bool higher_is_better) {
  keep_newest = std::max(keep_newest, 1);  // never the only good one
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_RETURN_IF_ERROR(GetJobLocked(job_id).status());
  std::vector<CheckpointRecord> all;
  {
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare(internal::Cat("SELECT ", kCkptCols,
                                                    " FROM checkpoints WHERE "
                                                    "job_id=?1 AND state IN ('COMPLETED','ERROR') "
                                                    "ORDER BY step DESC, id DESC")));
    st.Bind(1, job_id);
    while (true) {
      GCL_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      all.push_back(ReadCheckpoint(st));
    }
  }
  // Best by metric among COMPLETED (ties: the newest, which comes first).
  int best = -1;
  for (int i = 0; i < static_cast<int>(all.size()); ++i) {
    const CheckpointRecord& c = all[i];
    if (c.state != CheckpointState::kCompleted || !c.metric_value.has_value()) continue;
    if (best < 0) {
      best = i;
      continue;
    }
    const double v = *c.metric_value, b = *all[best].metric_value;
    if (higher_is_better ? v > b : v < b) best = i;
  }
  std::vector<CheckpointRecord> released;
  int completed_seen = 0;
  const int64_t now = NowMs();
  for (int i = 0; i < static_cast<int>(all.size()); ++i) {
    CheckpointRecord& c = all[i];
    if (c.state == CheckpointState::kCompleted) {
      ++completed_seen;
      if (completed_seen <= keep_newest || i == best) continue;
    }
    GCL_ASSIGN_OR_RETURN(Statement st,
                         db_->Prepare("UPDATE checkpoints SET state='DELETED' WHERE id=?1"));
    st.Bind(1, c.id);
    GCL_RETURN_IF_ERROR(st.Run());
    c.state = CheckpointState::kDeleted;
    released.push_back(c);
  }
  if (!released.empty()) {
    JobEvent e;
    e.job_id = std::string(job_id);
    e.at_ms = now;
    e.kind = "retention";
    e.reason = internal::Cat("released ", released.size(), " checkpoint(s); keep newest ",
                             keep_newest, " and the best");
    GCL_RETURN_IF_ERROR(AppendEventLocked(e).status());
  }
  GCL_RETURN_IF_ERROR(tx.Commit());
  return released;
}

// ---------------------------------------------------------------- results

absl::Status Registry::AddResults(const std::vector<ResultRecord>& results) {
  for (const ResultRecord& r : results) {
    if (!std::isfinite(r.dice)) {
      return absl::InvalidArgumentError(
          internal::Cat("dice of case ", r.case_id, " class ", r.class_name,
                        " is not finite (apply the empty-mask rule first)"));
    }
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  for (const ResultRecord& r : results) {
    GCL_RETURN_IF_ERROR(GetJobLocked(r.job_id).status());
    GCL_ASSIGN_OR_RETURN(
        Statement st,
        db_->Prepare("INSERT OR REPLACE INTO results(job_id,variant,m_lab,repeat,case_id,"
                     "class_name,dice,hd95,n_ref,n_pred) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"));
    st.Bind(1, r.job_id).Bind(2, r.variant).Bind(3, r.m_lab).Bind(4, r.repeat).Bind(5, r.case_id);
    st.Bind(6, r.class_name).Bind(7, r.dice);
    if (r.hd95.has_value() && std::isfinite(*r.hd95)) {
      st.Bind(8, *r.hd95);
    } else {
      st.BindNull(8);
    }
    st.Bind(9, r.n_ref).Bind(10, r.n_pred);
    GCL_RETURN_IF_ERROR(st.Run());
  }
  return tx.Commit();
}

absl::StatusOr<std::vector<ResultRecord>> Registry::ListResults(std::string_view job_id_or_parent) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("SELECT job_id,variant,m_lab,repeat,case_id,class_name,dice,hd95,n_ref,"
                   "n_pred FROM results WHERE job_id=?1 OR job_id IN (SELECT id FROM jobs "
                   "WHERE parent_id=?1) ORDER BY variant,m_lab,repeat,case_id,class_name"));
  st.Bind(1, job_id_or_parent);
  GCL_ASSIGN_OR_RETURN(std::vector<ResultRecord> out, CollectRows(st, [](const Statement& st) {
                         ResultRecord r;
                         r.job_id = st.ColumnText(0);
                         r.variant = st.ColumnText(1);
                         r.m_lab = static_cast<int32_t>(st.ColumnInt64(2));
                         r.repeat = static_cast<int32_t>(st.ColumnInt64(3));
                         r.case_id = st.ColumnText(4);
                         r.class_name = st.ColumnText(5);
                         r.dice = st.ColumnDouble(6);
                         if (!st.IsNull(7)) r.hd95 = st.ColumnDouble(7);
                         r.n_ref = st.ColumnInt64(8);
                         r.n_pred = st.ColumnInt64(9);
                         return r;
                       }));
  return out;
}

absl::StatusOr<std::vector<ResultSummary>> Registry::SummarizeResults(
    std::string_view job_id_or_parent) {
  // Per repeat: the mean over cases, in SQL. Over repeats: mean and sample
  // std, in C++ (SQLite has no STDEV).
  struct Acc {
    std::vector<double> dice, hd95;
    int64_t cases = 0;
  };
  std::map<std::tuple<std::string, int32_t, std::string>, Acc> groups;
  {
    absl::MutexLock lock(&mu_);
    GCL_ASSIGN_OR_RETURN(
        Statement st,
        db_->Prepare("SELECT variant,m_lab,class_name,repeat,AVG(dice),COUNT(*),AVG(hd95) "
                     "FROM results WHERE job_id=?1 OR job_id IN (SELECT id FROM jobs "
                     "WHERE parent_id=?1) GROUP BY variant,m_lab,class_name,repeat"));
    st.Bind(1, job_id_or_parent);
    while (true) {
      GCL_ASSIGN_OR_RETURN(bool row, st.Step());
      if (!row) break;
      Acc& a =
          groups[{st.ColumnText(0), static_cast<int32_t>(st.ColumnInt64(1)), st.ColumnText(2)}];
      a.dice.push_back(st.ColumnDouble(4));
      a.cases += st.ColumnInt64(5);
      if (!st.IsNull(6)) a.hd95.push_back(st.ColumnDouble(6));
    }
  }
  std::vector<ResultSummary> out;
  for (const auto& [key, a] : groups) {
    ResultSummary s;
    s.variant = std::get<0>(key);
    s.m_lab = std::get<1>(key);
    s.class_name = std::get<2>(key);
    s.repeats = static_cast<int32_t>(a.dice.size());
    s.cases = a.cases;
    std::tie(s.dice_mean, s.dice_std) = MeanStd(a.dice);
    if (!a.hd95.empty()) {
      auto [m, sd] = MeanStd(a.hd95);
      s.hd95_mean = m;
      s.hd95_std = sd;
    }
    out.push_back(std::move(s));
  }
  return out;
}

absl::StatusOr<std::vector<JobRecord>> Registry::JobsWithResults() {
  absl::MutexLock lock(&mu_);
  return QueryJobsLocked(internal::Cat(
      "SELECT ", kJobCols,
      " FROM jobs WHERE id IN (SELECT COALESCE(p.parent_id, p.id) FROM jobs p WHERE p.id IN "
      "(SELECT DISTINCT job_id FROM results)) ORDER BY created_ms DESC, id DESC"));
}

absl::Status Registry::PutMetricSummary(std::string_view job_id, std::string_view name,
                                        std::string_view labels_json, double value) {
  if (name.empty()) return absl::InvalidArgumentError("metric name must not be empty");
  if (!std::isfinite(value))
    return absl::InvalidArgumentError(internal::Cat("metric ", name, " is not finite"));
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_RETURN_IF_ERROR(GetJobLocked(job_id).status());
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("INSERT INTO metrics_summaries(job_id,name,labels_json,value,updated_ms) "
                   "VALUES(?1,?2,?3,?4,?5) ON CONFLICT(job_id,name,labels_json) DO UPDATE "
                   "SET value=excluded.value, updated_ms=excluded.updated_ms"));
  st.Bind(1, job_id).Bind(2, name).Bind(3, labels_json.empty() ? "{}" : labels_json).Bind(4, value);
  st.Bind(5, NowMs());
  GCL_RETURN_IF_ERROR(st.Run());
  return tx.Commit();
}

absl::StatusOr<std::vector<MetricSummary>> Registry::ListMetricSummaries(std::string_view job_id) {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(
      Statement st,
      db_->Prepare("SELECT job_id,name,labels_json,value,updated_ms FROM metrics_summaries "
                   "WHERE job_id=?1 ORDER BY name, labels_json"));
  st.Bind(1, job_id);
  GCL_ASSIGN_OR_RETURN(std::vector<MetricSummary> out, CollectRows(st, [](const Statement& st) {
                         MetricSummary m;
                         m.job_id = st.ColumnText(0);
                         m.name = st.ColumnText(1);
                         m.labels_json = st.ColumnText(2);
                         m.value = st.ColumnDouble(3);
                         m.updated_ms = st.ColumnInt64(4);
                         return m;
                       }));
  return out;
}

absl::Status Registry::PutMetricSummaries(std::string_view job_id,
                                          const std::vector<MetricSummary>& rows) {
  for (const MetricSummary& m : rows) {
    if (m.name.empty()) return absl::InvalidArgumentError("metric name must not be empty");
    if (!std::isfinite(m.value))
      return absl::InvalidArgumentError(internal::Cat("metric ", m.name, " is not finite"));
  }
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(*db_));
  GCL_RETURN_IF_ERROR(GetJobLocked(job_id).status());
  const int64_t now = NowMs();
  for (const MetricSummary& m : rows) {
    GCL_ASSIGN_OR_RETURN(
        Statement st,
        db_->Prepare("INSERT INTO metrics_summaries(job_id,name,labels_json,value,updated_ms) "
                     "VALUES(?1,?2,?3,?4,?5) ON CONFLICT(job_id,name,labels_json) DO UPDATE "
                     "SET value=excluded.value, updated_ms=excluded.updated_ms"));
    st.Bind(1, job_id).Bind(2, m.name).Bind(3, m.labels_json.empty() ? "{}" : m.labels_json);
    st.Bind(4, m.value).Bind(5, now);
    GCL_RETURN_IF_ERROR(st.Run());
  }
  return tx.Commit();
}

absl::StatusOr<std::vector<std::pair<JobState, int64_t>>> Registry::CountJobsByState() {
  absl::MutexLock lock(&mu_);
  GCL_ASSIGN_OR_RETURN(Statement st,
                       db_->Prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state"));
  GCL_ASSIGN_OR_RETURN(auto rows, CollectRows(st, [](const Statement& st) {
                         return std::make_pair(st.ColumnText(0), st.ColumnInt64(1));
                       }));
  std::vector<std::pair<JobState, int64_t>> out;
  for (int i = 0; i < kNumJobStates; ++i) out.emplace_back(static_cast<JobState>(i), 0);
  for (const auto& [name, n] : rows) {
    absl::StatusOr<JobState> state = ParseJobState(name);
    if (state.ok()) out[static_cast<int>(*state)].second = n;
  }
  return out;
}

absl::StatusOr<std::optional<JobEvent>> Registry::LastEvent(std::string_view job_id,
                                                            std::string_view kind) {
  absl::MutexLock lock(&mu_);
  GCL_RETURN_IF_ERROR(GetJobLocked(job_id).status());
  GCL_ASSIGN_OR_RETURN(
      Statement st, db_->Prepare(internal::Cat("SELECT ", kEventCols,
                                               " FROM job_events WHERE job_id=?1 AND kind=?2 "
                                               "ORDER BY seq DESC LIMIT 1")));
  st.Bind(1, job_id).Bind(2, kind);
  GCL_ASSIGN_OR_RETURN(std::vector<JobEvent> out, CollectRows(st, ReadEvent));
  if (out.empty()) return std::optional<JobEvent>();
  return std::optional<JobEvent>(std::move(out.front()));
}

}  // namespace gcl::storage
