#include "storage/group_commit.h"

#include <utility>
#include <vector>

namespace gcl::storage {

absl::StatusOr<JobRecord> GroupCommitter::CreateJob(NewJob job) {
  Request self{std::move(job)};
  mu_.Lock();
  pending_.push_back(&self);
  while (!self.done) {
    if (committing_) {
      batch_done_.Wait(&mu_);
      continue;
    }
    // Lead one batch: everything queued so far (self among it, or an earlier
    // caller's leftovers first: FIFO keeps submit_seq in arrival order).
    committing_ = true;
    std::vector<Request*> batch;
    while (!pending_.empty() && static_cast<int>(batch.size()) < max_batch_) {
      batch.push_back(pending_.front());
      pending_.pop_front();
    }
    mu_.Unlock();
    std::vector<NewJob> jobs;
    jobs.reserve(batch.size());
    for (Request* r : batch) jobs.push_back(std::move(r->job));
    absl::StatusOr<std::vector<absl::StatusOr<JobRecord>>> written =
        registry_->CreateJobsIndependently(jobs);
    mu_.Lock();
    for (size_t i = 0; i < batch.size(); ++i) {
      batch[i]->result = written.ok() ? std::move((*written)[i]) : written.status();
      batch[i]->done = true;
    }
    ++batches_;
    jobs_ += static_cast<int64_t>(batch.size());
    committing_ = false;
    batch_done_.SignalAll();
  }
  mu_.Unlock();
  return std::move(self.result);
}

int64_t GroupCommitter::batches() const {
  absl::MutexLock lock(&mu_);
  return batches_;
}

int64_t GroupCommitter::jobs() const {
  absl::MutexLock lock(&mu_);
  return jobs_;
}

int64_t GroupCommitter::pending() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int64_t>(pending_.size());
}

}  // namespace gcl::storage
