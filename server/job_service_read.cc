// JobService's read side over the registry and the artifact store:
// StreamLogs, ListCheckpoints, DownloadCheckpoint, ListResults, ListWorkers.
#include "server/job_service.h"

#include <chrono>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "server/checkpoint_download.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"
#include "server/metric_summaries.h"

namespace gcl::server {
namespace {

grpc::Status Invalid(const std::string& message) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
}

// The job's metric summaries, then those of its children (an experiment's
// pre-training jobs), each job's in name order.
grpc::Status AddMetricSummaries(storage::Registry& reg, const storage::JobRecord& job,
                                gcl::v1::ListResultsResponse* resp) {
  std::vector<std::string> ids = {job.id};
  storage::JobFilter filter;
  filter.parent_id = job.id;
  filter.page_size = 1000;
  while (true) {
    absl::StatusOr<storage::JobPage> page = reg.ListJobs(filter);
    if (!page.ok()) return ToGrpcStatus(page.status());
    for (auto it = page->jobs.rbegin(); it != page->jobs.rend(); ++it) ids.push_back(it->id);
    if (page->next_page_token.empty()) break;
    filter.page_token = page->next_page_token;
  }
  for (const std::string& id : ids) {
    absl::StatusOr<std::vector<storage::MetricSummary>> rows = reg.ListMetricSummaries(id);
    if (!rows.ok()) return ToGrpcStatus(rows.status());
    for (const storage::MetricSummary& m : *rows) *resp->add_metric_summaries() = ToProtoMetricSummary(m);
  }
  return grpc::Status::OK;
}

}  // namespace

grpc::Status JobServiceImpl::StreamLogs(grpc::ServerContext* ctx,
                                        const gcl::v1::StreamLogsRequest* req,
                                        grpc::ServerWriter<gcl::v1::LogLine>* writer) {
  if (req->id().empty()) return Invalid("id: required (a job id, j-...)");
  if (req->attempt() < 0)
    return Invalid(absl::StrCat("attempt: must be >= 0, got ", req->attempt()));
  if (req->after_seq() < 0)
    return Invalid(absl::StrCat("after_seq: must be >= 0, got ", req->after_seq()));
  gcl::v1::LogLine line;
  return FollowEvents(ctx, req->id(), req->after_seq(), req->follow(),
                      [&](const storage::JobEvent& e) {
                        if (e.kind != kLogEvent) return true;
                        line.Clear();
                        if (!google::protobuf::util::JsonStringToMessage(e.payload_json, &line).ok()) {
                          return true;
                        }
                        if (line.attempt() == 0) line.set_attempt(e.attempt);
                        if (req->attempt() > 0 && line.attempt() != req->attempt()) return true;
                        if (line.time_ms() == 0) line.set_time_ms(e.at_ms);
                        line.set_seq(e.seq);
                        return writer->Write(line);
                      });
}

grpc::Status JobServiceImpl::ListCheckpoints(grpc::ServerContext*,
                                             const gcl::v1::ListCheckpointsRequest* req,
                                             gcl::v1::ListCheckpointsResponse* resp) {
  if (req->job_id().empty()) return Invalid("job_id: required (a job id, j-...)");
  absl::StatusOr<std::vector<storage::CheckpointRecord>> list =
      plane_->registry().ListCheckpoints(req->job_id());
  if (!list.ok()) return ToGrpcStatus(list.status());
  for (const storage::CheckpointRecord& c : *list) *resp->add_checkpoints() = ToProtoCheckpoint(c);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::DownloadCheckpoint(
    grpc::ServerContext*, const gcl::v1::DownloadCheckpointRequest* req,
    grpc::ServerWriter<gcl::v1::CheckpointChunk>* writer) {
  return StreamCheckpoint(*plane_, *req, writer);
}

grpc::Status JobServiceImpl::ListResults(grpc::ServerContext*,
                                         const gcl::v1::ListResultsRequest* req,
                                         gcl::v1::ListResultsResponse* resp) {
  storage::Registry& reg = plane_->registry();
  std::vector<storage::JobRecord> jobs;
  if (!req->job_id().empty()) {
    absl::StatusOr<storage::JobRecord> rec = reg.GetJob(req->job_id());
    if (!rec.ok()) return ToGrpcStatus(rec.status());
    jobs.push_back(std::move(*rec));
  } else {
    absl::StatusOr<std::vector<storage::JobRecord>> with = reg.JobsWithResults();
    if (!with.ok()) return ToGrpcStatus(with.status());
    for (storage::JobRecord& j : *with) {
      if (j.state == storage::JobState::kSucceeded) jobs.push_back(std::move(j));
    }
  }
  for (const storage::JobRecord& job : jobs) {
    absl::StatusOr<std::vector<storage::ResultSummary>> rows = reg.SummarizeResults(job.id);
    if (!rows.ok()) return ToGrpcStatus(rows.status());
    for (gcl::v1::ResultCell& cell : ToResultCells(job.id, *rows))
      *resp->add_cells() = std::move(cell);
    if (grpc::Status s = AddMetricSummaries(reg, job, resp); !s.ok()) return s;
  }
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext*, const gcl::v1::ListWorkersRequest*,
                                         gcl::v1::ListWorkersResponse* resp) {
  storage::Registry& reg = plane_->registry();
  absl::StatusOr<std::vector<storage::WorkerRecord>> workers = reg.ListWorkers();
  if (!workers.ok()) return ToGrpcStatus(workers.status());
  absl::StatusOr<std::vector<storage::AttemptRecord>> running = reg.ListRunningAttempts();
  if (!running.ok()) return ToGrpcStatus(running.status());
  std::map<std::string, std::vector<std::string>> jobs_of;
  for (const storage::AttemptRecord& a : *running) jobs_of[a.worker_id].push_back(a.job_id);
  for (const storage::WorkerRecord& w : *workers)
    *resp->add_workers() = ToProtoWorker(w, jobs_of[w.id]);
  return grpc::Status::OK;
}

}  // namespace gcl::server
