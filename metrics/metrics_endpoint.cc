#include "metrics/metrics_endpoint.h"

#include <unistd.h>

#include <exception>
#include <vector>

#include "absl/strings/str_cat.h"

namespace gcl::metrics {
namespace {

std::string AdvertisedAddress(const std::string& listen, int port) {
  const size_t colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? listen : listen.substr(0, colon);
  if (host.empty() || host == "0.0.0.0" || host == "::" || host == "[::]") {
    char buf[256] = {0};
    host = ::gethostname(buf, sizeof(buf) - 1) == 0 ? buf : "localhost";
  }
  return absl::StrCat(host, ":", port);
}

}  // namespace

absl::StatusOr<MetricsEndpoint> StartMetricsEndpoint(const std::string& listen) {
  MetricsEndpoint out;
  try {
    out.exposer = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen ", listen, ": cannot serve /metrics: ", e.what()));
  }
  const std::vector<int> ports = out.exposer->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(absl::StrCat("--metrics-listen ", listen, ": no port bound"));
  }
  out.address = AdvertisedAddress(listen, ports.front());
  return out;
}

}  // namespace gcl::metrics
