#include "client/progress.h"

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "client/format.h"

namespace gcl::client {
namespace {

std::string Label(const gcl::v1::MetricSample& s, const std::string& key) {
  auto it = s.labels().find(key);
  return it == s.labels().end() ? "" : it->second;
}

}  // namespace

ConflictFigures ConflictsOf(const gcl::v1::MetricsPoint& point) {
  ConflictFigures f;
  std::map<std::string, double> pre, post;
  double conflicts = 0, checks = 0;
  for (const gcl::v1::MetricSample& s : point.samples()) {
    if (s.name() == "gcl_grad_cosine") {
      const std::string stage = Label(s, "stage");
      if (stage == "pre") pre[Label(s, "pair")] = s.value();
      if (stage == "post") post[Label(s, "pair")] = s.value();
    } else if (s.name() == "gcl_grad_conflicts_total") {
      f.has_share = true;
      checks += s.value();
      if (Label(s, "kind") == "conflict") conflicts += s.value();
    }
  }
  f.conflict_share = checks > 0 ? conflicts / checks : 0;
  for (const auto& [pair, cos] : pre) {
    ++f.pairs;
    if (cos < 0) ++f.conflicting_pairs;
    if (!f.has_cosine || cos < f.worst_pre) {
      f.has_cosine = true;
      f.worst_pair = pair;
      f.worst_pre = cos;
    }
  }
  if (f.has_cosine) {
    auto it = post.find(f.worst_pair);
    f.has_post = it != post.end();
    if (f.has_post) f.worst_post = it->second;
  }
  return f;
}

std::string ConflictText(const ConflictFigures& f) {
  std::vector<std::string> parts;
  if (f.has_share)
    parts.push_back(absl::StrFormat("conflicts %.1f%% of checks", 100 * f.conflict_share));
  if (f.has_cosine) {
    parts.push_back(absl::StrFormat("%d/%d pairs opposed", f.conflicting_pairs, f.pairs));
    std::string worst = absl::StrFormat("worst %s cos %.2f", f.worst_pair, f.worst_pre);
    if (f.has_post) worst += absl::StrFormat(" -> %.2f", f.worst_post);
    parts.push_back(worst);
  }
  std::string out;
  for (const std::string& p : parts) absl::StrAppend(&out, out.empty() ? "" : ", ", p);
  return out;
}

double EtaSeconds(const gcl::v1::Progress& p) {
  const int64_t remaining = p.total_steps() - p.step();
  if (p.step_seconds() > 0 && p.total_steps() > 0)
    return p.step_seconds() * std::max<int64_t>(remaining, 0);
  if (p.eta_seconds() > 0) return p.eta_seconds();
  return -1;
}

std::string ProgressLine(const std::string& state, const gcl::v1::Progress& p,
                         const ConflictFigures& conflicts, int bar_width) {
  std::string line = state;
  if (!p.phase().empty()) absl::StrAppend(&line, " ", p.phase());
  if (p.total_steps() > 0) {
    const double frac =
        std::clamp(static_cast<double>(p.step()) / static_cast<double>(p.total_steps()), 0.0, 1.0);
    if (bar_width > 0) {
      const int full = static_cast<int>(frac * bar_width);
      absl::StrAppend(&line, " [", std::string(full, '#'), std::string(bar_width - full, '-'), "]");
    }
    absl::StrAppend(&line, absl::StrFormat(" %3d%% step %d/%d", static_cast<int>(frac * 100),
                                           p.step(), p.total_steps()));
  } else {
    absl::StrAppend(&line, " step ", p.step());
  }
  absl::StrAppend(&line, absl::StrFormat("  loss %.4f", p.loss()));
  if (p.step_seconds() > 0)
    absl::StrAppend(&line, absl::StrFormat("  %.2f s/step", p.step_seconds()));
  const double eta = EtaSeconds(p);
  if (eta >= 0) absl::StrAppend(&line, "  ETA ", HumanDuration(eta));
  const std::string c = ConflictText(conflicts);
  if (!c.empty()) absl::StrAppend(&line, "  ", c);
  return line;
}

}  // namespace gcl::client
