// gcl.v1.JobService for clients (gclctl): the write side (SubmitJob,
// CancelJob) and the read side (GetJob, ListJobs, WatchJob, StreamLogs,
// ListCheckpoints, DownloadCheckpoint, ListResults, ListWorkers). Sync gRPC
// API: unary calls, and one server thread per open stream; WatchJob and
// StreamLogs poll the registry's event log every poll_ms, so a reconnecting
// client resumes from the seq it last saw and misses nothing.
// The read-side handlers live in job_service_read.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>

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
  // State changes, progress and checkpoint events always; metrics only with
  // include_metrics, log lines only with include_logs.
  grpc::Status WatchJob(grpc::ServerContext* ctx, const gcl::v1::WatchJobRequest* req,
                        grpc::ServerWriter<gcl::v1::JobEvent>* writer) override;

  // The job's log lines (LogLine.seq set) after after_seq, of one attempt
  // (attempt > 0) or all; with follow, then new ones until the job is
  // terminal (OK), the client cancels (CANCELLED) or shutdown (UNAVAILABLE).
  // NOT_FOUND for an unknown job; INVALID_ARGUMENT for a negative attempt
  // or after_seq.
  grpc::Status StreamLogs(grpc::ServerContext* ctx, const gcl::v1::StreamLogsRequest* req,
                          grpc::ServerWriter<gcl::v1::LogLine>* writer) override;
  // The job's checkpoints that retention has not deleted, by step.
  // NOT_FOUND for an unknown job; INVALID_ARGUMENT for an empty job_id.
  grpc::Status ListCheckpoints(grpc::ServerContext* ctx, const gcl::v1::ListCheckpointsRequest* req,
                               gcl::v1::ListCheckpointsResponse* resp) override;
  // StreamCheckpoint (checkpoint_download.h).
  grpc::Status DownloadCheckpoint(grpc::ServerContext* ctx,
                                  const gcl::v1::DownloadCheckpointRequest* req,
                                  grpc::ServerWriter<gcl::v1::CheckpointChunk>* writer) override;
  // Dice tables: job_id set: the job's (or its experiment children's)
  // cells, possibly none; NOT_FOUND for an unknown job. Empty: the cells of
  // every SUCCEEDED job with results (experiment children folded into their
  // experiment), newest job first, each cell's job_id set.
  grpc::Status ListResults(grpc::ServerContext* ctx, const gcl::v1::ListResultsRequest* req,
                           gcl::v1::ListResultsResponse* resp) override;
  // Every registered worker (LOST ones too) by id, with its running jobs.
  grpc::Status ListWorkers(grpc::ServerContext* ctx, const gcl::v1::ListWorkersRequest* req,
                           gcl::v1::ListWorkersResponse* resp) override;

 private:
  absl::Status CheckInitJob(const storage::NewJob& job);
  // Replays the job's events after after_seq through emit (false: the reader
  // went away), then with follow polls for new ones until the job is
  // terminal, the client cancels or the coordinator stops.
  grpc::Status FollowEvents(grpc::ServerContext* ctx, const std::string& job_id, int64_t after_seq,
                            bool follow, const std::function<bool(const storage::JobEvent&)>& emit);

  ControlPlane* plane_;
  const std::atomic<bool>* stopping_;
  int poll_ms_;
};

}  // namespace gcl::server
