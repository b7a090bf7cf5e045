#include "worker/agent/metrics_tail.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <sys/stat.h>

#include "absl/strings/str_cat.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace gcl::agent {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::StatusOr<gcl::v1::MetricsPoint> ParseMetricsLine(std::string_view line) {
  // Parsed as a generic Struct: the writer's keys ("time") are not the
  // proto's JSON names, and unknown keys must not break the agent.
  Struct doc;
  const auto s = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(line.data(), line.size()), &doc);
  if (!s.ok()) return absl::InvalidArgumentError("metrics line is not a JSON object");
  const auto& f = doc.fields();
  auto step = f.find("step");
  if (step == f.end() || step->second.kind_case() != Value::kNumberValue) {
    return absl::InvalidArgumentError("metrics line has no numeric \"step\"");
  }
  gcl::v1::MetricsPoint point;
  point.set_step(static_cast<int64_t>(std::llround(step->second.number_value())));
  if (auto t = f.find("time"); t != f.end() && t->second.kind_case() == Value::kNumberValue) {
    point.set_time_seconds(t->second.number_value());
  }
  auto samples = f.find("samples");
  if (samples == f.end()) return point;
  if (samples->second.kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError("metrics line: \"samples\" is not a list");
  }
  for (const Value& v : samples->second.list_value().values()) {
    if (v.kind_case() != Value::kStructValue) continue;
    const auto& sf = v.struct_value().fields();
    gcl::v1::MetricSample* out = point.add_samples();
    if (auto n = sf.find("name"); n != sf.end()) out->set_name(n->second.string_value());
    auto value = sf.find("value");
    out->set_value(value != sf.end() && value->second.kind_case() == Value::kNumberValue
                       ? value->second.number_value()
                       : std::numeric_limits<double>::quiet_NaN());
    if (auto l = sf.find("labels"); l != sf.end() && l->second.kind_case() == Value::kStructValue) {
      for (const auto& [k, lv] : l->second.struct_value().fields()) {
        (*out->mutable_labels())[k] = lv.kind_case() == Value::kStringValue
                                          ? lv.string_value()
                                          : absl::StrCat(lv.number_value());
      }
    }
  }
  return point;
}

absl::StatusOr<std::vector<gcl::v1::MetricsPoint>> MetricsTail::Poll() {
  std::vector<gcl::v1::MetricsPoint> out;
  struct stat st;
  if (::stat(path_.c_str(), &st) != 0) {
    if (errno == ENOENT) return out;
    return absl::UnavailableError(absl::StrCat(path_, ": ", std::strerror(errno)));
  }
  if (st.st_size < offset_) {  // truncated or replaced: start over
    offset_ = 0;
    pending_.clear();
  }
  if (st.st_size == offset_) return out;
  std::ifstream in(path_, std::ios::binary);
  if (!in) return absl::UnavailableError(absl::StrCat(path_, ": cannot open"));
  in.seekg(offset_);
  std::string fresh(static_cast<size_t>(st.st_size - offset_), '\0');
  in.read(fresh.data(), static_cast<std::streamsize>(fresh.size()));
  fresh.resize(static_cast<size_t>(in.gcount()));
  if (fresh.empty()) return out;
  offset_ += static_cast<int64_t>(fresh.size());
  last_growth_ = absl::Now();
  pending_ += fresh;
  size_t start = 0;
  for (size_t nl; (nl = pending_.find('\n', start)) != std::string::npos; start = nl + 1) {
    std::string_view line = std::string_view(pending_).substr(start, nl - start);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto point = ParseMetricsLine(line);
    if (point.ok()) {
      out.push_back(*std::move(point));
    } else {
      ++bad_lines_;
    }
  }
  pending_.erase(0, start);
  return out;
}

absl::StatusOr<std::vector<gcl::v1::MetricsPoint>> MetricsTail::Flush() {
  auto out = Poll();
  if (!out.ok()) return out;
  if (pending_.find_first_not_of(" \t\r") != std::string::npos) {
    auto point = ParseMetricsLine(pending_);
    if (point.ok()) {
      out->push_back(*std::move(point));
    } else {
      ++bad_lines_;  // a torn line of a killed writer
    }
  }
  pending_.clear();
  return out;
}

}  // namespace gcl::agent
