// Per-step metrics in the Prometheus naming of architecture doc section 5,
// written as JSON Lines. One line per logged step:
//   {"step": 10, "time": 1732.5, "samples": [{"name": "gcl_train_loss",
//     "labels": {"term": "image/patient"}, "value": 3.1}, ...]}
// The same records feed the terminal progress line and, later, the agent's
// /metrics endpoint, so names and labels are spelled exactly once.
#pragma once

#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl::core {

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

struct MetricsRecord {
  int64_t step = 0;
  double time = 0;  // seconds since the run started
  std::vector<MetricSample> samples;

  void Add(std::string name, double value, std::map<std::string, std::string> labels = {});
  // First sample with this name and labels, or nullptr.
  const MetricSample* Find(const std::string& name,
                           const std::map<std::string, std::string>& labels = {}) const;
  std::string ToJson() const;
};

// Appends records to a JSONL file; flushes each line so a killed run keeps
// everything it logged. Not thread-safe.
class MetricsWriter {
 public:
  // Opens `path` for appending (creating parent folders). Empty path: no-op writer.
  static absl::StatusOr<MetricsWriter> Open(const std::string& path);
  MetricsWriter(MetricsWriter&& other) noexcept;
  MetricsWriter& operator=(MetricsWriter&& other) noexcept;
  ~MetricsWriter();

  absl::Status Write(const MetricsRecord& record);

 private:
  MetricsWriter() = default;
  std::FILE* file_ = nullptr;
  std::string path_;
};

}  // namespace gcl::core
