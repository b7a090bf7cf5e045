// The coordinator's registry: every piece of service state lives here, in one
// SQLite file (WAL, synchronous=FULL, busy_timeout, foreign keys on; schema
// versions in migrations.h). A restarted coordinator rebuilds its view with
// RecoverActive() + ListWorkers() + ListCheckpoints().
//
// Vocabulary (user-expectations.md §5): a *job* is the user's intent; an
// *attempt* is one placement of it (attempt numbers 1, 2, ...) on one worker,
// or on `nodes` workers at once for a gang: one *member* per worker, node
// index 0 holding rank 0; a *checkpoint* is owned by an attempt. Failures (trainer failure, worker
// lost) charge one of max_attempts; preemption does not.
//
// Every write is one BEGIN IMMEDIATE ... COMMIT unit that also appends its
// job_events row(s), so the event log and the tables never disagree; a
// rejected call writes nothing. Every value reaches SQL through bound
// parameters. Times are integer UTC milliseconds.
//
// Thread-safe: one write connection per Registry guarded by a mutex, a
// second connection for the hot reads (GetJob, ListJobs, positions, open
// attempts, events) and a third for the scheduler's whole-queue scans
// (ListQueue, DevicesInUse, ListWorkers), so reads never wait behind a
// commit's fsync nor behind a scan (WAL: a read sees every transaction
// committed before it started). Several Registry handles
// (threads or processes) may share a file; writers wait on each other up to
// busy_timeout_ms.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/job_state.h"
#include "storage/sqlite_db.h"

