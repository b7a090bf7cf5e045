// The job state machine (architecture.md §3; user-expectations.md §3 item 2):
//
//   QUEUED -> SCHEDULED -> RUNNING -> SUCCEEDED | FAILED
//     |           |           |  \-> QUEUED      (requeue: worker lost, retryable
//     |           |           |                   failure, preemption)
//     |           |           \---> CANCELLING -> CANCELLED | FAILED | SUCCEEDED
//     |           \-> QUEUED (placement undone), CANCELLING, CANCELLED, FAILED
//     \-> RUNNING (direct start), CANCELLED, FAILED (rejected after submit)
//
// SUCCEEDED, FAILED and CANCELLED are terminal. Every non-terminal state
// carries a reason in the registry. The spellings are the SQL column values
// (CHECK-constrained) and what gclctl prints.
#pragma once

#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl::storage {

enum class JobState : int {
  kQueued = 0,
  kScheduled = 1,
  kRunning = 2,
  kCancelling = 3,
  kSucceeded = 4,
  kFailed = 5,
  kCancelled = 6,
};
inline constexpr int kNumJobStates = 7;

// "QUEUED", "SCHEDULED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED".
std::string_view ToString(JobState state);
// Inverse of ToString; case-insensitive; kInvalidArgument names the input.
absl::StatusOr<JobState> ParseJobState(std::string_view text);

bool IsTerminal(JobState state);
// True for the edges drawn above (a state to itself is not a transition).
bool IsLegalTransition(JobState from, JobState to);
// OK, or kFailedPrecondition "illegal transition RUNNING -> SCHEDULED".
absl::Status CheckTransition(JobState from, JobState to);

// Attempt (one placement of a job) outcomes, stored in attempts.state.
enum class AttemptState : int {
  kRunning = 0,
  kSucceeded = 1,
  kFailed = 2,     // the trainer failed: charges one of max_attempts
  kLost = 3,       // the worker's lease expired: charges one of max_attempts
  kPreempted = 4,  // taken back by the scheduler: does not charge an attempt
  kCancelled = 5,
};
std::string_view ToString(AttemptState state);
absl::StatusOr<AttemptState> ParseAttemptState(std::string_view text);

}  // namespace gcl::storage
