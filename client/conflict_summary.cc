#include "client/conflict_summary.h"

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/table.h"

namespace gcl::client {
namespace {

struct PairRow {
  double none = 0, slight = 0, conflict = 0;
  std::optional<double> modified, cos_pre, cos_post;
};

std::string LabelOf(const gcl::v1::MetricSummary& m, const std::string& key) {
  auto it = m.labels().find(key);
  return it == m.labels().end() ? "" : it->second;
}

std::string Percent(double part, double whole) {
  return whole > 0 ? absl::StrFormat("%.1f%%", 100 * part / whole) : "-";
}

std::string Maybe(const std::optional<double>& v, const char* format) {
  return v.has_value() ? absl::StrFormat(format, *v) : "-";
}

}  // namespace

bool PrintConflictTable(const google::protobuf::RepeatedPtrField<gcl::v1::MetricSummary>& summaries,
                        std::ostream& out) {
  std::vector<std::string> jobs;
  std::map<std::string, std::map<std::string, PairRow>> rows;  // job -> pair -> row
  std::map<std::string, double> steps;
  for (const gcl::v1::MetricSummary& m : summaries) {
    if (m.name() == "gcl_train_steps_total") steps[m.job_id()] = m.value();
    const std::string pair = LabelOf(m, "pair");
    if (pair.empty()) continue;
    if (rows.find(m.job_id()) == rows.end()) jobs.push_back(m.job_id());
    PairRow& r = rows[m.job_id()][pair];
    if (m.name() == "gcl_grad_conflicts_total") {
      const std::string kind = LabelOf(m, "kind");
      if (kind == "none") r.none = m.value();
      if (kind == "slight") r.slight = m.value();
      if (kind == "conflict") r.conflict = m.value();
    } else if (m.name() == "gcl_grad_modified_total") {
      r.modified = m.value();
    } else if (m.name() == "gcl_grad_cosine") {
      (LabelOf(m, "stage") == "post" ? r.cos_post : r.cos_pre) = m.value();
    }
  }
  if (jobs.empty()) return false;
  Table table(
      {"JOB", "PAIR", "STEPS", "NONE", "SLIGHT", "CONFLICT", "INJECTIONS", "COS PRE", "COS POST"});
  for (size_t c = 2; c <= 8; ++c) table.AlignRight(c);
  for (const std::string& job : jobs) {
    auto st = steps.find(job);
    for (const auto& [pair, r] : rows[job]) {
      const double checks = r.none + r.slight + r.conflict;
      table.AddRow({job, pair, st == steps.end() ? "-" : absl::StrFormat("%.0f", st->second),
                    Percent(r.none, checks), Percent(r.slight, checks), Percent(r.conflict, checks),
                    Maybe(r.modified, "%.0f"), Maybe(r.cos_pre, "%.3f"),
                    Maybe(r.cos_post, "%.3f")});
    }
  }
  out << "gradient conflicts at the end of pre-training (share of encoder-tensor checks per "
         "category over the run; cosines of the last logged step)\n";
  table.Render(out);
  return true;
}

}  // namespace gcl::client
