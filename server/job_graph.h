// Jobs that depend on other jobs. A fine-tuning job with `init: {job: ID}`
// waits (QUEUED, with that reason) until the pre-training job succeeds and
// fails when it fails. An experiment job needs no devices: it expands into
// child jobs (one pre-training per variant, one fine-tuning per variant x
// labelled-volume count x repeat, initialised from its variant's
// pre-training job), runs while they do, and ends when they all have ended:
// SUCCEEDED when every child succeeded, CANCELLED when it was cancelled,
// FAILED otherwise (the results of the children that succeeded stay).
//
// Everything is derived from the registry, so a coordinator that crashed
// half-way through an expansion completes it after restart (children are
// matched by name).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gcl/v1/spec.pb.h"
#include "storage/registry.h"

namespace gcl::server {

class JobGraph {
 public:
  // REQUIRES: registry outlives this.
  explicit JobGraph(storage::Registry* registry) : registry_(registry) {}

  // Submit-time check of `init.job`: NOT_FOUND for an unknown job,
  // INVALID_ARGUMENT when it is not a pre-training job or already failed.
  absl::Status CheckInitJob(const gcl::v1::JobSpec& spec);

  // For a QUEUED job: nullopt when it may be scheduled, else why it waits.
  // A job whose dependency ended without success is moved to FAILED here
  // (and reported as waiting, so the caller skips it).
  absl::StatusOr<std::optional<std::string>> HoldReason(const storage::JobRecord& job);

  // Resolves `init: {job: ID}` in an assignment's spec to that job's newest
  // checkpoint id and, when the spec names no variant, takes the
  // pre-training job's (so results are labelled by it).
  absl::Status ResolveInit(gcl::v1::JobSpec* spec);

  // Expands every QUEUED experiment job (creating missing children) and
  // moves it to RUNNING; ends RUNNING/CANCELLING experiments whose children
  // all ended, cancelling the children of a CANCELLING one first.
  absl::Status Advance();

  // Cancels the job's non-terminal children (queued ones at once, running
  // ones via CANCELLING).
  absl::Status CancelChildren(const std::string& parent_id, const std::string& reason);

  // Child jobs of an experiment (any state), oldest first.
  absl::StatusOr<std::vector<storage::JobRecord>> Children(const std::string& parent_id);

 private:
  absl::Status Expand(const storage::JobRecord& parent);
  absl::Status Settle(const storage::JobRecord& parent);

  storage::Registry* registry_;
};

}  // namespace gcl::server