namespace gcl::storage {

struct RegistryOptions {
  int busy_timeout_ms = 5000;
  // FULL: an acknowledged SubmitJob survives power loss. NORMAL only for benches.
  bool synchronous_full = true;
  // Wall clock in UTC ms; tests inject a fake one.
  std::function<int64_t()> now_ms;
  // Seeds the job-id generator; 0 = from std::random_device.
  uint64_t id_seed = 0;
  // true: SQLite checkpoints the WAL inside a commit now and then (a commit
  // that also writes and fsyncs the database file: a latency spike). false:
  // commits never checkpoint; the owner calls CheckpointWal() periodically
  // (the coordinator does, from its ticker).
  bool wal_autocheckpoint = true;
};

struct NewJob {
  std::string name;
  std::string kind;          // "pretrain" | "finetune" | "experiment" (opaque here)
  std::string owner;         // authenticated user; "" when auth is off
  int32_t priority = 0;      // higher runs first
  std::string spec_blob;     // serialized gcl.v1.JobSpec (opaque bytes)
  std::string spec_text;     // human-readable copy (YAML/JSON) for `gclctl get`
  int32_t max_attempts = 3;  // REQUIRES >= 1
  int64_t devices = 1;       // REQUIRES >= 0; in total (every rank)
  // Workers the job spans (a gang when > 1, devices / nodes on each).
  // REQUIRES >= 1 and devices a multiple of it.
  int64_t nodes = 1;
  std::string parent_id;     // experiment parent, "" for none (must exist)
  std::string reason;        // initial QUEUED reason; "" -> "waiting for a worker"
  // Idempotency key, "" for none: creating a job whose (owner, request_id)
  // already exists returns that job unchanged and writes nothing.
  std::string request_id;
};

struct JobRecord {
  std::string id;  // "j-" + 12 lowercase hex
  std::string name;
  std::string kind;
  std::string owner;
  int32_t priority = 0;
  std::string spec_blob;
  std::string spec_text;
  JobState state = JobState::kQueued;
  std::string reason;        // why it is in `state` (set for every non-terminal state)
  int32_t attempt = 0;       // placements so far; the current/last attempt number
  int32_t failures = 0;      // charged failures (<= max_attempts)
  int32_t max_attempts = 3;
  int64_t devices = 1;
  int64_t submit_seq = 0;    // FIFO order within a priority
  int64_t created_ms = 0, updated_ms = 0, queued_ms = 0;  // queued_ms: last entry into QUEUED
  std::string parent_id;
  int64_t progress_step = 0, progress_total = 0;
  std::string worker_id;  // worker of the current attempt (a gang's node 0); "" when attempt == 0 (read only)
  int64_t nodes = 1;      // workers it spans
};

struct JobFilter {
  std::vector<JobState> states;  // empty = any
  std::string owner;             // "" = any
  std::string kind;              // "" = any
  std::string parent_id;         // "" = any
  int page_size = 100;           // clamped to [1, 1000]
  std::string page_token;        // from JobPage::next_page_token; "" = first page
};

// Newest first (created_ms DESC, id DESC). Keyset paging: a job created
// after the first page was read never shifts later pages.
struct JobPage {
  std::vector<JobRecord> jobs;
  std::string next_page_token;  // "" on the last page
};

struct JobEvent {
  int64_t seq = 0;  // global, strictly increasing
  std::string job_id;
  int64_t at_ms = 0;
  std::string kind;  // submitted | state | reason | checkpoint | retention | <caller's, AppendEvent>
  std::string from_state, to_state;  // ToString(JobState) or ""
  std::string reason;
  int32_t attempt = 0;
  std::string payload_json = "{}";
};

struct AttemptRecord {
  std::string job_id;
  int32_t attempt = 0;
  std::string worker_id;
  AttemptState state = AttemptState::kRunning;
  int64_t started_ms = 0;
  std::optional<int64_t> ended_ms;
  std::optional<int32_t> exit_code;
  std::string reason;
};

// A QUEUED job as the scheduler needs it (no spec), in scheduling order.
struct QueueEntry {
  std::string id;
  std::string kind;
  int32_t priority = 0;
  int64_t submit_seq = 0;
  int64_t devices = 1;
  std::string reason;
  int64_t nodes = 1;
};

// A member of an attempt that may still run on a worker (member RUNNING).
// current: it belongs to the job's current attempt and the job is RUNNING or
// CANCELLING; otherwise the attempt ended (e.g. another gang member was lost)
// and the member is draining: its devices stay held until the worker
// confirms (Complete), loses its lease or re-registers without it.
struct OpenAttempt {
  std::string job_id;
  JobState state = JobState::kRunning;  // the job's
  int32_t attempt = 0;
  int64_t devices = 0;  // this member's
  bool current = true;
  int32_t node_index = 0;
  std::string rendezvous;  // the attempt's; "" for single-rank attempts
};

// One worker's share of an attempt.
struct AttemptMember {
  std::string job_id;
  int32_t attempt = 0;
  int32_t node_index = 0;  // its first rank is node_index x devices
  std::string worker_id;
  int64_t devices = 0;
  std::vector<std::string> device_ids;  // "dev:N": N indexes the worker's registered devices
  AttemptState state = AttemptState::kRunning;
  std::string reason;
};

// The devices RUNNING members hold on one worker.
struct DeviceUse {
  std::string worker_id;
  int64_t devices = 0;           // how many
  std::vector<int64_t> indices;  // which ("dev:N"), ascending; rows from before
                                 // per-device bookkeeping (schema < 5) name none
  bool operator==(const DeviceUse& o) const {
    return worker_id == o.worker_id && devices == o.devices && indices == o.indices;
  }
};

// An attempt with its members in node order.
struct GangAttempt {
  int32_t attempt = 0;
  std::string rendezvous;
  std::vector<AttemptMember> members;
};

struct LeaseRenewal {
  std::string worker_id;
  int64_t last_seen_ms = 0;
  int64_t lease_expiry_ms = 0;
};

struct AttemptOutcome {
  AttemptState state = AttemptState::kFailed;  // not kRunning
  std::optional<int32_t> exit_code;
  std::string reason;  // e.g. "exit code 1: CUDA out of memory"
};

enum class WorkerState { kAlive, kLost };
struct WorkerRecord {
  std::string id;
  std::string address;
  int64_t devices = 0;
  int64_t memory_bytes = 0;
  std::string labels_json = "{}";
  WorkerState state = WorkerState::kAlive;
  int64_t registered_ms = 0, last_seen_ms = 0, lease_expiry_ms = 0;
  // TCP ports the coordinator may pick a gang's rendezvous from when this
  // worker holds its rank 0 (inclusive).
  int32_t rendezvous_port_min = 29500, rendezvous_port_max = 29999;
};

enum class CheckpointState { kActive, kCompleted, kError, kDeleted };
std::string_view ToString(CheckpointState state);

// The wire id of a checkpoint row: "c-" + 12 lowercase hex digits of its id.
std::string CheckpointId(int64_t id);
// kInvalidArgument naming the text when it is not such an id.
absl::StatusOr<int64_t> ParseCheckpointId(std::string_view text);

struct CheckpointRecord {
  int64_t id = 0;  // assigned by AddCheckpoint
  std::string job_id;
  int32_t attempt = 0;
  int64_t step = 0;
  std::string path;    // relative to the artifact store root
  std::string sha256;  // 64 lowercase hex
  int64_t bytes = 0;
  std::string metric_name;             // e.g. "val_dice"; "" when none
  std::optional<double> metric_value;  // nullopt when not measured
  CheckpointState state = CheckpointState::kCompleted;
  std::optional<int64_t> parent_checkpoint;  // lineage: the checkpoint it resumed/fine-tuned from
  int64_t created_ms = 0;
};

// One Dice (and optionally HD95) of one class on one test case.
struct ResultRecord {
  std::string job_id;
  std::string variant;  // e.g. "gcl", "baseline"
  int32_t m_lab = 0;    // labelled volumes
  int32_t repeat = 0;
  std::string case_id;
  std::string class_name;  // "RV", "Myo", "LV", or "mean"
  double dice = 0;
  std::optional<double> hd95;
  int64_t n_ref = 0, n_pred = 0;
};

// Per (variant, m_lab, class_name): each repeat's mean over cases, then the
// mean and the sample standard deviation (n-1; 0 for one repeat) over repeats.
struct ResultSummary {
  std::string variant;
  int32_t m_lab = 0;
  std::string class_name;
  int32_t repeats = 0;
  int64_t cases = 0;  // rows summarised
  double dice_mean = 0, dice_std = 0;
  std::optional<double> hd95_mean, hd95_std;  // over repeats with any HD95
};

struct MetricSummary {
  std::string job_id, name, labels_json;
  double value = 0;
  int64_t updated_ms = 0;
};

class Registry {
 public:
  // Opens/creates the file and migrates it to HeadVersion(). A file with a
  // newer schema is refused (kFailedPrecondition naming both versions).
  static absl::StatusOr<std::unique_ptr<Registry>> Open(const std::string& path,
                                                         RegistryOptions options = {});
  ~Registry();

