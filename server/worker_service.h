// gcl.v1.WorkerService for worker agents: Register, Heartbeat, the reports
// of running attempts (ReportProgress, UploadCheckpoint) and Complete.
// Reports of an attempt that is not the job's current one are refused with
// FAILED_PRECONDITION (the agent then stops that trainer).
#pragma once

#include <grpcpp/grpcpp.h>

#include "gcl/v1/worker.grpc.pb.h"
#include "server/control_plane.h"

namespace gcl::server {

class WorkerServiceImpl final : public gcl::v1::WorkerService::Service {
 public:
  // REQUIRES: plane outlives this. keep_checkpoints: retention keeps the
  // newest this many of a job (>= 1) and the best by metric.
  explicit WorkerServiceImpl(ControlPlane* plane, int keep_checkpoints = 3)
      : plane_(plane), keep_checkpoints_(keep_checkpoints) {}

  // Upserts the worker ALIVE with devices = devices_size(), its advertised
  // address and rendezvous ports and a fresh lease; a gang member it no
  // longer runs (restarted agent) ends that gang's attempt. Replies lease
  // and heartbeat periods (heartbeat = lease / 3, >= 1 s).
  grpc::Status Register(grpc::ServerContext* ctx, const gcl::v1::RegisterRequest* req,
                        gcl::v1::RegisterResponse* resp) override;
  // Renews the lease in memory (NOT_FOUND: register first;
  // FAILED_PRECONDITION: it was LOST, register again) and returns the
  // attempts started on this worker and the jobs it must stop. Schedules
  // only when the plan is stale and this worker has free devices.
  grpc::Status Heartbeat(grpc::ServerContext* ctx, const gcl::v1::HeartbeatRequest* req,
                         gcl::v1::HeartbeatResponse* resp) override;
  // Progress -> the job's progress columns and a "progress" event (eta
  // filled in from step time when absent); metrics -> a "metrics" event;
  // log lines -> a "log" event and the attempt's log file.
  grpc::Status ReportProgress(grpc::ServerContext* ctx,
                              grpc::ServerReader<gcl::v1::ProgressReport>* reader,
                              gcl::v1::ReportProgressResponse* resp) override;
  // Streams the file into the artifact store (atomic, sha256 checked:
  // DATA_LOSS and nothing stored on mismatch), records it, applies retention
  // (files of released checkpoints are removed) and returns its record.
  grpc::Status UploadCheckpoint(grpc::ServerContext* ctx,
                                grpc::ServerReader<gcl::v1::CheckpointUpload>* reader,
                                gcl::v1::UploadCheckpointResponse* resp) override;
  // The checkpoint an assignment resumes or initialises from
  // (StreamCheckpoint's contract).
  grpc::Status DownloadCheckpoint(grpc::ServerContext* ctx,
                                  const gcl::v1::DownloadCheckpointRequest* req,
                                  grpc::ServerWriter<gcl::v1::CheckpointChunk>* writer) override;
  // Closes the worker's member of the attempt (Registry::FinishMember): exit
  // 0 without signal -> the member SUCCEEDED, the job when it was the last
  // member; otherwise the whole attempt FAILED (requeued while attempts
  // remain; the gang's other members are told to stop); a CANCELLING job
  // ends CANCELLED.
  // FAILED_PRECONDITION for a stale attempt (the agent stops caring).
  // case_results of a succeeded attempt are stored first (all or none).
  grpc::Status Complete(grpc::ServerContext* ctx, const gcl::v1::CompleteRequest* req,
                        gcl::v1::CompleteResponse* resp) override;

 private:
  // OK when attempt is the job's current attempt and it is RUNNING or
  // CANCELLING; FAILED_PRECONDITION (stale) or NOT_FOUND otherwise.
  grpc::Status CheckCurrent(const std::string& job_id, int32_t attempt);

  ControlPlane* plane_;
  int keep_checkpoints_;
};

}  // namespace gcl::server
