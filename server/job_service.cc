#include "server/job_service.h"

#include <chrono>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/job_spec_paths.h"
#include "gcl/spec/job_spec_validate.h"
#include "gcl/spec/job_spec_yaml.h"
#include "server/auth_interceptor.h"
#include "server/grpc_status.h"
#include "server/job_convert.h"

namespace gcl::server {
namespace {

using storage::JobState;

absl::StatusOr<storage::NewJob> ToNewJob(const gcl::v1::SubmitJobRequest& req, const std::string& owner) {
  gcl::v1::JobSpec spec;
  if (!req.spec_yaml().empty()) {
    // gclctl replaces the "spec.yaml" prefix with the user's file name.
    GCL_ASSIGN_OR_RETURN(spec, gcl::spec::ParseJobSpecYaml(req.spec_yaml(), "spec.yaml"));
  } else if (req.has_spec()) {
    spec = req.spec();
    GCL_RETURN_IF_ERROR(gcl::spec::ApplyDefaults(&spec));
    GCL_RETURN_IF_ERROR(gcl::spec::ValidateJobSpec(spec));
  } else {
    return absl::InvalidArgumentError("spec: required (send spec or spec_yaml)");
  }
  GCL_RETURN_IF_ERROR(gcl::spec::ResolveSpecPaths(req.spec_dir(), &spec));
  storage::NewJob job;
  const auto* kind = gcl::v1::Kind_descriptor()->FindValueByNumber(spec.kind());
  job.kind = gcl::spec::YamlEnumName(*kind);
  job.name = spec.name().empty() ? job.kind : spec.name();
  job.owner = owner;
  job.priority = spec.priority();
  job.max_attempts = spec.has_max_attempts() ? spec.max_attempts() : 3;
  job.devices = spec.resources().has_devices() ? spec.resources().devices() : 1;
  job.nodes = spec.resources().has_nodes() ? spec.resources().nodes() : 1;
  // Data parallelism is a pre-training feature: fine-tuning and experiments
  // (whose children inherit their resources) run one rank.
  if (job.devices > 1 && spec.kind() != gcl::v1::KIND_PRETRAIN) {
    return absl::InvalidArgumentError(absl::StrCat(
        "resources.devices: kind ", job.kind, " runs on one device, got ", job.devices,
        " (nodes x devices_per_node); only kind pretrain runs on several ranks"));
  }
  job.spec_blob = spec.SerializeAsString();
  job.spec_text = req.spec_yaml().empty() ? spec.DebugString() : req.spec_yaml();
  job.request_id = req.request_id();
  return job;
}

}  // namespace

absl::Status JobServiceImpl::CheckInitJob(const storage::NewJob& job) {
  gcl::v1::JobSpec spec;
  spec.ParseFromString(job.spec_blob);
  return plane_->graph().CheckInitJob(spec);
}

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* ctx,
                                       const gcl::v1::SubmitJobRequest* req,
                                       gcl::v1::SubmitJobResponse* resp) {
  if (stopping_->load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
  absl::StatusOr<Caller> caller = CallerOf(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<storage::NewJob> job = ToNewJob(*req, /*owner=*/caller->user);
  if (!job.ok()) return ToGrpcStatus(job.status());
  if (job->kind == "experiment") job->devices = 0;  // its children hold the devices
  if (absl::Status s = CheckInitJob(*job); !s.ok()) return ToGrpcStatus(s);
  // Group-committed (durable on return); the reason comes from the last
  // plan's leftover capacity and the debounced pass refines it.
  absl::StatusOr<storage::JobRecord> created = plane_->Submit(*std::move(job));
  if (!created.ok()) return ToGrpcStatus(created.status());
  absl::StatusOr<gcl::v1::Job> out = plane_->Describe(*created);
  if (!out.ok()) return ToGrpcStatus(out.status());
  *resp->mutable_job() = std::move(*out);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext*, const gcl::v1::GetJobRequest* req,
                                    gcl::v1::Job* resp) {
  absl::StatusOr<storage::JobRecord> rec = plane_->registry().GetJob(req->id());
  if (!rec.ok()) return ToGrpcStatus(rec.status());
  absl::StatusOr<gcl::v1::Job> out = plane_->Describe(*rec);
  if (!out.ok()) return ToGrpcStatus(out.status());
  *resp = std::move(*out);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext*, const gcl::v1::ListJobsRequest* req,
                                      gcl::v1::ListJobsResponse* resp) {
  storage::JobFilter filter;
  for (int s : req->states()) {
    absl::StatusOr<JobState> state = FromProto(static_cast<gcl::v1::JobState>(s));
    if (!state.ok()) return ToGrpcStatus(state.status());
    filter.states.push_back(*state);
  }
  filter.owner = req->owner();
  if (req->kind() != gcl::v1::JOB_KIND_UNSPECIFIED) {
    static constexpr const char* kKinds[] = {"", "pretrain", "finetune", "experiment"};
    if (req->kind() < 0 || req->kind() > 3) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "kind: unknown job kind");
    }
    filter.kind = kKinds[req->kind()];
  }
  filter.page_size = req->page_size() > 0 ? req->page_size() : 50;
  filter.page_token = req->page_token();
  absl::StatusOr<storage::JobPage> page = plane_->registry().ListJobs(filter);
  if (!page.ok()) return ToGrpcStatus(page.status());
  absl::StatusOr<std::vector<gcl::v1::Job>> jobs = plane_->DescribeAll(page->jobs);
  if (!jobs.ok()) return ToGrpcStatus(jobs.status());
  for (gcl::v1::Job& job : *jobs) *resp->add_jobs() = std::move(job);
  resp->set_next_page_token(page->next_page_token);
  return grpc::Status::OK;
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* ctx,
                                       const gcl::v1::CancelJobRequest* req,
                                       gcl::v1::CancelJobResponse* resp) {
  absl::StatusOr<Caller> caller = CallerOf(ctx);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  storage::Registry& reg = plane_->registry();
  absl::StatusOr<storage::JobRecord> rec = reg.GetJob(req->id());
  if (!rec.ok()) return ToGrpcStatus(rec.status());
  absl::Status may = MayActOnJob(*caller, rec->id, rec->owner, "cancel");
  if (!may.ok()) return ToGrpcStatus(may);
  const std::string reason = req->reason().empty() ? "cancelled by user" : req->reason();
  absl::Status moved;
  switch (rec->state) {
    case JobState::kQueued:
    case JobState::kScheduled:
      moved = reg.Transition(rec->id, JobState::kCancelled, reason);
      break;
    case JobState::kRunning:
      moved = reg.Transition(rec->id, JobState::kCancelling,
                             absl::StrCat(Sv(reason), "; stopping the trainer"), rec->attempt);
      break;
    case JobState::kCancelling:
    case JobState::kCancelled:
      break;
    case JobState::kSucceeded:
    case JobState::kFailed:
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("job ", rec->id, " already ended ", Sv(storage::ToString(rec->state)),
                                       "; nothing to cancel"));
  }
  if (!moved.ok()) return ToGrpcStatus(moved);
  if (rec->kind == "experiment") {
    if (absl::Status s = plane_->graph().CancelChildren(rec->id, reason); !s.ok()) return ToGrpcStatus(s);
  }
  (void)plane_->RefreshQueue();  // positions of the jobs behind it moved; experiments settle
  gcl::v1::GetJobRequest get;
  get.set_id(rec->id);
  return GetJob(nullptr, &get, resp->mutable_job());
}

