// The TLS PEM files of one end of a connection and their checks, made before
// gRPC sees them, so that a mistake shows as a message naming the flag and
// the file instead of as failed handshakes.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace gcl::tls {

struct TlsFiles {
  std::string cert;  // PEM certificate chain, this end's first (--tls-cert); empty: none
  std::string key;   // PEM private key of that certificate (--tls-key)
  std::string ca;    // PEM CA bundle the peer's certificate must chain to; empty: none
  std::string ca_flag = "--tls-ca";  // the flag that named `ca`, for messages
};

// The files' contents, checked.
struct TlsPem {
  std::string cert, key, ca;
  bool operator==(const TlsPem& o) const {
    return cert == o.cert && key == o.key && ca == o.ca;
  }
};

// Reads and checks the files: kNotFound for an unreadable file;
// kInvalidArgument for a file without a PEM certificate / unencrypted private
// key, a key that does not belong to the certificate, or a certificate that
// has expired. REQUIRES: cert and key both empty or both set.
absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files);

}  // namespace gcl::tls
