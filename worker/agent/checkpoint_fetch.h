// Brings a coordinator-held checkpoint onto this worker for an attempt to
// resume or initialise from (workers share no filesystem with it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "gcl/v1/worker.grpc.pb.h"
#include "grpcpp/grpcpp.h"

namespace gcl::agent {

// Downloads checkpoint `id` ("c-...") into dir/step-XXXXXXXX.ckpt (the name
// gcl-train looks for) with its "<sha256>  <name>" sidecar, checking the
// sha256 while it streams; the file appears under its final name only when
// complete and verified. setup adds credentials/deadline to each context.
// Returns the file's path. DATA_LOSS on a digest mismatch; the RPC's error
// otherwise (naming the checkpoint).
absl::StatusOr<std::string> FetchCheckpoint(
    gcl::v1::WorkerService::StubInterface& stub,
    const std::function<void(grpc::ClientContext*)>& setup, const std::string& id,
    const std::string& dir);

}  // namespace gcl::agent
