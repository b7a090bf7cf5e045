// A Prometheus /metrics HTTP endpoint and the address scrapers reach it at.
#pragma once

#include <memory>
#include <string>

#include <prometheus/exposer.h>

#include "absl/status/statusor.h"

namespace gcl::metrics {

struct MetricsEndpoint {
  std::unique_ptr<prometheus::Exposer> exposer;
  // host:port actually bound; a wildcard host (0.0.0.0, ::) is replaced by
  // this machine's name, which is what a scraper elsewhere dials.
  std::string address;
};

// Serves /metrics on `listen` (host:port; port 0 picks a free one).
// kUnavailable naming --metrics-listen when it cannot bind.
absl::StatusOr<MetricsEndpoint> StartMetricsEndpoint(const std::string& listen);

}  // namespace gcl::metrics
