// The table verbs (results, checkpoints, workers) and download.
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "client/conflict_summary.h"
#include "client/format.h"
#include "client/gclctl.h"
#include "client/table.h"
#include "client/verbs.h"
#include "gcl/base/sha256.h"

namespace gcl::client {
namespace {

namespace fs = std::filesystem;

int FailForCheckpoint(const CallEnv& env, const grpc::Status& s, const std::string& id) {
  switch (s.error_code()) {
    case grpc::StatusCode::NOT_FOUND:
      if (absl::StrContains(s.error_message(), "deleted")) {
        *env.err << "gclctl: " << s.error_message()
                 << " (`gclctl checkpoints JOB` lists the kept ones)\n";
      } else {
        *env.err << "gclctl: no checkpoint " << id
                 << " (`gclctl checkpoints JOB` lists a job's checkpoints)\n";
      }
      return kExitFailed;
    case grpc::StatusCode::INVALID_ARGUMENT:
      *env.err << "gclctl: " << s.error_message() << " (checkpoint ids look like c-00000000002a; "
               << "`gclctl checkpoints JOB` lists them)\n";
      return kExitFailed;
    case grpc::StatusCode::DATA_LOSS:
      *env.err << "gclctl: the coordinator cannot serve this checkpoint: " << s.error_message()
               << " (ask its operator to check the artifact store)\n";
      return kExitFailed;
    default:
      *env.err << DescribeRpcError(s, env.addr, env.tls) << "\n";
      return kExitFailed;
  }
}

// The rows of one job's Dice table: variants (first-seen order) x M_lab.
void PrintResultTable(const std::vector<const gcl::v1::ResultCell*>& cells, bool per_class,
                      std::ostream& out) {
  std::vector<std::string> variants;
  std::set<int64_t> m_labs;
  std::map<std::pair<std::string, int64_t>, const gcl::v1::ResultCell*> at;
  for (const gcl::v1::ResultCell* c : cells) {
    if (std::find(variants.begin(), variants.end(), c->variant()) == variants.end()) {
      variants.push_back(c->variant());
    }
    m_labs.insert(c->labeled_volumes());
    at[{c->variant(), c->labeled_volumes()}] = c;
  }
  std::vector<std::string> header = {"VARIANT"};
  for (int64_t m : m_labs) header.push_back(absl::StrCat("M_lab=", m));
  Table table(header);
  for (const std::string& v : variants) {
    std::vector<std::string> row = {v};
    std::vector<std::string> classes;
    for (int64_t m : m_labs) {
      auto it = at.find({v, m});
      if (it == at.end()) {
        row.push_back("-");
        continue;
      }
      const gcl::v1::ResultCell& c = *it->second;
      row.push_back(DiceCell(c.dice_mean(), c.dice_std(), c.repeats()));
      for (const gcl::v1::ClassDice& d : c.classes()) {
        if (std::find(classes.begin(), classes.end(), d.class_name()) == classes.end()) {
          classes.push_back(d.class_name());
        }
      }
    }
    table.AddRow(row);
    if (!per_class) continue;
    for (const std::string& cls : classes) {
      std::vector<std::string> crow = {"  " + cls};
      for (int64_t m : m_labs) {
        std::string cell = "-";
        auto it = at.find({v, m});
        if (it != at.end()) {
          for (const gcl::v1::ClassDice& d : it->second->classes()) {
            if (d.class_name() == cls) cell = DiceCell(d.mean(), d.std(), 0);
          }
        }
        crow.push_back(cell);
      }
      table.AddRow(crow);
    }
  }
  table.Render(out);
}

std::string DevicesText(const gcl::v1::Worker& w) {
  std::map<std::string, int> by_type;
  for (const gcl::v1::Device& d : w.devices()) {
    std::string type = d.id().substr(0, d.id().find(':'));
    by_type[type.empty() ? "device" : type]++;
  }
  if (by_type.empty()) return "0";
  std::vector<std::string> parts;
  for (const auto& [type, n] : by_type) parts.push_back(absl::StrCat(n, " ", type));
  return absl::StrJoin(parts, ", ");
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

int FailForJob(const CallEnv& env, const grpc::Status& s, const std::string& id) {
  if (s.error_code() == grpc::StatusCode::NOT_FOUND && absl::StrContains(s.error_message(), id)) {
    *env.err << "gclctl: no job " << id << " (check `gclctl list`)\n";
  } else {
    *env.err << DescribeRpcError(s, env.addr, env.tls) << "\n";
  }
  return kExitFailed;
}

int ResultsVerb(const CallEnv& env, const std::string& id, bool per_class) {
  gcl::v1::ListResultsRequest req;
  req.set_job_id(id);
  gcl::v1::ListResultsResponse resp;
  grpc::Status s = env.stub->ListResults(env.unary_context().get(), req, &resp);
  if (!s.ok()) return FailForJob(env, s, id);
  if (env.json) {
    *env.out << ToJson(resp) << "\n";
    return kExitOk;
  }
  if (resp.cells().empty() && !id.empty() && PrintConflictTable(resp.metric_summaries(), *env.out)) {
    return kExitOk;  // a pre-training job: no Dice, its conflict statistics
  }
  if (resp.cells().empty()) {
    *env.out << (id.empty()
                     ? std::string("no results yet: no finished job has reported Dice scores")
                     : "no results for " + id + " yet (fine-tuning runs report them when they end)")
             << "\n";
    return kExitOk;
  }
  // One table per job, in the coordinator's order.
  std::vector<std::string> jobs;
  std::map<std::string, std::vector<const gcl::v1::ResultCell*>> cells_of;
  for (const gcl::v1::ResultCell& c : resp.cells()) {
    if (cells_of.find(c.job_id()) == cells_of.end()) jobs.push_back(c.job_id());
    cells_of[c.job_id()].push_back(&c);
  }
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (id.empty())
      *env.out << (i > 0 ? "\n" : "") << "job " << jobs[i]
               << " (Dice, mean \u00b1 std over repeats)\n";
    PrintResultTable(cells_of[jobs[i]], per_class, *env.out);
  }
  std::ostringstream conflicts;
  if (!id.empty() && PrintConflictTable(resp.metric_summaries(), conflicts)) {
    *env.out << "\n" << conflicts.str();
  }
  return kExitOk;
}

int CheckpointsVerb(const CallEnv& env, const std::string& job_id) {
  gcl::v1::ListCheckpointsRequest req;
  req.set_job_id(job_id);
  gcl::v1::ListCheckpointsResponse resp;
  grpc::Status s = env.stub->ListCheckpoints(env.unary_context().get(), req, &resp);
  if (!s.ok()) return FailForJob(env, s, job_id);
  if (env.json) {
    *env.out << ToJson(resp) << "\n";
    return kExitOk;
  }
  if (resp.checkpoints().empty()) {
    *env.out << "no checkpoints for " << job_id << " yet\n";
    return kExitOk;
  }
  Table table({"ID", "ATTEMPT", "STEP", "SIZE", "SHA256", "METRIC"});
  table.AlignRight(1).AlignRight(2).AlignRight(3);
  for (const gcl::v1::Checkpoint& c : resp.checkpoints()) {
    table.AddRow({c.id(), absl::StrCat(c.attempt()), absl::StrCat(c.step()),
                  HumanBytes(c.size_bytes()), ShortSha(c.sha256()),
                  c.metric_name().empty()
                      ? "-"
                      : absl::StrFormat("%s=%.4f", c.metric_name(), c.metric_value())});
  }
  table.Render(*env.out);
  return kExitOk;
}

int WorkersVerb(const CallEnv& env) {
  gcl::v1::ListWorkersResponse resp;
  grpc::Status s =
      env.stub->ListWorkers(env.unary_context().get(), gcl::v1::ListWorkersRequest(), &resp);
  if (!s.ok()) {
    *env.err << DescribeRpcError(s, env.addr, env.tls) << "\n";
    return kExitFailed;
  }
  if (env.json) {
    *env.out << ToJson(resp) << "\n";
    return kExitOk;
  }
  if (resp.workers().empty()) {
    *env.out << "no workers registered (start gcl-worker on a GPU host, pointed at " << env.addr
             << ")\n";
    return kExitOk;
  }
  Table table({"ID", "HOST", "DEVICES", "STATE", "LEASE LEFT", "JOBS"});
  const int64_t now = NowMs();
  for (const gcl::v1::Worker& w : resp.workers()) {
    std::string state = gcl::v1::WorkerState_Name(w.state());
    if (absl::StartsWith(state, "WORKER_STATE_")) state = state.substr(13);
    std::string lease = "-";
    if (w.state() != gcl::v1::WORKER_STATE_LOST) {
      const int64_t left = w.lease_expiry_ms() - now;
      lease = left > 0 ? HumanDuration(static_cast<double>(left) / 1000) : "expired";
    }
    std::vector<std::string> jobs(w.running_job_ids().begin(), w.running_job_ids().end());
    table.AddRow({w.id(), w.hostname(), DevicesText(w), state, lease,
                  jobs.empty() ? "-" : absl::StrJoin(jobs, ",")});
  }
  table.Render(*env.out);
  return kExitOk;
}

int DownloadVerb(const CallEnv& env, const std::string& id, const std::string& file) {
  const std::string partial = file + ".partial";
  std::error_code ec;
  int64_t offset = fs::exists(partial, ec) ? static_cast<int64_t>(fs::file_size(partial, ec)) : 0;
  if (ec) offset = 0;
  gcl::v1::Checkpoint desc;
  int64_t pos = offset;
  for (int round = 0;; ++round) {
    std::ofstream o(partial, std::ios::binary | std::ios::app);
    if (!o) {
      *env.err << "gclctl: cannot write " << partial << ": " << std::strerror(errno) << "\n";
      return kExitFailed;
    }
    if (offset > 0 && round == 0)
      *env.err << "gclctl: resuming " << partial << " at byte " << offset << "\n";
    gcl::v1::DownloadCheckpointRequest req;
    req.set_id(id);
    req.set_offset(offset);
    auto ctx = env.stream_context();
    auto reader = env.stub->DownloadCheckpoint(ctx.get(), req);
    gcl::v1::CheckpointChunk chunk;
    bool first = true;
    while (reader->Read(&chunk)) {
      if (first) desc = chunk.checkpoint();
      first = false;
      if (chunk.offset() != pos) {
        ctx->TryCancel();
        reader->Finish();
        *env.err << "gclctl: the coordinator sent byte " << chunk.offset() << " where " << pos
                 << " was expected; run the command again to resume\n";
        return kExitFailed;
      }
      o.write(chunk.data().data(), static_cast<std::streamsize>(chunk.data().size()));
      if (!o) {
        ctx->TryCancel();
        reader->Finish();
        *env.err << "gclctl: writing " << partial << " failed (disk full?) at byte " << pos << "\n";
        return kExitFailed;
      }
      pos += static_cast<int64_t>(chunk.data().size());
    }
    o.close();
    grpc::Status s = reader->Finish();
    if (s.ok()) break;
    if (s.error_code() == grpc::StatusCode::INVALID_ARGUMENT && offset > 0 && round == 0 &&
        absl::StrContains(s.error_message(), "offset")) {
      // A stale partial file longer than this checkpoint: start afresh.
      *env.err << "gclctl: " << partial << " does not belong to " << id << "; downloading afresh\n";
      fs::remove(partial, ec);
      offset = pos = 0;
      continue;
    }
    if (pos > offset) {
      *env.err << "gclctl: download interrupted at byte " << pos
               << "; run the command again to resume\n";
    } else if (pos == 0) {
      fs::remove(partial, ec);  // nothing arrived: leave no empty file behind
    }
    return FailForCheckpoint(env, s, id);
  }
  if (pos != desc.size_bytes()) {
    *env.err << "gclctl: the download of " << id << " ended at byte " << pos << " of "
             << desc.size_bytes() << "; run the command again to resume\n";
    return kExitFailed;
  }
  absl::StatusOr<std::string> sha = gcl::Sha256File(partial);
  if (!sha.ok()) {
    *env.err << "gclctl: cannot read back " << partial << ": " << sha.status().message() << "\n";
    return kExitFailed;
  }
  if (*sha != desc.sha256()) {
    fs::remove(partial, ec);
    *env.err << "gclctl: " << id << " arrived damaged: sha256 " << *sha << ", expected "
             << desc.sha256() << "; removed " << partial
             << ", run the command again to download it afresh\n";
    return kExitFailed;
  }
  fs::rename(partial, file, ec);
  if (ec) {
    *env.err << "gclctl: cannot rename " << partial << " to " << file << ": " << ec.message()
             << "\n";
    return kExitFailed;
  }
  if (env.json) {
    *env.out << ToJson(desc) << "\n";
  } else {
    *env.out << file << ": " << id << " (job " << desc.job_id() << ", step " << desc.step() << "), "
             << HumanBytes(desc.size_bytes()) << ", sha256 " << ShortSha(desc.sha256())
             << " verified\n";
  }
  return kExitOk;
}

}  // namespace gcl::client
