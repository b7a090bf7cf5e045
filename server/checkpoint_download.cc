#include "server/checkpoint_download.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"

namespace gcl::server {

grpc::Status StreamCheckpoint(ControlPlane& plane, const gcl::v1::DownloadCheckpointRequest& request,
                              grpc::ServerWriterInterface<gcl::v1::CheckpointChunk>* writer,
                              int64_t chunk_bytes) {
  const gcl::v1::DownloadCheckpointRequest* req = &request;
  absl::StatusOr<int64_t> id = storage::ParseCheckpointId(req->id());
  if (!id.ok()) return ToGrpcStatus(id.status());
  absl::StatusOr<storage::CheckpointRecord> rec = plane.registry().GetCheckpoint(*id);
  if (!rec.ok()) {
    if (rec.status().code() != absl::StatusCode::kNotFound) return ToGrpcStatus(rec.status());
    return grpc::Status(grpc::StatusCode::NOT_FOUND,
                        absl::StrCat("checkpoint ", req->id(), " not found"));
  }
  switch (rec->state) {
    case storage::CheckpointState::kDeleted:
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("checkpoint ", req->id(), " of job ", rec->job_id,
                                       " was deleted by checkpoint retention"));
    case storage::CheckpointState::kActive:
    case storage::CheckpointState::kError:
      return grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat("checkpoint ", req->id(), " is ", Sv(storage::ToString(rec->state)),
                       ": its upload did not complete"));
    case storage::CheckpointState::kCompleted:
      break;
  }
  storage::ArtifactStore& store = plane.artifacts();
  absl::StatusOr<int64_t> size = store.FileSize(rec->path);
  if (!size.ok()) {
    if (size.status().code() != absl::StatusCode::kNotFound) return ToGrpcStatus(size.status());
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint ", req->id(), ": its file ", rec->path,
                                     " is missing from the artifact store"));
  }
  if (*size != rec->bytes) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint ", req->id(), ": its file ", rec->path, " has ",
                                     *size, " bytes, the registry recorded ", rec->bytes));
  }
  if (req->offset() < 0 || req->offset() > *size) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, absl::StrCat("offset: ", req->offset(), " is outside checkpoint ", req->id(),
                                " (", *size, " bytes)"));
  }
  gcl::v1::CheckpointChunk chunk;
  *chunk.mutable_checkpoint() = ToProtoCheckpoint(*rec);
  int64_t offset = req->offset();
  do {
    absl::StatusOr<std::string> data = store.ReadChunk(rec->path, offset, chunk_bytes);
    if (!data.ok()) {
      if (data.status().code() != absl::StatusCode::kNotFound) return ToGrpcStatus(data.status());
      return grpc::Status(
          grpc::StatusCode::DATA_LOSS,
          absl::StrCat("checkpoint ", req->id(), ": its file vanished during the download"));
    }
    if (data->empty() && offset < *size) {
      return grpc::Status(
          grpc::StatusCode::DATA_LOSS,
          absl::StrCat("checkpoint ", req->id(), ": its file shrank during the download"));
    }
    chunk.set_offset(offset);
    offset += static_cast<int64_t>(data->size());
    chunk.set_data(std::move(*data));
    if (!writer->Write(chunk))
      return grpc::Status(grpc::StatusCode::CANCELLED, "downloader went away");
    chunk.clear_checkpoint();
  } while (offset < *size);
  return grpc::Status::OK;
}

}  // namespace gcl::server
