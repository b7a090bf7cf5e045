// Group commit for job submissions: concurrent CreateJob callers share one
// SQLite transaction and so one fsync (synchronous=FULL stays on).
//
// The first caller that finds no commit in progress becomes the leader: it
// takes every pending request (up to max_batch), writes them with
// Registry::CreateJobsIndependently and hands each caller its own result.
// Callers that arrive while a batch commits wait and form the next batch;
// there is no timer, so a lone caller pays one transaction, as before.
// Durability is unchanged: CreateJob returns only after the transaction that
// holds its job committed. A job that fails validation or insertion fails
// alone; a failed commit fails every job of that batch (nothing written).
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <deque>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/registry.h"

namespace gcl::storage {

class GroupCommitter {
 public:
  // REQUIRES: registry outlives this; max_batch >= 1.
  explicit GroupCommitter(Registry* registry, int max_batch = 256)
      : registry_(registry), max_batch_(max_batch < 1 ? 1 : max_batch) {}

  // As Registry::CreateJob; blocks until the job's batch committed.
  absl::StatusOr<JobRecord> CreateJob(NewJob job);

  // Transactions committed, jobs passed to them, and callers waiting for the
  // next batch (figures for tests and benches).
  int64_t batches() const;
  int64_t jobs() const;
  int64_t pending() const;

 private:
  struct Request {
    NewJob job;
    absl::StatusOr<JobRecord> result = absl::UnknownError("not written");
    bool done = false;
  };

  Registry* const registry_;
  const int max_batch_;
  mutable absl::Mutex mu_;
  absl::CondVar batch_done_;
  std::deque<Request*> pending_ ABSL_GUARDED_BY(mu_);
  bool committing_ ABSL_GUARDED_BY(mu_) = false;
  int64_t batches_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t jobs_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace gcl::storage
