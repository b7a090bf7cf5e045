// The loopback test that decides whether the coordinator's port may stay
// plaintext (its TLS files: tls/tls_files.h).
#pragma once

#include <string>
#include <string_view>

namespace gcl::server {

// True when `listen` (gRPC's HOST:PORT, [V6]:PORT, ipv4:/ipv6: URIs or
// unix:PATH) is reachable only from this host: 127.0.0.0/8, ::1 (also
// v4-mapped), "localhost", or a unix socket. 0.0.0.0, [::], host names and
// other addresses are not.
bool IsLoopbackListen(std::string_view listen);

}  // namespace gcl::server
