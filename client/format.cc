#include "client/format.h"

#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <ctime>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"

namespace gcl::client {

std::string HumanBytes(int64_t bytes) {
  if (bytes < 1024) return absl::StrFormat("%d B", bytes);
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes) / 1024;
  int unit = 0;
  while (v >= 1024 && unit < 3) {
    v /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", v, kUnits[unit]);
}

std::string HumanDuration(double seconds) {
  if (!(seconds > 0)) return "0s";
  const int64_t s = static_cast<int64_t>(std::llround(seconds));
  if (s < 60) return absl::StrFormat("%ds", s);
  if (s < 3600) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
}

std::string ShortSha(const std::string& sha256) { return sha256.substr(0, 12); }

std::string DiceCell(double mean, double std, int repeats) {
  std::string cell = absl::StrFormat("%.3f \u00b1 %.3f", mean, std);
  if (repeats > 0) cell += absl::StrFormat(" (n=%d)", repeats);
  return cell;
}

std::string ClockTime(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[16];
  std::strftime(buf, sizeof buf, "%H:%M:%S", &tm);
  return buf;
}

std::string StateName(gcl::v1::JobState state) {
  std::string name = gcl::v1::JobState_Name(state);
  return absl::StartsWith(name, "JOB_STATE_") ? name.substr(10) : name;
}

namespace {
std::string Json(const google::protobuf::Message& m, bool indent) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.add_whitespace = indent;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  if (!indent) return json;
  while (!json.empty() && json.back() == '\n') json.pop_back();
  return json;
}
}  // namespace

std::string ToJson(const google::protobuf::Message& message) { return Json(message, true); }
std::string ToJsonLine(const google::protobuf::Message& message) { return Json(message, false); }

}  // namespace gcl::client
