// Follows the JSON Lines metrics file a gcl-train process appends to
// (worker/gcl/train/metrics_writer.h):
//   {"step":12,"time":3.5,"samples":[{"name":"gcl_train_loss","labels":{"term":"total"},"value":0.7}]}
// and yields each complete line as a gcl.v1.MetricsPoint. A last line
// without '\n' is a write in progress: kept until it is completed (or until
// Flush(), once the writer has exited).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "gcl/v1/job.pb.h"

namespace gcl::agent {

// One line -> MetricsPoint. "time" goes to time_seconds; a sample value of
// null (non-finite in the writer) becomes NaN; missing labels are empty.
// kInvalidArgument when the line is not a JSON object with a numeric "step".
absl::StatusOr<gcl::v1::MetricsPoint> ParseMetricsLine(std::string_view line);

class MetricsTail {
 public:
  explicit MetricsTail(std::string path) : path_(std::move(path)) {}

  // Reads what was appended since the last call and returns the points of
  // the complete new lines, in file order. A file that does not exist yet
  // gives no points; one that shrank (rewritten) is read again from its
  // start. Malformed lines are skipped and counted in bad_lines().
  // kUnavailable on a read error.
  absl::StatusOr<std::vector<gcl::v1::MetricsPoint>> Poll();

  // Poll(), then also parses a trailing line without '\n' (the writer has
  // exited: nothing more will complete it).
  absl::StatusOr<std::vector<gcl::v1::MetricsPoint>> Flush();

  // When the file last grew (construction time before that). For the
  // watchdog: a trainer that writes no metrics for long is stalled.
  absl::Time last_growth() const { return last_growth_; }
  int64_t offset() const { return offset_; }
  int64_t bad_lines() const { return bad_lines_; }

 private:
  std::string path_;
  int64_t offset_ = 0;  // bytes consumed, including pending_
  std::string pending_;  // an incomplete last line
  int64_t bad_lines_ = 0;
  absl::Time last_growth_ = absl::Now();
};

}  // namespace gcl::agent
