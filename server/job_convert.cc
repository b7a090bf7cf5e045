#include "server/job_convert.h"

#include <algorithm>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "gcl/base/json.h"
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

gcl::v1::Checkpoint ToProtoCheckpoint(const storage::CheckpointRecord& r) {
  gcl::v1::Checkpoint c;
  c.set_id(storage::CheckpointId(r.id));
  c.set_job_id(r.job_id);
  c.set_attempt(r.attempt);
  c.set_step(r.step);
  c.set_size_bytes(r.bytes);
  c.set_sha256(r.sha256);
  c.set_metric_name(r.metric_name);
  if (r.metric_value.has_value()) c.set_metric_value(*r.metric_value);
  c.set_created_ms(r.created_ms);
  return c;
}

namespace {

std::string Label(const storage::WorkerRecord& record, std::string_view key) {
  absl::StatusOr<JsonValue> labels = ParseJson(record.labels_json, "workers.labels_json");
  if (!labels.ok()) return "";
  const JsonValue* v = labels->Find(key);
  if (v == nullptr) return "";
  absl::StatusOr<std::string> text = v->AsString();
  return text.ok() ? *text : "";
}

}  // namespace

bool HasCudaDevices(const storage::WorkerRecord& record) {
  // Cheap pre-check: the scheduler asks this for every worker on every pass.
  if (!absl::StrContains(record.labels_json, kDeviceTypeLabel)) return false;
  return Label(record, kDeviceTypeLabel) == "cuda";
}

std::vector<std::string> RegisteredDeviceIds(const storage::WorkerRecord& record) {
  if (!HasCudaDevices(record)) return {};
  return absl::StrSplit(Label(record, kDeviceIdsLabel), ',', absl::SkipEmpty());
}

std::vector<int64_t> MigDeviceIndices(const storage::WorkerRecord& record) {
  // Cheap pre-check, as in HasCudaDevices: asked for every worker on every pass.
  if (!absl::StrContains(record.labels_json, "/mig")) return {};
  const std::vector<std::string> ids = RegisteredDeviceIds(record);
  std::vector<int64_t> out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (absl::StrContains(ids[i], "/mig")) out.push_back(static_cast<int64_t>(i));
  }
  return out;
}

std::vector<std::string> ToRegisteredDeviceIds(const storage::WorkerRecord& record,
                                               const std::vector<std::string>& ids) {
  const std::vector<std::string> registered = RegisteredDeviceIds(record);
  std::vector<std::string> out;
  for (const std::string& id : ids) {
    size_t n = 0;
    if (absl::StartsWith(id, "dev:") && absl::SimpleAtoi(id.substr(4), &n) &&
        n < registered.size()) {
      out.push_back(registered[n]);
    } else {
      out.push_back(id);
    }
  }
  return out;
}

gcl::v1::Worker ToProtoWorker(const storage::WorkerRecord& r,
                              const std::vector<std::string>& running_job_ids) {
  gcl::v1::Worker w;
  // labels_json is a flat JSON object of strings: parse it as the map field.
  if (!google::protobuf::util::JsonStringToMessage("{\"labels\":" + r.labels_json + "}", &w).ok()) {
    w.clear_labels();
  }
  w.set_id(r.id);
  w.set_hostname(r.address);
  const std::vector<std::string> ids = RegisteredDeviceIds(r);
  if (!ids.empty()) {
    const std::vector<std::string> names =
        absl::StrSplit(Label(r, kDeviceNamesLabel), ';');
    for (size_t i = 0; i < ids.size(); ++i) {
      gcl::v1::Device* d = w.add_devices();
      d->set_id(ids[i]);
      d->set_type(absl::StartsWith(ids[i], "cuda:") ? gcl::v1::DEVICE_TYPE_CUDA
                                                    : gcl::v1::DEVICE_TYPE_CPU);
      if (i < names.size()) d->set_name(names[i]);
    }
  } else {
    for (int64_t i = 0; i < r.devices; ++i) {
      gcl::v1::Device* d = w.add_devices();
      d->set_id("cpu:" + std::to_string(i));
      d->set_type(gcl::v1::DEVICE_TYPE_CPU);
    }
  }
  if (w.devices_size() > 0) w.mutable_devices(0)->set_memory_bytes(r.memory_bytes);
  w.set_state(r.state == storage::WorkerState::kLost ? gcl::v1::WORKER_STATE_LOST
                                                     : gcl::v1::WORKER_STATE_READY);
  w.set_lease_expiry_ms(r.lease_expiry_ms);
  for (const std::string& id : running_job_ids) w.add_running_job_ids(id);
  return w;
}

std::vector<gcl::v1::ResultCell> ToResultCells(const std::string& job_id,
                                               const std::vector<storage::ResultSummary>& rows) {
  std::vector<gcl::v1::ResultCell> cells;
  std::map<std::pair<std::string, int64_t>, size_t> index;
  std::vector<bool> has_mean;  // per cell: its repeats come from the "mean" row
  for (const storage::ResultSummary& s : rows) {
    auto [it, added] = index.emplace(std::make_pair(s.variant, int64_t{s.m_lab}), cells.size());
    if (added) {
      has_mean.push_back(false);
      cells.emplace_back();
      cells.back().set_job_id(job_id);
      cells.back().set_variant(s.variant);
      cells.back().set_labeled_volumes(s.m_lab);
    }
    gcl::v1::ResultCell& cell = cells[it->second];
    if (s.class_name == "mean") {
      has_mean[it->second] = true;
      cell.set_repeats(s.repeats);
      cell.set_dice_mean(s.dice_mean);
      cell.set_dice_std(s.dice_std);
      if (s.hd95_mean.has_value()) cell.set_hd95_mean(*s.hd95_mean);
    } else {
      gcl::v1::ClassDice* c = cell.add_classes();
      c->set_class_name(s.class_name);
      c->set_mean(s.dice_mean);
      c->set_std(s.dice_std);
      if (!has_mean[it->second]) cell.set_repeats(std::max(cell.repeats(), s.repeats));
    }
  }
  return cells;
}

}  // namespace gcl::server
