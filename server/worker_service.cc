#include "server/worker_service.h"

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gcl/base/json.h"
#include "server/checkpoint_download.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"
#include "server/metric_summaries.h"

namespace gcl::server {
namespace {

std::string LogFileLine(const gcl::v1::LogLine& line) {
  return absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::FromUnixMillis(line.time_ms()),
                                       absl::UTCTimeZone()),
                      " [", line.stream(), "] ", line.text(), "\n");
}

// The agent's labels plus its metrics address (read by the Prometheus
// file-SD writer, coordinator_metrics.h), as a flat JSON object.
std::string WorkerLabelsJson(const gcl::v1::RegisterRequest& req) {
  std::map<std::string, std::string> labels(req.labels().begin(), req.labels().end());
  if (!req.metrics_address().empty()) labels["metrics_address"] = req.metrics_address();
  // A worker with GPUs: its device ids (assignments name them) and names.
  bool cuda = false;
  std::vector<std::string> ids, names;
  for (const gcl::v1::Device& d : req.devices()) {
    cuda = cuda || d.type() == gcl::v1::DEVICE_TYPE_CUDA;
    ids.push_back(d.id());
    names.push_back(d.name());
  }
  if (cuda) {
    labels[kDeviceTypeLabel] = "cuda";
    labels[kDeviceIdsLabel] = absl::StrJoin(ids, ",");
    labels[kDeviceNamesLabel] = absl::StrJoin(names, ";");
  }
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    absl::StrAppend(&out, out.size() > 1 ? "," : "", JsonQuote(k), ":", JsonQuote(v));
  }
  return out + "}";
}

}  // namespace