  // ---- jobs ----
  // QUEUED with reason (default "waiting for a worker"), attempt 0; event
  // "submitted". kInvalidArgument for empty name/kind, max_attempts < 1,
  // devices < 0; kNotFound for an unknown parent_id.
  absl::StatusOr<JobRecord> CreateJob(const NewJob& job);
  // All or none, in one transaction (experiment expansion, bulk loads).
  absl::StatusOr<std::vector<JobRecord>> CreateJobs(const std::vector<NewJob>& jobs);
  // Each job on its own (a SAVEPOINT per job: one that fails validation or
  // insertion leaves no trace and fails alone), all in ONE transaction and
  // one fsync (group commit). The outer status is the transaction's: when
  // it is not OK nothing was written and every job failed with it.
  absl::StatusOr<std::vector<absl::StatusOr<JobRecord>>> CreateJobsIndependently(
      const std::vector<NewJob>& jobs);
  absl::StatusOr<JobRecord> GetJob(std::string_view id);  // kNotFound
  // kInvalidArgument for a malformed page_token.
  absl::StatusOr<JobPage> ListJobs(const JobFilter& filter);
  // Moves the job to `to` (legal edges in job_state.h, else
  // kFailedPrecondition and nothing written) and appends a "state" event.
  // Only a job that needs no devices (an experiment parent) may enter
  // RUNNING here; others enter it with StartAttempt (kInvalidArgument).
  // expected_attempt >= 0 guards against stale reports: kFailedPrecondition
  // when the job's attempt differs. Entering QUEUED requires a non-empty
  // reason (kInvalidArgument). Entering a terminal state closes a RUNNING
  // attempt (SUCCEEDED/FAILED/CANCELLED).
  absl::Status Transition(std::string_view id, JobState to, std::string_view reason,
                          int64_t expected_attempt = -1);
  // Updates the reason of a non-terminal job (e.g. "needs 4 devices; largest
  // worker has 2"); appends a "reason" event only when it changed.
  absl::Status SetReason(std::string_view id, std::string_view reason);
  // SetReason for many jobs in one transaction, for jobs still QUEUED only
  // (others, e.g. cancelled since the caller read them, are skipped); a
  // "reason" event only where the text changed. Returns how many changed.
  absl::StatusOr<int> SetQueuedReasons(
      const std::vector<std::pair<std::string, std::string>>& id_reason);
  // Progress columns (no event: progress flows to WatchJob through the
  // coordinator's memory; the registry keeps the latest for GetJob).
  absl::Status SetProgress(std::string_view id, int64_t step, int64_t total);
  // Appends a caller-defined event (kind not empty), e.g. "checkpoint".
  absl::StatusOr<int64_t> AppendEvent(std::string_view job_id, std::string_view kind,
                                      std::string_view reason, std::string_view payload_json = "{}");

