#include "server/job_graph.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "gcl/spec/experiment_children.h"
#include "gcl/spec/variants.h"
#include "server/grpc_status.h"

namespace gcl::server {
namespace {

using storage::JobRecord;
using storage::JobState;

constexpr char kExperimentKind[] = "experiment";

std::string InitJobOf(const JobRecord& job) {
  if (job.kind != "finetune") return "";
  gcl::v1::JobSpec spec;
  if (!spec.ParseFromString(job.spec_blob)) return "";
  return spec.init().has_job() ? spec.init().job() : "";
}

storage::NewJob ChildJob(const JobRecord& parent, const gcl::v1::JobSpec& spec) {
  storage::NewJob j;
  j.name = spec.name();
  j.kind = spec.kind() == gcl::v1::KIND_PRETRAIN ? "pretrain" : "finetune";
  j.owner = parent.owner;
  j.priority = spec.priority();
  j.max_attempts = spec.has_max_attempts() ? spec.max_attempts() : parent.max_attempts;
  j.devices = spec.resources().has_devices() ? spec.resources().devices() : 1;
  j.spec_blob = spec.SerializeAsString();
  j.spec_text = spec.DebugString();
  j.parent_id = parent.id;
  return j;
}

}  // namespace

absl::Status JobGraph::CheckInitJob(const gcl::v1::JobSpec& spec) {
  if (!spec.init().has_job()) return absl::OkStatus();
  absl::StatusOr<JobRecord> dep = registry_->GetJob(spec.init().job());
  if (!dep.ok()) {
    return absl::NotFoundError(absl::StrCat("init.job: no job '", spec.init().job(),
                                            "' (check `gclctl list --kind pretrain`)"));
  }
  if (dep->kind != "pretrain") {
    return absl::InvalidArgumentError(absl::StrCat("init.job: ", dep->id, " is a ", dep->kind,
                                                   " job; fine-tuning starts from a pretrain job"));
  }
  if (dep->state == JobState::kFailed || dep->state == JobState::kCancelled) {
    return absl::InvalidArgumentError(absl::StrCat("init.job: ", dep->id, " ended ",
                                                   Sv(storage::ToString(dep->state)), ": ", dep->reason));
  }
  return absl::OkStatus();
}

absl::StatusOr<JobGraph::Hold> JobGraph::HoldOf(const std::string& job_id, const std::string& kind) {
  if (kind == kExperimentKind) return Hold{Hold::kWaiting, "expanding into child jobs"};
  if (kind != "finetune") return Hold{};
  auto cached = init_job_.find(job_id);
  if (cached == init_job_.end()) {
    GCL_ASSIGN_OR_RETURN(JobRecord job, registry_->GetJob(job_id));
    cached = init_job_.emplace(job_id, InitJobOf(job)).first;
  }
  const std::string& dep_id = cached->second;
  if (dep_id.empty()) return Hold{};
  absl::StatusOr<JobRecord> dep = registry_->GetJob(dep_id);
  std::string failure;
  if (!dep.ok()) {
    failure = absl::StrCat("its init job ", dep_id, " does not exist");
  } else if (dep->state == JobState::kSucceeded) {
    if (registry_->NewestCheckpoint(dep_id).ok()) return Hold{};
    failure = absl::StrCat("its init job ", dep_id, " succeeded without a checkpoint");
  } else if (storage::IsTerminal(dep->state)) {
    failure = absl::StrCat("its init job ", dep_id, " (", dep->name, ") ended ",
                           Sv(storage::ToString(dep->state)), ": ", dep->reason);
  } else {
    return Hold{Hold::kWaiting, absl::StrCat("waiting for pre-training job ", dep_id, " (", dep->name,
                                             ", ", Sv(storage::ToString(dep->state)), ") to finish")};
  }
  GCL_RETURN_IF_ERROR(registry_->Transition(job_id, JobState::kFailed, failure));
  init_job_.erase(job_id);
  return Hold{Hold::kFailed, failure};
}

absl::Status JobGraph::ResolveInit(gcl::v1::JobSpec* spec) {
  if (!spec->init().has_job()) return absl::OkStatus();
  const std::string dep_id = spec->init().job();
  GCL_ASSIGN_OR_RETURN(storage::CheckpointRecord ckpt, registry_->NewestCheckpoint(dep_id));
  if (spec->method().variant() == gcl::v1::VARIANT_UNSPECIFIED) {
    GCL_ASSIGN_OR_RETURN(JobRecord dep, registry_->GetJob(dep_id));
    gcl::v1::JobSpec dep_spec;
    if (dep_spec.ParseFromString(dep.spec_blob)) {
      spec->mutable_method()->set_variant(dep_spec.method().variant());
    }
  }
  spec->mutable_init()->set_checkpoint(storage::CheckpointId(ckpt.id));
  return absl::OkStatus();
}

absl::StatusOr<std::vector<JobRecord>> JobGraph::Children(const std::string& parent_id) {
  storage::JobFilter filter;
  filter.parent_id = parent_id;
  filter.page_size = 1000;
  std::vector<JobRecord> out;
  do {
    GCL_ASSIGN_OR_RETURN(storage::JobPage page, registry_->ListJobs(filter));
    out.insert(out.end(), page.jobs.begin(), page.jobs.end());
    filter.page_token = page.next_page_token;
  } while (!filter.page_token.empty());
  std::sort(out.begin(), out.end(),
            [](const JobRecord& a, const JobRecord& b) { return a.submit_seq < b.submit_seq; });
  return out;
}

absl::Status JobGraph::Expand(const JobRecord& parent) {
  gcl::v1::JobSpec spec;
  if (!spec.ParseFromString(parent.spec_blob)) {
    return registry_->Transition(parent.id, JobState::kFailed, "stored spec does not parse");
  }
  GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> existing, Children(parent.id));
  std::map<std::string, std::string> id_by_name;
  for (const JobRecord& c : existing) id_by_name[c.name] = c.id;