grpc::Status WorkerServiceImpl::CheckCurrent(const std::string& job_id, int32_t attempt) {
  absl::StatusOr<storage::JobRecord> job = plane_->registry().GetJob(job_id);
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (job->attempt != attempt ||
      (job->state != storage::JobState::kRunning && job->state != storage::JobState::kCancelling)) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        absl::StrCat("attempt ", attempt, " of job ", job_id,
                                     " is not running (job is ", Sv(storage::ToString(job->state)),
                                     " at attempt ", job->attempt, "): stop it"));
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::ReportProgress(grpc::ServerContext*,
                                               grpc::ServerReader<gcl::v1::ProgressReport>* reader,
                                               gcl::v1::ReportProgressResponse*) {
  storage::Registry& reg = plane_->registry();
  gcl::v1::ProgressReport report;
  std::string checked_job;  // the (job, attempt) last found current
  int32_t checked_attempt = -1;
  while (reader->Read(&report)) {
    if (report.job_id() != checked_job || report.attempt() != checked_attempt) {
      if (grpc::Status s = CheckCurrent(report.job_id(), report.attempt()); !s.ok()) return s;
      checked_job = report.job_id();
      checked_attempt = report.attempt();
    }
    absl::Status s;
    switch (report.report_case()) {
      case gcl::v1::ProgressReport::kProgress: {
        gcl::v1::Progress* p = report.mutable_progress();
        if (p->eta_seconds() <= 0 && p->step_seconds() > 0 && p->total_steps() > p->step()) {
          p->set_eta_seconds(p->step_seconds() * static_cast<double>(p->total_steps() - p->step()));
        }
        s = reg.SetProgress(report.job_id(), p->step(), p->total_steps());
        if (s.ok()) s = reg.AppendEvent(report.job_id(), kProgressEvent, "", EventPayload(*p)).status();
        break;
      }
      case gcl::v1::ProgressReport::kMetrics:
        s = reg.AppendEvent(report.job_id(), kMetricsEvent, "", EventPayload(report.metrics())).status();
        break;
      case gcl::v1::ProgressReport::kLog: {
        gcl::v1::LogLine* line = report.mutable_log();
        line->set_attempt(report.attempt());
        s = plane_->artifacts().AppendLog(report.job_id(), report.attempt(), LogFileLine(*line));
        if (s.ok()) s = reg.AppendEvent(report.job_id(), kLogEvent, "", EventPayload(*line)).status();
        break;
      }
      default:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "report: one of progress, metrics or log is required");
    }
    if (!s.ok()) return ToGrpcStatus(s);
  }
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::UploadCheckpoint(grpc::ServerContext*,
                                                 grpc::ServerReader<gcl::v1::CheckpointUpload>* reader,
                                                 gcl::v1::UploadCheckpointResponse* resp) {
  gcl::v1::CheckpointUpload msg;
  if (!reader->Read(&msg) || !msg.has_checkpoint()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "the first message must carry the checkpoint descriptor");
  }
  const gcl::v1::Checkpoint desc = msg.checkpoint();
  if (desc.step() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "checkpoint.step: must be >= 0");
  }
  if (grpc::Status s = CheckCurrent(desc.job_id(), desc.attempt()); !s.ok()) return s;
  storage::ArtifactStore& store = plane_->artifacts();
  absl::StatusOr<std::unique_ptr<storage::ArtifactWriter>> writer = store.BeginCheckpoint(
      desc.job_id(), desc.attempt(), absl::StrFormat("step-%08d.ckpt", desc.step()));
  if (!writer.ok()) return ToGrpcStatus(writer.status());
  if (absl::Status s = (*writer)->Append(msg.data()); !s.ok()) return ToGrpcStatus(s);
  while (reader->Read(&msg)) {
    if (absl::Status s = (*writer)->Append(msg.data()); !s.ok()) return ToGrpcStatus(s);
  }
  if (desc.size_bytes() > 0 && (*writer)->bytes_written() != desc.size_bytes()) {
    return grpc::Status(grpc::StatusCode::DATA_LOSS,
                        absl::StrCat("checkpoint upload truncated: ", (*writer)->bytes_written(),
                                     " of ", desc.size_bytes(), " bytes arrived"));
  }
  absl::StatusOr<storage::ArtifactInfo> info = (*writer)->Commit(desc.sha256());
  if (!info.ok()) return ToGrpcStatus(info.status());

  storage::CheckpointRecord rec;
  rec.job_id = desc.job_id();
  rec.attempt = desc.attempt();
  rec.step = desc.step();
  rec.path = info->path;
  rec.sha256 = info->sha256;
  rec.bytes = info->bytes;
  rec.metric_name = desc.metric_name();
  if (!desc.metric_name().empty()) rec.metric_value = desc.metric_value();
  storage::Registry& reg = plane_->registry();
  absl::StatusOr<storage::CheckpointRecord> stored = reg.AddCheckpoint(rec);
  if (!stored.ok()) return ToGrpcStatus(stored.status());
  // Retention failures leave extra files, never fewer: the upload stands.
  const bool higher_is_better = !absl::StrContains(desc.metric_name(), "loss");
  absl::StatusOr<std::vector<storage::CheckpointRecord>> released =
      reg.ApplyRetention(desc.job_id(), keep_checkpoints_, higher_is_better);
  if (released.ok()) {
    for (const storage::CheckpointRecord& r : *released) (void)store.Remove(r.path);
  }
  gcl::v1::Checkpoint* out = resp->mutable_checkpoint();
  *out = desc;
  out->set_id(storage::CheckpointId(stored->id));
  out->set_size_bytes(stored->bytes);
  out->set_sha256(stored->sha256);
  out->set_created_ms(stored->created_ms);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext*, const gcl::v1::RegisterRequest* req,
                                         gcl::v1::RegisterResponse* resp) {
  if (req->worker_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "worker_id: required");
  }
  // Device ids are kept comma-joined (job_convert.h) and name ranks' devices.
  std::set<std::string> ids;
  for (int i = 0; i < req->devices_size(); ++i) {
    const std::string& id = req->devices(i).id();
    if (id.empty() || id.find(',') != std::string::npos || !ids.insert(id).second) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          absl::StrCat("devices[", i, "].id \"", id,
                                       "\": must be non-empty, unique and without commas"));
    }
  }
  storage::Registry& reg = plane_->registry();
  storage::WorkerRecord w;
  w.id = req->worker_id();
  // The rendezvous host of gangs whose rank 0 runs here.
  w.address = req->advertise_address().empty() ? req->hostname() : req->advertise_address();
  if (req->rendezvous_port_min() != 0 || req->rendezvous_port_max() != 0) {
    w.rendezvous_port_min = req->rendezvous_port_min();
    w.rendezvous_port_max = req->rendezvous_port_max();
  }
  w.devices = req->devices_size();
  for (const gcl::v1::Device& d : req->devices()) w.memory_bytes += d.memory_bytes();
  w.labels_json = WorkerLabelsJson(*req);
  w.state = storage::WorkerState::kAlive;
  w.lease_expiry_ms = reg.NowMs() + plane_->lease_ms();
  if (absl::Status s = reg.UpsertWorker(w); !s.ok()) return ToGrpcStatus(s);
  // A restarted agent lost the ranks it ran: a gang cannot go on without them.
  std::vector<std::string> running(req->running_job_ids().begin(), req->running_job_ids().end());
  if (absl::Status s = reg.ReconcileWorker(w.id, running).status(); !s.ok()) return ToGrpcStatus(s);
  // A new worker may unblock queued jobs or make others unsatisfiable.
  (void)plane_->RefreshQueue();
  resp->set_lease_seconds(std::max<int64_t>(1, plane_->lease_ms() / 1000));
  resp->set_heartbeat_seconds(std::max<int64_t>(1, plane_->lease_ms() / 3000));
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::Heartbeat(grpc::ServerContext*, const gcl::v1::HeartbeatRequest* req,
                                          gcl::v1::HeartbeatResponse* resp) {
  // In memory (written back once per sweep); no pass unless the plan is stale.
  absl::StatusOr<int64_t> expiry = plane_->RenewLease(req->worker_id());
  if (!expiry.ok()) return ToGrpcStatus(expiry.status());
  resp->set_lease_expiry_ms(*expiry);
  std::vector<std::string> running(req->running_job_ids().begin(), req->running_job_ids().end());
  std::vector<std::string> missing;
  absl::StatusOr<std::vector<std::string>> cancels = plane_->CancelsFor(req->worker_id(), running, &missing);
  if (!cancels.ok()) return ToGrpcStatus(cancels.status());
  for (const std::string& id : *cancels) resp->add_cancel_job_ids(id);
  for (const std::string& id : missing) {
    absl::StatusOr<gcl::v1::Assignment> again = plane_->ResendAssignment(id, req->worker_id());
    if (again.ok()) *resp->add_assignments() = *std::move(again);  // else it moved on meanwhile
  }
  absl::StatusOr<std::vector<gcl::v1::Assignment>> assigned = plane_->AssignTo(req->worker_id());
  if (!assigned.ok()) return ToGrpcStatus(assigned.status());
  for (gcl::v1::Assignment& a : *assigned) *resp->add_assignments() = std::move(a);
  return grpc::Status::OK;
}