  // ---- attempts ----
  // QUEUED|SCHEDULED -> RUNNING: attempt + 1, an attempts row on worker_id,
  // a "state" event (payload {"worker_id": ...}). Returns the new attempt number.
  // kFailedPrecondition from other states or when failures >= max_attempts.
  // kInvalidArgument for a job with nodes > 1 (StartGangAttempt).
  absl::StatusOr<int32_t> StartAttempt(std::string_view job_id, std::string_view worker_id);
  // StartAttempt for all the members at once (all or none): workers[i] is
  // node i and gets devices / nodes devices that its RUNNING members do not
  // hold: the first ones in device_order[i] (device indices in order of
  // preference) or, when device_order is empty or device_order[i] is, the
  // lowest indices. The attempts row names workers[0].
  // kInvalidArgument unless workers are job.nodes distinct non-empty ids and
  // device_order is empty or has one entry per worker; kFailedPrecondition
  // when device_order[i] leaves too few free devices.
  absl::StatusOr<GangAttempt> StartGangAttempt(
      std::string_view job_id, const std::vector<std::string>& workers, std::string_view rendezvous,
      const std::vector<std::vector<int64_t>>& device_order = {});
  // The members of attempt `attempt` of the job (node order) and its
  // rendezvous; kNotFound when there is no such attempt.
  absl::StatusOr<GangAttempt> GetGang(std::string_view job_id, int32_t attempt);
  // Closes attempt `attempt` (must be the job's current, still RUNNING
  // attempt; else kFailedPrecondition: a stale report) and moves the job:
  //   SUCCEEDED -> SUCCEEDED; CANCELLED -> CANCELLED;
  //   FAILED/LOST -> failures + 1; QUEUED if failures < max_attempts else FAILED;
  //   PREEMPTED -> QUEUED (no charge).
  // A CANCELLING job ends CANCELLED unless the attempt SUCCEEDED.
  // Every RUNNING member of the attempt is closed with it.
  // Returns the job after the move.
  absl::StatusOr<JobRecord> FinishAttempt(std::string_view job_id, int32_t attempt,
                                          const AttemptOutcome& outcome);
  // One member's report (its worker's Complete). Closes worker_id's member
  // of the job's current attempt; a success ends the attempt only when it
  // was the last RUNNING member (the job stays RUNNING until then); any
  // other outcome ends the whole attempt at once as FinishAttempt does (the
  // other members stay RUNNING, draining, until their workers confirm).
  // kFailedPrecondition (nothing written) for a stale attempt or a worker
  // with no RUNNING member in it. Returns the job after the move.
  absl::StatusOr<JobRecord> FinishMember(std::string_view job_id, int32_t attempt,
                                         std::string_view worker_id,
                                         const AttemptOutcome& outcome);
  // Closes worker_id's RUNNING member of attempt `attempt` (any attempt,
  // current or not) with `outcome`; the job and attempt are not touched.
  // OK when there is none (idempotent).
  absl::Status CloseMember(std::string_view job_id, int32_t attempt, std::string_view worker_id,
                           const AttemptOutcome& outcome);
  // A worker (re)registered running exactly `running_job_ids`: each of its
  // RUNNING members not among them is closed; when that member belongs to
  // the current attempt of a multi-worker gang, the attempt is lost (charged
  // and requeued as Requeue: the other ranks cannot go on without it).
  // Single-worker attempts are left alone (the coordinator sends them
  // again). Returns the ids of the jobs requeued.
  absl::StatusOr<std::vector<std::string>> ReconcileWorker(
      std::string_view worker_id, const std::vector<std::string>& running_job_ids);
  // The job lost its placement (worker gone, placement undone): closes a
  // RUNNING attempt as LOST and charges it (QUEUED while failures <
  // max_attempts, else FAILED); a SCHEDULED job without a running attempt
  // goes back to QUEUED uncharged. Returns the job after the move.
  absl::StatusOr<JobRecord> Requeue(std::string_view job_id, std::string_view reason);
  absl::StatusOr<std::vector<AttemptRecord>> ListAttempts(std::string_view job_id);
  // The RUNNING current attempts of every job (what each worker is running
  // now; CANCELLING jobs included), one row per member still running (a
  // gang appears under each of its workers, worker_id being the member's),
  // by worker_id then job submission order.
  absl::StatusOr<std::vector<AttemptRecord>> ListRunningAttempts();

