#include "server/transport_security.h"

#include <arpa/inet.h>

#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"

namespace gcl::server {
namespace {

// Splits "HOST:PORT" / "[V6]:PORT" into its host part.
std::string_view HostOf(std::string_view listen) {
  if (!listen.empty() && listen.front() == '[') {
    const size_t close = listen.find(']');
    return close == std::string_view::npos ? listen.substr(1) : listen.substr(1, close - 1);
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos) return listen;
  // More than one colon without brackets: a bare IPv6 address, no port.
  if (listen.find(':') != colon) return listen;
  return listen.substr(0, colon);
}

}  // namespace

bool IsLoopbackListen(std::string_view listen) {
  if (absl::StartsWith(absl::string_view(listen.data(), listen.size()), "unix:") ||
      absl::StartsWith(absl::string_view(listen.data(), listen.size()), "unix-abstract:")) {
    return true;
  }
  for (std::string_view scheme : {"ipv4:", "ipv6:", "dns:///", "dns:"}) {
    if (listen.substr(0, scheme.size()) == scheme) {
      listen.remove_prefix(scheme.size());
      break;
    }
  }
  const std::string host(HostOf(listen));
  if (host == "localhost") return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

}  // namespace gcl::server
