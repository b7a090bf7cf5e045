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

// The file in chunk_bytes chunks (under gRPC's 4 MiB message limit) from
// `offset`; the first message carries the Checkpoint (size, sha256 of the
// whole file, which the receiver checks) and, when offset equals the size,
// no data. INVALID_ARGUMENT: malformed id, offset < 0 or beyond the size;
// NOT_FOUND: unknown or deleted checkpoint; FAILED_PRECONDITION: its upload
// never completed; DATA_LOSS: the file is missing or its size differs from
// the record.
grpc::Status StreamCheckpoint(ControlPlane& plane, const gcl::v1::DownloadCheckpointRequest& req,
                              grpc::ServerWriterInterface<gcl::v1::CheckpointChunk>* writer,
                              int64_t chunk_bytes = int64_t{1} << 20);

}  // namespace gcl::server
