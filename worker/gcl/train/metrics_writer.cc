#include "worker/gcl/train/metrics_writer.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gcl/base/json.h"

namespace gcl::core {

void MetricsRecord::Add(std::string name, double value, std::map<std::string, std::string> labels) {
  samples.push_back({std::move(name), std::move(labels), value});
}

const MetricSample* MetricsRecord::Find(const std::string& name,
                                        const std::map<std::string, std::string>& labels) const {
  for (const auto& s : samples) {
    if (s.name == name && s.labels == labels) return &s;
  }
  return nullptr;
}

std::string MetricsRecord::ToJson() const {
  std::string out = absl::StrCat("{\"step\":", step, ",\"time\":", JsonNumber(time), ",\"samples\":[");
  for (size_t i = 0; i < samples.size(); ++i) {
    const auto& s = samples[i];
    if (i) out += ",";
    absl::StrAppend(&out, "{\"name\":", JsonQuote(s.name));
    if (!s.labels.empty()) {
      out += ",\"labels\":{";
      bool first = true;
      for (const auto& [k, v] : s.labels) {
        if (!first) out += ",";
        first = false;
        absl::StrAppend(&out, JsonQuote(k), ":", JsonQuote(v));
      }
      out += "}";
    }
    absl::StrAppend(&out, ",\"value\":", JsonNumber(s.value), "}");
  }
  return out + "]}";
}

absl::StatusOr<MetricsWriter> MetricsWriter::Open(const std::string& path) {
  MetricsWriter w;
  if (path.empty()) return w;
  std::error_code ec;
  auto parent = std::filesystem::path(path).parent_path();
  if (!parent.empty()) std::filesystem::create_directories(parent, ec);
  w.file_ = std::fopen(path.c_str(), "a");
  if (w.file_ == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot open metrics file ", path, ": ", std::strerror(errno)));
  }
  w.path_ = path;
  return w;
}

MetricsWriter::MetricsWriter(MetricsWriter&& other) noexcept
    : file_(other.file_), path_(std::move(other.path_)) {
  other.file_ = nullptr;
}

MetricsWriter& MetricsWriter::operator=(MetricsWriter&& other) noexcept {
  if (this != &other) {
    if (file_) std::fclose(file_);
    file_ = other.file_;
    path_ = std::move(other.path_);
    other.file_ = nullptr;
  }
  return *this;
}

MetricsWriter::~MetricsWriter() {
  if (file_) std::fclose(file_);
}

absl::Status MetricsWriter::Write(const MetricsRecord& record) {
  if (file_ == nullptr) return absl::OkStatus();
  std::string line = record.ToJson();
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot write metrics file ", path_, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

}  // namespace gcl::core
