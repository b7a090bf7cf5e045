#include "storage/migrations.h"

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "storage/str_util.h"

namespace gcl::storage {
namespace {

// v1: the registry. STRICT tables, integer UTC milliseconds, CHECKed enums,
// append-only job_events (audit log and WatchJob replay source).
constexpr std::string_view kV1 = R"sql(
CREATE TABLE jobs (
  id             TEXT PRIMARY KEY,
  name           TEXT NOT NULL,
  kind           TEXT NOT NULL,
  owner          TEXT NOT NULL DEFAULT '',
  priority       INTEGER NOT NULL DEFAULT 0,
  spec_blob      BLOB NOT NULL,
  spec_text      TEXT NOT NULL DEFAULT '',
  state          TEXT NOT NULL CHECK (state IN
                   ('QUEUED','SCHEDULED','RUNNING','CANCELLING','SUCCEEDED','FAILED','CANCELLED')),
  reason         TEXT NOT NULL DEFAULT '',
  attempt        INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
  failures       INTEGER NOT NULL DEFAULT 0 CHECK (failures >= 0),
  max_attempts   INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
  devices        INTEGER NOT NULL DEFAULT 1 CHECK (devices >= 0),
  submit_seq     INTEGER NOT NULL UNIQUE,
  created_ms     INTEGER NOT NULL,
  updated_ms     INTEGER NOT NULL,
  queued_ms      INTEGER NOT NULL,
  parent_id      TEXT REFERENCES jobs(id),
  progress_step  INTEGER NOT NULL DEFAULT 0,
  progress_total INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX jobs_by_created ON jobs(created_ms, id);
CREATE INDEX jobs_by_queue ON jobs(state, priority DESC, submit_seq);
CREATE INDEX jobs_by_parent ON jobs(parent_id);

CREATE TABLE job_events (
  seq          INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id       TEXT NOT NULL REFERENCES jobs(id),
  at_ms        INTEGER NOT NULL,
  kind         TEXT NOT NULL,
  from_state   TEXT NOT NULL DEFAULT '',
  to_state     TEXT NOT NULL DEFAULT '',
  reason       TEXT NOT NULL DEFAULT '',
  attempt      INTEGER NOT NULL DEFAULT 0,
  payload_json TEXT NOT NULL DEFAULT '{}'
) STRICT;
CREATE INDEX job_events_by_job ON job_events(job_id, seq);

CREATE TABLE workers (
  id              TEXT PRIMARY KEY,
  address         TEXT NOT NULL DEFAULT '',
  devices         INTEGER NOT NULL DEFAULT 0 CHECK (devices >= 0),
  memory_bytes    INTEGER NOT NULL DEFAULT 0,
  labels_json     TEXT NOT NULL DEFAULT '{}',
  state           TEXT NOT NULL CHECK (state IN ('ALIVE','LOST')),
  registered_ms   INTEGER NOT NULL,
  last_seen_ms    INTEGER NOT NULL,
  lease_expiry_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE attempts (
  job_id     TEXT NOT NULL REFERENCES jobs(id),
  attempt    INTEGER NOT NULL CHECK (attempt >= 1),
  worker_id  TEXT NOT NULL,
  state      TEXT NOT NULL CHECK (state IN
               ('RUNNING','SUCCEEDED','FAILED','LOST','PREEMPTED','CANCELLED')),
  started_ms INTEGER NOT NULL,
  ended_ms   INTEGER,
  exit_code  INTEGER,
  reason     TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, attempt)
) STRICT;
CREATE INDEX attempts_by_worker ON attempts(worker_id, state);

CREATE TABLE checkpoints (
  id                INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id            TEXT NOT NULL REFERENCES jobs(id),
  attempt           INTEGER NOT NULL,
  step              INTEGER NOT NULL CHECK (step >= 0),
  path              TEXT NOT NULL,
  sha256            TEXT NOT NULL CHECK (length(sha256) = 64),
  bytes             INTEGER NOT NULL CHECK (bytes >= 0),
  metric_name       TEXT NOT NULL DEFAULT '',
  metric_value      REAL,
  state             TEXT NOT NULL CHECK (state IN ('ACTIVE','COMPLETED','ERROR','DELETED')),
  parent_checkpoint INTEGER REFERENCES checkpoints(id),
  created_ms        INTEGER NOT NULL
) STRICT;
CREATE INDEX checkpoints_by_job ON checkpoints(job_id, step);

CREATE TABLE results (
  job_id     TEXT NOT NULL REFERENCES jobs(id),
  variant    TEXT NOT NULL,
  m_lab      INTEGER NOT NULL,
  repeat     INTEGER NOT NULL,
  case_id    TEXT NOT NULL,
  class_name TEXT NOT NULL,
  dice       REAL NOT NULL,
  hd95       REAL,
  n_ref      INTEGER NOT NULL DEFAULT 0,
  n_pred     INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (job_id, variant, m_lab, repeat, case_id, class_name)
) STRICT;
)sql";

// v2: metric summaries per job (final losses, conflict rates, timings):
// the numbers that outlive the job's Prometheus series.
constexpr std::string_view kV2 = R"sql(
CREATE TABLE metrics_summaries (
  job_id      TEXT NOT NULL REFERENCES jobs(id),
  name        TEXT NOT NULL,
  labels_json TEXT NOT NULL DEFAULT '{}',
  value       REAL NOT NULL,
  updated_ms  INTEGER NOT NULL,
  PRIMARY KEY (job_id, name, labels_json)
) STRICT;
)sql";

// v3: control-plane indexes for 100k-job registries. A state filter pages
// newest-first straight off (state, created_ms, id) instead of walking every
// job; a worker's open attempts come from attempts_by_worker (v1).
constexpr std::string_view kV3 = R"sql(
CREATE INDEX jobs_by_state_created ON jobs(state, created_ms, id);
)sql";

