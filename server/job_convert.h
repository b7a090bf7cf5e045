// Registry records -> gcl.v1 wire messages (job.proto).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "gcl/v1/job.pb.h"
#include "google/protobuf/message.h"
#include "storage/registry.h"

namespace gcl::server {

gcl::v1::JobState ToProto(storage::JobState state);
// kInvalidArgument for JOB_STATE_UNSPECIFIED or an unknown value.
absl::StatusOr<storage::JobState> FromProto(gcl::v1::JobState state);

// The Job message of a record: spec parsed from spec_blob, progress, times.
// queue_position and worker_id are filled by the caller (they need the
// queue and the attempts).
gcl::v1::Job ToProtoJob(const storage::JobRecord& record);

// Event kinds the coordinator appends for its trainers' reports; the
// payload is the message in protobuf JSON (Progress, MetricsPoint, LogLine,
// Checkpoint). The registry's own kinds ("submitted", "state", "reason")
// become StateChange.
inline constexpr char kProgressEvent[] = "progress";
inline constexpr char kMetricsEvent[] = "metrics";
inline constexpr char kLogEvent[] = "log";
inline constexpr char kCheckpointEvent[] = "checkpoint";

// The payload_json of a report event.
std::string EventPayload(const google::protobuf::Message& message);

// A registry event as a wire event; false for kinds that are not streamed
// (e.g. "retention") or a payload that does not parse.
bool ToProtoEvent(const storage::JobEvent& event, gcl::v1::JobEvent* out);

// The wire descriptor of a checkpoint row (id "c-" + 12 hex).
gcl::v1::Checkpoint ToProtoCheckpoint(const storage::CheckpointRecord& record);

// Worker labels under which the coordinator keeps what a worker with CUDA
// devices registered (the registry's workers table keeps only a count):
// "device_type" = "cuda", "device_ids" = "cuda:0,cuda:2" (registration
// order), "device_names" = the names joined by ";". CPU workers have none.
inline constexpr char kDeviceTypeLabel[] = "device_type";
inline constexpr char kDeviceIdsLabel[] = "device_ids";
inline constexpr char kDeviceNamesLabel[] = "device_names";

// Whether a worker registered CUDA devices (its labels say so).
bool HasCudaDevices(const storage::WorkerRecord& record);
// The registered device ids of a CUDA worker, in registration order; empty
// for a CPU worker (whose devices are "dev:N").
std::vector<std::string> RegisteredDeviceIds(const storage::WorkerRecord& record);
// The indices, ascending, of the registered devices that are MIG instances
// (ids "cuda:<i>/mig<k>", see gcl.v1.Device).
std::vector<int64_t> MigDeviceIndices(const storage::WorkerRecord& record);
// The registry's "dev:N" ids of an attempt member as the worker's registered
// ids ("cuda:2" is its N-th registered device); ids of a CPU worker, or
// beyond what it registered, stay as they are.
std::vector<std::string> ToRegisteredDeviceIds(const storage::WorkerRecord& record,
                                               const std::vector<std::string>& ids);

// The wire worker: hostname = the registered address; its registered
// devices (ids, types and names) when it has CUDA devices, else one Device
// "cpu:i" per registered device (the registry keeps only the count); memory
// on the first; labels parsed from labels_json; ALIVE -> READY.
gcl::v1::Worker ToProtoWorker(const storage::WorkerRecord& record,
                              const std::vector<std::string>& running_job_ids);

// Result cells of one job (or experiment): one per (variant, labeled
// volumes) in the summaries' order; dice/hd95 from the class "mean" rows,
// the other classes as ClassDice (a cell without "mean" rows keeps dice and
// hd95 at 0 and repeats from its classes). hd95_unit stays empty: the
// registry does not record it.
std::vector<gcl::v1::ResultCell> ToResultCells(const std::string& job_id,
                                               const std::vector<storage::ResultSummary>& rows);

}  // namespace gcl::server
