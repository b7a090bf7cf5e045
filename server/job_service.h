// gcl.v1.JobService for clients (gclctl): SubmitJob, GetJob, ListJobs,
// CancelJob, WatchJob. Sync gRPC API (unary admin calls; WatchJob holds one
// server thread per watcher and polls the event log every poll_ms).
// StreamLogs, ListCheckpoints, DownloadCheckpoint and ListResults are not
// implemented yet (UNIMPLEMENTED from the generated base class).
#pragma once

#include <atomic>
#include <cstdint>

#include <grpcpp/grpcpp.h>

#include "gcl/v1/job.grpc.pb.h"
#include "server/control_plane.h"

namespace gcl::server {

class JobServiceImpl final : public gcl::v1::JobService::Service {
 public:
  // REQUIRES: plane and stopping outlive this. WatchJob streams end with
  // UNAVAILABLE once *stopping is true (graceful shutdown).
  JobServiceImpl(ControlPlane* plane, const std::atomic<bool>* stopping, int poll_ms = 100)
      : plane_(plane), stopping_(stopping), poll_ms_(poll_ms) {}

  // spec_yaml (messages quote "spec.yaml:LINE:COL: key: what") or spec
  // (defaults applied, validated); INVALID_ARGUMENT names the field. The job
  // is in SQLite (FULL sync; concurrent submits share one commit) before the
  // reply; it comes back QUEUED with its reason (from the capacity the last
  // scheduling pass left; refined by the next pass) and queue position.
  grpc::Status SubmitJob(grpc::ServerContext* ctx, const gcl::v1::SubmitJobRequest* req,
                         gcl::v1::SubmitJobResponse* resp) override;
  grpc::Status GetJob(grpc::ServerContext* ctx, const gcl::v1::GetJobRequest* req,
                      gcl::v1::Job* resp) override;
  // Newest first; states/owner/kind filters; page_size default 50.
  grpc::Status ListJobs(grpc::ServerContext* ctx, const gcl::v1::ListJobsRequest* req,
                        gcl::v1::ListJobsResponse* resp) override;
  // QUEUED/SCHEDULED -> CANCELLED at once; RUNNING -> CANCELLING (the worker
  // is told at its next heartbeat); CANCELLING/CANCELLED: returned as is;
  // SUCCEEDED/FAILED: FAILED_PRECONDITION.
  grpc::Status CancelJob(grpc::ServerContext* ctx, const gcl::v1::CancelJobRequest* req,
                         gcl::v1::CancelJobResponse* resp) override;
  // Replays the job's state events after after_seq, then follows new ones
  // until the job is terminal (OK), the client cancels, or shutdown.
  grpc::Status WatchJob(grpc::ServerContext* ctx, const gcl::v1::WatchJobRequest* req,
                        grpc::ServerWriter<gcl::v1::JobEvent>* writer) override;

 private:
  ControlPlane* plane_;
  const std::atomic<bool>* stopping_;
  int poll_ms_;
};

}  // namespace gcl::server