grpc::Status WorkerServiceImpl::DownloadCheckpoint(grpc::ServerContext*,
                                                   const gcl::v1::DownloadCheckpointRequest* req,
                                                   grpc::ServerWriter<gcl::v1::CheckpointChunk>* writer) {
  return StreamCheckpoint(*plane_, *req, writer);
}

grpc::Status WorkerServiceImpl::Complete(grpc::ServerContext*, const gcl::v1::CompleteRequest* req,
                                         gcl::v1::CompleteResponse*) {
  storage::AttemptOutcome outcome;
  if (req->exit_code() == 0 && req->signal() == 0) {
    outcome.state = storage::AttemptState::kSucceeded;
    outcome.exit_code = 0;
    outcome.reason = req->reason().empty() ? "finished" : req->reason();
  } else {
    outcome.state = storage::AttemptState::kFailed;
    outcome.exit_code = req->exit_code();
    outcome.reason = req->signal() != 0
                         ? absl::StrCat("killed by signal ", req->signal())
                         : absl::StrCat("exit code ", req->exit_code());
    if (!req->reason().empty()) absl::StrAppend(&outcome.reason, ": ", req->reason());
  }
  if (outcome.state == storage::AttemptState::kSucceeded && req->case_results_size() > 0) {
    if (grpc::Status s = CheckCurrent(req->job_id(), req->attempt()); !s.ok()) return s;
    std::vector<storage::ResultRecord> rows;
    rows.reserve(req->case_results_size());
    for (const gcl::v1::CaseResult& c : req->case_results()) {
      storage::ResultRecord r;
      r.job_id = req->job_id();
      r.variant = c.variant();
      r.m_lab = static_cast<int32_t>(c.labeled_volumes());
      r.repeat = c.repeat();
      r.case_id = c.case_id();
      r.class_name = c.class_name();
      r.dice = c.dice();
      if (c.has_hd95()) r.hd95 = c.hd95();
      r.n_ref = c.n_ref();
      r.n_pred = c.n_pred();
      rows.push_back(std::move(r));
    }
    if (absl::Status s = plane_->registry().AddResults(rows); !s.ok()) return ToGrpcStatus(s);
  }
  // Each member of a gang reports for itself; an agent that names no worker
  // speaks for the whole attempt.
  absl::StatusOr<storage::JobRecord> job =
      req->worker_id().empty()
          ? plane_->registry().FinishAttempt(req->job_id(), req->attempt(), outcome)
          : plane_->registry().FinishMember(req->job_id(), req->attempt(), req->worker_id(),
                                            outcome);
  if (absl::IsFailedPrecondition(job.status()) && !req->worker_id().empty()) {
    // A draining member (its attempt already ended): its devices are free now.
    (void)plane_->registry().CloseMember(req->job_id(), req->attempt(), req->worker_id(), outcome);
    plane_->RequestRefresh();
  }
  if (!job.ok()) return ToGrpcStatus(job.status());
  // Best effort: the final conflict statistics for `gclctl results`.
  (void)StoreFinalMetricSummaries(plane_->registry(), req->job_id());
  (void)plane_->RefreshQueue();  // its devices are free again
  return grpc::Status::OK;
}

}  // namespace gcl::server