grpc::Status JobServiceImpl::FollowEvents(grpc::ServerContext* ctx, const std::string& job_id,
                                          int64_t after_seq, bool follow,
                                          const std::function<bool(const storage::JobEvent&)>& emit) {
  storage::Registry& reg = plane_->registry();
  int64_t after = after_seq;
  while (true) {
    // Read the state before the events: a terminal state seen here means
    // every event of the job is already in the log read below.
    absl::StatusOr<storage::JobRecord> rec = reg.GetJob(job_id);
    if (!rec.ok()) return ToGrpcStatus(rec.status());
    absl::StatusOr<std::vector<storage::JobEvent>> events = reg.EventsAfter(job_id, after);
    if (!events.ok()) return ToGrpcStatus(events.status());
    for (const storage::JobEvent& e : *events) {
      after = e.seq;
      if (!emit(e)) return grpc::Status(grpc::StatusCode::CANCELLED, "the reader went away");
    }
    if (events->size() >= 1000) continue;  // a full page: read on at once
    if (!follow || storage::IsTerminal(rec->state)) return grpc::Status::OK;
    if (ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "stream cancelled");
    if (stopping_->load()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "coordinator is shutting down");
    std::this_thread::sleep_for(std::chrono::milliseconds(poll_ms_));
  }
}

grpc::Status JobServiceImpl::WatchJob(grpc::ServerContext* ctx, const gcl::v1::WatchJobRequest* req,
                                      grpc::ServerWriter<gcl::v1::JobEvent>* writer) {
  gcl::v1::JobEvent wire;
  return FollowEvents(ctx, req->id(), req->after_seq(), /*follow=*/true,
                      [&](const storage::JobEvent& e) {
                        if (e.kind == kMetricsEvent && !req->include_metrics()) return true;
                        if (e.kind == kLogEvent && !req->include_logs()) return true;
                        if (!ToProtoEvent(e, &wire)) return true;
                        return writer->Write(wire);
                      });
}

}  // namespace gcl::server
