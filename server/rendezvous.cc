#include "server/rendezvous.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace gcl::server {

absl::StatusOr<int32_t> PickRendezvousPort(std::string_view job_id, int32_t attempt,
                                           int32_t port_min, int32_t port_max,
                                           const std::set<int32_t>& in_use) {
  if (port_min < 1 || port_max > 65535 || port_min > port_max) {
    return absl::InvalidArgumentError(
        absl::StrCat("rendezvous port range ", port_min, "-", port_max, " is empty"));
  }
  uint64_t h = 1469598103934665603ULL;  // FNV-1a: stable across runs and builds
  for (char c : job_id) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  const uint64_t n = static_cast<uint64_t>(port_max - port_min) + 1;
  const uint64_t start = (h + static_cast<uint64_t>(attempt)) % n;
  for (uint64_t k = 0; k < n; ++k) {
    const int32_t port = port_min + static_cast<int32_t>((start + k) % n);
    if (in_use.count(port) == 0) return port;
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("every rendezvous port of ", port_min, "-", port_max, " is in use"));
}

std::string JoinHostPort(std::string_view host, int32_t port) {
  if (host.find(':') != std::string_view::npos && host.front() != '[') {
    return absl::StrCat("[", std::string(host), "]:", port);
  }
  return absl::StrCat(std::string(host), ":", port);
}

int32_t PortOf(std::string_view host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string_view::npos) return -1;
  int32_t port = -1;
  if (!absl::SimpleAtoi(std::string(host_port.substr(colon + 1)), &port)) return -1;
  return port;
}

}  // namespace gcl::server
