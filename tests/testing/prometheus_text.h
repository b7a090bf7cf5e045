// Parses Prometheus text exposition (what /metrics serves) into samples, so
// tests can look values up by name and labels regardless of label order.
#pragma once

#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace gcl::testing {

struct PromSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Sample lines only (comments skipped). Label values must not contain '"'.
inline std::vector<PromSample> ParsePrometheusText(const std::string& text) {
  std::vector<PromSample> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    PromSample s;
    size_t i = line.find_first_of("{ ");
    if (i == std::string::npos) continue;
    s.name = line.substr(0, i);
    if (line[i] == '{') {
      size_t j = i + 1;
      while (j < line.size() && line[j] != '}') {
        const size_t eq = line.find('=', j);
        const size_t q1 = line.find('"', eq);
        const size_t q2 = line.find('"', q1 + 1);
        if (eq == std::string::npos || q1 == std::string::npos || q2 == std::string::npos) break;
        s.labels[line.substr(j, eq - j)] = line.substr(q1 + 1, q2 - q1 - 1);
        j = q2 + 1;
        if (j < line.size() && line[j] == ',') ++j;
      }
      i = line.find(' ', j);
    }
    if (i == std::string::npos) continue;
    s.value = std::stod(line.substr(i + 1));
    out.push_back(std::move(s));
  }
  return out;
}

// The value of the sample with this name and exactly these labels.
inline std::optional<double> FindSample(const std::vector<PromSample>& samples,
                                        const std::string& name,
                                        const std::map<std::string, std::string>& labels) {
  for (const PromSample& s : samples) {
    if (s.name == name && s.labels == labels) return s.value;
  }
  return std::nullopt;
}

}  // namespace gcl::testing