  // Queued jobs in scheduling order (priority DESC, then FIFO by submission:
  // a requeued job keeps its place). limit <= 0: all.
  absl::StatusOr<std::vector<JobRecord>> ListQueued(int limit = 0);
  // The same order without specs (id, priority, submit_seq, devices, reason).
  absl::StatusOr<std::vector<QueueEntry>> ListQueue();
  // jobs_ahead of a QUEUED job in that order (0 = next); kFailedPrecondition
  // when the job is not QUEUED. Cost: O(jobs ahead) index entries.
  absl::StatusOr<int64_t> QueuePosition(std::string_view job_id);
  // jobs_ahead for each record that is QUEUED (by its priority and
  // submit_seq), -1 for the others and for jobs no longer QUEUED. One index
  // scan up to the last of them (ListJobs pages).
  absl::StatusOr<std::vector<int64_t>> QueuePositions(const std::vector<JobRecord>& jobs);
  // Every non-terminal job (QUEUED, SCHEDULED, RUNNING, CANCELLING), oldest
  // first: what a restarted coordinator must re-adopt or re-schedule.
  absl::StatusOr<std::vector<JobRecord>> RecoverActive();
  // The RUNNING members on worker_id (current and draining ones, see
  // OpenAttempt), by submit_seq. One indexed query (attempt_members_open).
  absl::StatusOr<std::vector<OpenAttempt>> OpenAttemptsOn(std::string_view worker_id);
  // Devices held per worker by RUNNING members (draining ones included), by worker id.
  absl::StatusOr<std::vector<DeviceUse>> DevicesInUse();

  // ---- events ----
  // Events of job_id with seq > after_seq in seq order, at most `limit`
  // (<= 0: 1000). kNotFound for an unknown job.
  absl::StatusOr<std::vector<JobEvent>> EventsAfter(std::string_view job_id, int64_t after_seq,
                                                    int limit = 1000);

  // ---- workers ----
  // Insert or replace (a re-registering worker becomes ALIVE again; its
  // registered_ms is kept).
  absl::Status UpsertWorker(const WorkerRecord& worker);
  // Renews the lease (last_seen = now); kNotFound for unknown workers,
  // kFailedPrecondition for a LOST one (it must re-register).
  absl::Status TouchWorker(std::string_view worker_id, int64_t lease_expiry_ms);
  // TouchWorker for many workers in one transaction (a coordinator that keeps
  // leases in memory writes them back in batches); LOST or unknown workers
  // are skipped.
  absl::Status RenewLeases(const std::vector<LeaseRenewal>& renewals);
  absl::StatusOr<WorkerRecord> GetWorker(std::string_view worker_id);
  absl::StatusOr<std::vector<WorkerRecord>> ListWorkers();
  // Marks the worker LOST and, in the same transaction, closes its RUNNING
  // members as LOST and requeues every job whose current attempt had one
  // (as Requeue; a gang's other members drain). Returns those job ids.
  absl::StatusOr<std::vector<std::string>> MarkWorkerLost(std::string_view worker_id,
                                                          std::string_view reason);

  // ---- checkpoints ----
  // Records a checkpoint (id and created_ms assigned; "checkpoint" event).
  // kInvalidArgument for a sha256 that is not 64 hex, bytes < 0, step < 0.
  absl::StatusOr<CheckpointRecord> AddCheckpoint(const CheckpointRecord& ckpt);
  absl::StatusOr<CheckpointRecord> GetCheckpoint(int64_t id);
  // Not DELETED ones, by step then id.
  absl::StatusOr<std::vector<CheckpointRecord>> ListCheckpoints(std::string_view job_id);
  // The COMPLETED one with the highest step (resume point); kNotFound if none.
  absl::StatusOr<CheckpointRecord> NewestCheckpoint(std::string_view job_id);
  // Retention among the job's COMPLETED checkpoints: keeps the newest
  // max(keep_newest, 1) by step and the best by metric_value (highest or
  // lowest; only finite values count); ERROR ones are always released.
  // Marks the rest DELETED and returns them (the caller removes the files).
  // Never deletes the best, never the only COMPLETED one.
  absl::StatusOr<std::vector<CheckpointRecord>> ApplyRetention(std::string_view job_id,
                                                               int keep_newest,
                                                               bool higher_is_better);