// v4: idempotent submits. A retried SubmitJob carrying the same
// (owner, request_id) finds the job the first one created.
constexpr std::string_view kV4 = R"sql(
ALTER TABLE jobs ADD COLUMN request_id TEXT;
CREATE UNIQUE INDEX jobs_by_request ON jobs(owner, request_id) WHERE request_id IS NOT NULL;
)sql";

// v5: gangs. A job may span `nodes` workers; each attempt has one member row
// per worker (node_index 0 holds rank 0), so device accounting, a worker's
// open attempts and lost-worker handling see every member. A member's row
// stays RUNNING until that worker confirms its ranks ended (Complete), is
// lost or re-registers without them, even after its attempt closed: its
// devices stay busy while the ranks drain. attempts.rendezvous is the c10d
// TCPStore host:port of multi-rank attempts; workers carry their advertised
// rendezvous port range. Existing attempts become single-member ones.
constexpr std::string_view kV5 = R"sql(
ALTER TABLE jobs ADD COLUMN nodes INTEGER NOT NULL DEFAULT 1;
ALTER TABLE attempts ADD COLUMN rendezvous TEXT NOT NULL DEFAULT '';
ALTER TABLE workers ADD COLUMN rendezvous_port_min INTEGER NOT NULL DEFAULT 29500;
ALTER TABLE workers ADD COLUMN rendezvous_port_max INTEGER NOT NULL DEFAULT 29999;
CREATE TABLE attempt_members (
  job_id     TEXT NOT NULL,
  attempt    INTEGER NOT NULL,
  node_index INTEGER NOT NULL CHECK (node_index >= 0),
  worker_id  TEXT NOT NULL,
  devices    INTEGER NOT NULL CHECK (devices >= 0),
  device_ids TEXT NOT NULL DEFAULT '',
  state      TEXT NOT NULL CHECK (state IN
               ('RUNNING','SUCCEEDED','FAILED','LOST','PREEMPTED','CANCELLED')),
  ended_ms   INTEGER,
  exit_code  INTEGER,
  reason     TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (job_id, attempt, node_index),
  FOREIGN KEY (job_id, attempt) REFERENCES attempts(job_id, attempt)
) STRICT;
CREATE INDEX attempt_members_open ON attempt_members(worker_id) WHERE state='RUNNING';
INSERT INTO attempt_members(job_id,attempt,node_index,worker_id,devices,state,ended_ms,exit_code,reason)
  SELECT a.job_id, a.attempt, 0, a.worker_id, j.devices, a.state, a.ended_ms, a.exit_code, a.reason
  FROM attempts a JOIN jobs j ON j.id=a.job_id;
)sql";

}  // namespace

const std::vector<Migration>& Migrations() {
  static const std::vector<Migration>* const kAll = new std::vector<Migration>{
      {1, "registry: jobs, job_events, workers, attempts, checkpoints, results", kV1},
      {2, "metrics_summaries", kV2},
      {3, "jobs_by_state_created index (ListJobs state filters)", kV3},
      {4, "jobs.request_id (idempotent submits)", kV4},
      {5, "attempt_members, jobs.nodes, attempts.rendezvous, worker port ranges (gangs)", kV5},
  };
  return *kAll;
}

int HeadVersion() { return static_cast<int>(Migrations().size()); }

absl::StatusOr<int> SchemaVersion(Db& db) {
  GCL_ASSIGN_OR_RETURN(int64_t v, db.QueryInt64("PRAGMA user_version"));
  return static_cast<int>(v);
}

absl::Status Migrate(Db& db, int target) {
  const int head = HeadVersion();
  if (target < 0) target = head;
  if (target > head) {
    return absl::InvalidArgumentError(internal::Cat("migration target ", target, " > head ", head));
  }
  GCL_ASSIGN_OR_RETURN(int current, SchemaVersion(db));
  if (current > head) {
    return absl::FailedPreconditionError(
        internal::Cat("database ", db.path(), " has schema version ", current,
                     " but this binary knows up to version ", head, "; upgrade the binary"));
  }
  for (const Migration& m : Migrations()) {
    if (m.version <= current || m.version > target) continue;
    GCL_ASSIGN_OR_RETURN(Transaction tx, Transaction::Begin(db));
    // Re-read inside the write lock: another process may have migrated meanwhile.
    GCL_ASSIGN_OR_RETURN(int now, SchemaVersion(db));
    if (now >= m.version) continue;  // tx rolls back (nothing written)
    if (auto s = db.Exec(m.sql); !s.ok()) {
      return absl::Status(s.code(), internal::Cat("migration to v", m.version, " (", m.description,
                                                 "): ", s.message()));
    }
    // user_version takes no parameters; the value is a compiled-in integer.
    GCL_RETURN_IF_ERROR(db.Exec(internal::Cat("PRAGMA user_version = ", m.version)));
    GCL_RETURN_IF_ERROR(tx.Commit());
  }
  return absl::OkStatus();
}

}  // namespace gcl::storage
