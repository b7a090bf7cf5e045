// gcl.v1.WorkerService for worker agents: Register, Heartbeat, Complete.
// ReportProgress and UploadCheckpoint are not implemented yet (UNIMPLEMENTED).
#pragma once

#include <grpcpp/grpcpp.h>

#include "gcl/v1/worker.grpc.pb.h"
#include "server/control_plane.h"

namespace gcl::server {

class WorkerServiceImpl final : public gcl::v1::WorkerService::Service {
 public:
  // REQUIRES: plane outlives this.
  explicit WorkerServiceImpl(ControlPlane* plane) : plane_(plane) {}

  // Upserts the worker ALIVE with devices = devices_size() and a fresh lease;
  // replies lease and heartbeat periods (heartbeat = lease / 3, >= 1 s).
  grpc::Status Register(grpc::ServerContext* ctx, const gcl::v1::RegisterRequest* req,
                        gcl::v1::RegisterResponse* resp) override;
  // Renews the lease in memory (NOT_FOUND: register first;
  // FAILED_PRECONDITION: it was LOST, register again) and returns the
  // attempts started on this worker and the jobs it must stop. Schedules
  // only when the plan is stale and this worker has free devices.
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const gcl::v1::HeartbeatRequest* req,
                         gcl::v1::HeartbeatResponse* resp) override;
  // Closes the attempt: exit 0 without signal -> SUCCEEDED; otherwise FAILED
  // (requeued while attempts remain); a CANCELLING job ends CANCELLED.
  // FAILED_PRECONDITION for a stale attempt (the agent stops caring).
  grpc::Status Complete(grpc::ServerContext* ctx, const gcl::v1::CompleteRequest* req,
                        gcl::v1::CompleteResponse* resp) override;

 private:
  ControlPlane* plane_;
};

}  // namespace gcl::server
