#include "server/job_convert.h"

#include <string>

#include "google/protobuf/util/json_util.h"

namespace gcl::server {
namespace {

gcl::v1::JobState StateFromText(const std::string& text) {
  if (text.empty()) return gcl::v1::JOB_STATE_UNSPECIFIED;
  auto state = storage::ParseJobState(text);
  return state.ok() ? ToProto(*state) : gcl::v1::JOB_STATE_UNSPECIFIED;
}

}  // namespace

gcl::v1::JobState ToProto(storage::JobState state) {
  // The wire enum is the registry's shifted by one (0 is UNSPECIFIED).
  return static_cast<gcl::v1::JobState>(static_cast<int>(state) + 1);
}

absl::StatusOr<storage::JobState> FromProto(gcl::v1::JobState state) {
  const int v = static_cast<int>(state) - 1;
  if (v < 0 || v >= storage::kNumJobStates) {
    return absl::InvalidArgumentError("state: must be one of QUEUED, SCHEDULED, RUNNING, CANCELLING, "
                                      "SUCCEEDED, FAILED, CANCELLED");
  }
  return static_cast<storage::JobState>(v);
}

gcl::v1::Job ToProtoJob(const storage::JobRecord& r) {
  gcl::v1::Job job;
  job.set_id(r.id);
  job.set_name(r.name);
  job.set_owner(r.owner);
  job.mutable_spec()->ParseFromString(r.spec_blob);  // our own bytes; a failure leaves it empty
  job.set_state(ToProto(r.state));
  job.set_reason(r.reason);
  job.set_attempt(r.attempt);
  job.set_max_attempts(r.max_attempts);
  job.mutable_progress()->set_step(r.progress_step);
  job.mutable_progress()->set_total_steps(r.progress_total);
  job.set_created_ms(r.created_ms);
  job.set_updated_ms(r.updated_ms);
  job.set_parent_id(r.parent_id);
  return job;
}

std::string EventPayload(const google::protobuf::Message& message) {
  std::string json;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok()) return "{}";
  return json;
}

bool ToProtoEvent(const storage::JobEvent& e, gcl::v1::JobEvent* out) {
  out->Clear();
  out->set_seq(e.seq);
  out->set_job_id(e.job_id);
  out->set_time_ms(e.at_ms);
  auto parse = [&](google::protobuf::Message* m) {
    return google::protobuf::util::JsonStringToMessage(e.payload_json, m).ok();
  };
  if (e.kind == kProgressEvent) return parse(out->mutable_progress());
  if (e.kind == kMetricsEvent) return parse(out->mutable_metrics());
  if (e.kind == kLogEvent) return parse(out->mutable_log());
  if (e.kind == kCheckpointEvent) {
    // Registry::AddCheckpoint's own event carries only its id and step.
    gcl::v1::Checkpoint* c = out->mutable_checkpoint();
    if (!parse(c)) return false;
    c->set_job_id(e.job_id);
    return true;
  }
  if (e.kind != "submitted" && e.kind != "state" && e.kind != "reason") return false;
  gcl::v1::StateChange* change = out->mutable_state();
  change->set_from(StateFromText(e.from_state));
  change->set_to(StateFromText(e.to_state));
  change->set_reason(e.reason);
  change->set_attempt(e.attempt);
  return true;
}

}  // namespace gcl::server
