#include "server/worker_service.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/grpc_status.h"

namespace gcl::server {

grpc::Status WorkerServiceImpl::Register(grpc::ServerContext*, const gcl::v1::RegisterRequest* req,
                                         gcl::v1::RegisterResponse* resp) {
  if (req->worker_id().empty()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "worker_id: required");
  }
  storage::Registry& reg = plane_->registry();
  storage::WorkerRecord w;
  w.id = req->worker_id();
  w.address = req->hostname();
  w.devices = req->devices_size();
  for (const gcl::v1::Device& d : req->devices()) w.memory_bytes += d.memory_bytes();
  w.state = storage::WorkerState::kAlive;
  w.lease_expiry_ms = reg.NowMs() + plane_->lease_ms();
  if (absl::Status s = reg.UpsertWorker(w); !s.ok()) return ToGrpcStatus(s);
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
  absl::StatusOr<std::vector<std::string>> cancels = plane_->CancelsFor(req->worker_id(), running);
  if (!cancels.ok()) return ToGrpcStatus(cancels.status());
  for (const std::string& id : *cancels) resp->add_cancel_job_ids(id);
  absl::StatusOr<std::vector<gcl::v1::Assignment>> assigned = plane_->AssignTo(req->worker_id());
  if (!assigned.ok()) return ToGrpcStatus(assigned.status());
  for (gcl::v1::Assignment& a : *assigned) *resp->add_assignments() = std::move(a);
  return grpc::Status::OK;
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
  absl::StatusOr<storage::JobRecord> job =
      plane_->registry().FinishAttempt(req->job_id(), req->attempt(), outcome);
  if (!job.ok()) return ToGrpcStatus(job.status());
  (void)plane_->RefreshQueue();  // its devices are free again
  return grpc::Status::OK;
}

}  // namespace gcl::server
