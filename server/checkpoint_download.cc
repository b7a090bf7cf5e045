#include "server/checkpoint_download.h"

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"

namespace gcl::server {

grpc::Status StreamCheckpoint(ControlPlane& plane, const gcl::v1::DownloadCheckpointRequest& req,
                              grpc::ServerWriterInterface<gcl::v1::CheckpointChunk>* writer,
                              int64_t chunk_bytes) {
  absl::StatusOr<int64_t> id = storage::ParseCheckpointId(req.id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  absl::StatusOr<storage::CheckpointRecord> rec = plane.registry().GetCheckpoint(*id);
  if (!rec.ok()) return ToGrpcStatus(rec.status());
  if (rec->state != storage::CheckpointState::kCompleted) {
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("checkpoint ", req.id(), " is ", Sv(storage::ToString(rec->state)),
                                     " (released by retention or never completed)"));
  }
  if (req.offset() < 0 || req.offset() > rec->bytes) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        absl::StrCat("offset ", req.offset(), " is outside the checkpoint's ",
                                     rec->bytes, " bytes"));
  }
  // A resumed download only gets the tail: verify the whole file first so a
  // corrupt store is never served.
  if (absl::Status s = plane.artifacts().Verify(rec->path, rec->sha256); !s.ok()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint ", req.id(), ": ", s.message()));
  }
  gcl::v1::CheckpointChunk chunk;
  gcl::v1::Checkpoint* c = chunk.mutable_checkpoint();
  c->set_id(req.id());
  c->set_job_id(rec->job_id);
  c->set_attempt(rec->attempt);
  c->set_step(rec->step);
  c->set_size_bytes(rec->bytes);
  c->set_sha256(rec->sha256);
  c->set_metric_name(rec->metric_name);
  c->set_metric_value(rec->metric_value.value_or(0.0));
  c->set_created_ms(rec->created_ms);
  int64_t offset = req.offset();
  do {
    absl::StatusOr<std::string> data = plane.artifacts().ReadChunk(
        rec->path, offset, std::max<int64_t>(1, std::min(chunk_bytes, rec->bytes - offset)));
    if (!data.ok()) return ToGrpcStatus(data.status());
    chunk.set_offset(offset);
    offset += static_cast<int64_t>(data->size());
    chunk.set_data(std::move(*data));
    if (!writer->Write(chunk)) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
    chunk.clear_checkpoint();
  } while (offset < rec->bytes);
  return grpc::Status::OK;
}

}  // namespace gcl::server