  // Pre-training children first: fine-tuning children name them in init.job.
  std::vector<storage::NewJob> pretrain;
  std::map<int, std::string> pretrain_name;  // variant -> its pre-training child's name
  for (int v : spec.experiment().variants()) {
    const auto variant = static_cast<gcl::v1::Variant>(v);
    if (variant == gcl::v1::VARIANT_RANDOM_INIT) continue;
    absl::StatusOr<gcl::v1::JobSpec> child = gcl::spec::PretrainChildSpec(spec, variant);
    if (!child.ok()) return registry_->Transition(parent.id, JobState::kFailed, std::string(child.status().message()));
    pretrain_name[v] = child->name();
    if (id_by_name.count(child->name()) > 0) continue;
    if (std::none_of(pretrain.begin(), pretrain.end(),
                     [&](const storage::NewJob& j) { return j.name == child->name(); })) {
      pretrain.push_back(ChildJob(parent, *child));
    }
  }
  if (!pretrain.empty()) {
    GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> made, registry_->CreateJobs(pretrain));
    for (const JobRecord& c : made) id_by_name[c.name] = c.id;
  }
  std::vector<storage::NewJob> finetune;
  const int64_t repeats = spec.has_repeats() ? spec.repeats() : 1;
  for (int v : spec.experiment().variants()) {
    const auto variant = static_cast<gcl::v1::Variant>(v);
    gcl::v1::Init init;
    if (variant != gcl::v1::VARIANT_RANDOM_INIT) init.set_job(id_by_name[pretrain_name[v]]);
    absl::StatusOr<gcl::v1::JobSpec> base = gcl::spec::FinetuneChildSpec(spec, variant, init);
    if (!base.ok()) return registry_->Transition(parent.id, JobState::kFailed, std::string(base.status().message()));
    for (int64_t m : spec.labeled_volumes()) {
      for (int64_t r = 0; r < repeats; ++r) {
        gcl::v1::JobSpec child = *base;
        child.set_name(absl::StrCat(base->name(), "-m", m, "-r", r));
        child.clear_labeled_volumes();
        child.add_labeled_volumes(m);
        child.set_repeat(r);
        if (id_by_name.count(child.name()) == 0) finetune.push_back(ChildJob(parent, child));
      }
    }
  }
  if (!finetune.empty()) GCL_RETURN_IF_ERROR(registry_->CreateJobs(finetune).status());
  const size_t total = id_by_name.size() + finetune.size();
  return registry_->Transition(parent.id, JobState::kRunning,
                               absl::StrCat("running ", total, " child jobs"));
}

