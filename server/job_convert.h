// Registry records -> gcl.v1 wire messages (job.proto).
#pragma once

#include "absl/status/statusor.h"
#include "gcl/v1/job.pb.h"
#include "storage/registry.h"

namespace gcl::server {

gcl::v1::JobState ToProto(storage::JobState state);
// kInvalidArgument for JOB_STATE_UNSPECIFIED or an unknown value.
absl::StatusOr<storage::JobState> FromProto(gcl::v1::JobState state);

// The Job message of a record: spec parsed from spec_blob, progress, times.
// queue_position and worker_id are filled by the caller (they need the
// queue and the attempts).
gcl::v1::Job ToProtoJob(const storage::JobRecord& record);

// A registry event as a wire event; kinds "submitted", "state" and "reason"
// become StateChange; false for kinds this slice does not stream.
bool ToProtoEvent(const storage::JobEvent& event, gcl::v1::JobEvent* out);

}  // namespace gcl::server