  // ---- results and metrics ----
  // Insert or replace on (job, variant, m_lab, repeat, case, class).
  absl::Status AddResults(const std::vector<ResultRecord>& results);
  absl::Status AddResult(const ResultRecord& result) { return AddResults({result}); }
  // Rows of the job itself or of its direct children (experiment parent).
  absl::StatusOr<std::vector<ResultRecord>> ListResults(std::string_view job_id_or_parent);
  // Ordered by variant, m_lab, class_name.
  absl::StatusOr<std::vector<ResultSummary>> SummarizeResults(std::string_view job_id_or_parent);
  // The jobs whose results a table shows: each job with result rows, an
  // experiment child replaced by its parent (the parent's summary covers
  // it); deduplicated, newest first.
  absl::StatusOr<std::vector<JobRecord>> JobsWithResults();
  absl::Status PutMetricSummary(std::string_view job_id, std::string_view name,
                                std::string_view labels_json, double value);
  absl::StatusOr<std::vector<MetricSummary>> ListMetricSummaries(std::string_view job_id);
  // Several summaries of one job in one transaction (all or none); each
  // as PutMetricSummary (MetricSummary::job_id and updated_ms are ignored).
  absl::Status PutMetricSummaries(std::string_view job_id, const std::vector<MetricSummary>& rows);

  // ---- observability (coordinator /metrics) ----
  // Number of jobs in each state, every state present (0 when none).
  absl::StatusOr<std::vector<std::pair<JobState, int64_t>>> CountJobsByState();
  // The newest event of `kind` of the job; nullopt when it has none.
  // kNotFound for an unknown job.
  absl::StatusOr<std::optional<JobEvent>> LastEvent(std::string_view job_id, std::string_view kind);

  // Copies the WAL into the database file (PASSIVE: never waits for, nor
  // blocks, readers and writers), on a connection of its own. Needed
  // periodically when wal_autocheckpoint is false; harmless otherwise.
  absl::Status CheckpointWal();

  int64_t NowMs() const;

 private:
  Registry(std::unique_ptr<Db> db, std::unique_ptr<Db> reader, std::unique_ptr<Db> scanner,
           std::unique_ptr<Db> checkpointer, RegistryOptions options);
  std::string NewJobIdLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobRecord> CreateJobLocked(const NewJob& job, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobRecord> GetJobLocked(std::string_view id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MoveJobLocked(const JobRecord& job, JobState to, std::string_view reason,
                             int32_t failures, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status CloseAttemptLocked(std::string_view job_id, int32_t attempt,
                                  const AttemptOutcome& outcome, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobRecord> FinishAttemptLocked(const JobRecord& job, const AttemptOutcome& outcome,
                                                int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<JobRecord> RequeueLocked(std::string_view job_id, std::string_view reason,
                                          int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Closes the RUNNING members of (job, attempt) on worker_id ("" = all of
  // them) with the outcome; returns how many.
  absl::StatusOr<int> CloseMembersLocked(std::string_view job_id, int32_t attempt,
                                         std::string_view worker_id, const AttemptOutcome& outcome,
                                         int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The RUNNING members on worker_id, by submission: `current` when their
  // attempt is the job's running one (else the attempt ended and the member
  // is only draining).
  struct OpenMember {
    std::string job_id;
    int32_t attempt = 0;
    int64_t nodes = 1;
    bool current = false;
  };
  absl::StatusOr<std::vector<OpenMember>> OpenMembersLocked(std::string_view worker_id)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<int64_t> AppendEventLocked(const JobEvent& event) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<std::vector<JobRecord>> QueryJobsLocked(std::string_view sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::unique_ptr<Db> db_ ABSL_GUARDED_BY(mu_);
  absl::Mutex read_mu_;
  std::unique_ptr<Db> reader_ ABSL_GUARDED_BY(read_mu_);
  absl::Mutex scan_mu_;
  std::unique_ptr<Db> scanner_ ABSL_GUARDED_BY(scan_mu_);
  absl::Mutex checkpoint_mu_;
  std::unique_ptr<Db> checkpointer_ ABSL_GUARDED_BY(checkpoint_mu_);
  RegistryOptions options_;
  std::mt19937_64 id_rng_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gcl::storage
