// DownloadCheckpoint for both services (users through JobService, agents
// resuming an attempt through WorkerService): the stored file in chunks from
// an offset, the descriptor in the first message.
#pragma once

#include <cstdint>

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/sync_stream.h>

#include "gcl/v1/job.pb.h"
#include "server/control_plane.h"

namespace gcl::server {

// INVALID_ARGUMENT for a malformed id or an offset outside [0, size];
// NOT_FOUND for an unknown or released checkpoint; DATA_LOSS when its file
// is missing or no longer matches its sha256 (checked before the first byte
// is sent).
grpc::Status StreamCheckpoint(ControlPlane& plane, const gcl::v1::DownloadCheckpointRequest& req,
                              grpc::ServerWriterInterface<gcl::v1::CheckpointChunk>* writer,
                              int64_t chunk_bytes = int64_t{1} << 20);

}  // namespace gcl::server
