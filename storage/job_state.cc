#include "storage/job_state.h"

#include <array>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "storage/str_util.h"

namespace gcl::storage {
namespace {

constexpr std::array<std::string_view, kNumJobStates> kJobNames = {
    "QUEUED", "SCHEDULED", "RUNNING", "CANCELLING", "SUCCEEDED", "FAILED", "CANCELLED"};
constexpr std::array<std::string_view, 6> kAttemptNames = {"RUNNING", "SUCCEEDED", "FAILED",
                                                           "LOST",    "PREEMPTED", "CANCELLED"};

using S = JobState;
// kLegal[from][to]; the table the header draws.
constexpr bool kLegal[kNumJobStates][kNumJobStates] = {
    //            Q      Sch    Run    Cing   Succ   Fail   Canc
    /* Q    */ {false, true, true, false, false, true, true},
    /* Sch  */ {true, false, true, true, false, true, true},
    /* Run  */ {true, false, false, true, true, true, false},
    /* Cing */ {false, false, false, false, true, true, true},
    /* Succ */ {false, false, false, false, false, false, false},
    /* Fail */ {false, false, false, false, false, false, false},
    /* Canc */ {false, false, false, false, false, false, false},
};

}  // namespace

std::string_view ToString(JobState state) { return kJobNames[static_cast<int>(state)]; }

absl::StatusOr<JobState> ParseJobState(std::string_view text) {
  std::string upper = internal::Upper(text);
  if (upper == "CANCELED") upper = "CANCELLED";  // US spelling, as Determined/TorchX users type it
  if (upper == "CANCELING") upper = "CANCELLING";
  for (int i = 0; i < kNumJobStates; ++i) {
    if (kJobNames[i] == upper) return static_cast<JobState>(i);
  }
  return absl::InvalidArgumentError(internal::Cat("unknown job state '", text, "'"));
}

bool IsTerminal(JobState state) {
  return state == S::kSucceeded || state == S::kFailed || state == S::kCancelled;
}

bool IsLegalTransition(JobState from, JobState to) {
  return kLegal[static_cast<int>(from)][static_cast<int>(to)];
}

absl::Status CheckTransition(JobState from, JobState to) {
  if (IsLegalTransition(from, to)) return absl::OkStatus();
  return absl::FailedPreconditionError(
      internal::Cat("illegal transition ", ToString(from), " -> ", ToString(to)));
}

std::string_view ToString(AttemptState state) { return kAttemptNames[static_cast<int>(state)]; }

absl::StatusOr<AttemptState> ParseAttemptState(std::string_view text) {
  std::string upper = internal::Upper(text);
  for (size_t i = 0; i < kAttemptNames.size(); ++i) {
    if (kAttemptNames[i] == upper) return static_cast<AttemptState>(i);
  }
  return absl::InvalidArgumentError(internal::Cat("unknown attempt state '", text, "'"));
}

}  // namespace gcl::storage
