// How the coordinator's listening port is secured: the checks of its TLS PEM
// files (served by TlsReloader, optionally requiring client certificates:
// mTLS), and the loopback test that decides whether a port may stay
// plaintext.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace gcl::server {

struct ServerTlsFiles {
  std::string cert;       // PEM certificate chain, server first (--tls-cert)
  std::string key;        // PEM private key of that certificate (--tls-key)
  std::string client_ca;  // PEM CA bundle; non-empty: require and verify client certs
};

// The files' contents, checked.
struct ServerTlsPem {
  std::string cert, key, client_ca;
  bool operator==(const ServerTlsPem& o) const {
    return cert == o.cert && key == o.key && client_ca == o.client_ca;
  }
};

// Reads and checks the files before gRPC sees them, so that a mistake shows
// as a message naming the flag and file instead of failed handshakes:
// kNotFound for an unreadable file; kInvalidArgument for a file without a PEM
// certificate / private key, a key that does not belong to the certificate,
// or a certificate that has expired. REQUIRES: cert and key non-empty.
absl::StatusOr<ServerTlsPem> ReadServerTlsFiles(const ServerTlsFiles& files);

// True when `listen` (gRPC's HOST:PORT, [V6]:PORT, ipv4:/ipv6: URIs or
// unix:PATH) is reachable only from this host: 127.0.0.0/8, ::1 (also
// v4-mapped), "localhost", or a unix socket. 0.0.0.0, [::], host names and
// other addresses are not.
bool IsLoopbackListen(std::string_view listen);

}  // namespace gcl::server