absl::Status JobGraph::CancelChildren(const std::string& parent_id, const std::string& reason) {
  GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> children, Children(parent_id));
  for (const JobRecord& c : children) {
    absl::Status s;
    if (c.state == JobState::kQueued || c.state == JobState::kScheduled) {
      s = registry_->Transition(c.id, JobState::kCancelled, reason);
    } else if (c.state == JobState::kRunning) {
      s = registry_->Transition(c.id, JobState::kCancelling, reason, c.attempt);
    }
    // A child that moved meanwhile (finished, requeued) is handled next pass.
    if (!s.ok() && !absl::IsFailedPrecondition(s)) return s;
  }
  return absl::OkStatus();
}

absl::Status JobGraph::Settle(const JobRecord& parent) {
  if (parent.state == JobState::kCancelling) {
    GCL_RETURN_IF_ERROR(CancelChildren(parent.id, absl::StrCat("experiment ", parent.id, " cancelled")));
  }
  GCL_ASSIGN_OR_RETURN(std::vector<JobRecord> children, Children(parent.id));
  int64_t ended = 0, succeeded = 0;
  const JobRecord* first_bad = nullptr;
  for (const JobRecord& c : children) {
    if (!storage::IsTerminal(c.state)) continue;
    ++ended;
    if (c.state == JobState::kSucceeded) {
      ++succeeded;
    } else if (first_bad == nullptr) {
      first_bad = &c;
    }
  }
  const int64_t n = static_cast<int64_t>(children.size());
  if (ended < n) {
    const std::string progress = absl::StrCat(succeeded, " of ", n, " child jobs succeeded, ",
                                              n - ended, " still to run");
    return parent.reason == progress ? absl::OkStatus() : registry_->SetReason(parent.id, progress);
  }
  if (parent.state == JobState::kCancelling) {
    return registry_->Transition(parent.id, JobState::kCancelled, parent.reason);
  }
  if (first_bad == nullptr) {
    return registry_->Transition(parent.id, JobState::kSucceeded,
                                 absl::StrCat("all ", n, " child jobs succeeded"));
  }
  return registry_->Transition(
      parent.id, JobState::kFailed,
      absl::StrCat(n - succeeded, " of ", n, " child jobs did not succeed; first: ", first_bad->name,
                   " (", first_bad->id, ") ", Sv(storage::ToString(first_bad->state)), ": ",
                   first_bad->reason));
}

absl::Status JobGraph::Advance() {
  // Only experiment jobs, not every active job: this runs in each scheduling pass.
  storage::JobFilter filter;
  filter.kind = kExperimentKind;
  filter.states = {JobState::kQueued, JobState::kRunning, JobState::kCancelling};
  filter.page_size = 1000;
  std::vector<JobRecord> active;
  do {
    GCL_ASSIGN_OR_RETURN(storage::JobPage page, registry_->ListJobs(filter));
    active.insert(active.end(), page.jobs.begin(), page.jobs.end());
    filter.page_token = page.next_page_token;
  } while (!filter.page_token.empty());
  for (const JobRecord& job : active) {
    if (job.state == JobState::kQueued) {
      GCL_RETURN_IF_ERROR(Expand(job));
    } else {
      GCL_RETURN_IF_ERROR(Settle(job));
    }
  }
  return absl::OkStatus();
}

}  // namespace gcl::server
