// The channel to the coordinator, as ClientConfig describes it: TLS when
// tls_ca is set (mTLS with tls_cert/tls_key), plaintext otherwise, and on
// every call "authorization: Bearer <token>" when a token is set. The token
// travels as plain call metadata added by a client interceptor, not as
// CallCredentials, which gRPC sends only over secure channels.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "client/config.h"

namespace gcl::client {

// TLS credentials from PEM files (cert/key "" = no client certificate), or
// insecure credentials when ca is "". Errors: tls::ReadTlsFiles' (a file
// that cannot be read, holds no PEM block of its kind, a key that is not the
// certificate's, an expired certificate), naming the flag and the file.
// Read once: a long-running process that must follow rotated files uses
// tls::TlsReloader::ChannelCredentials.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromFiles(
    const std::string& ca, const std::string& cert, const std::string& key);

// A channel to config.addr with the credentials and token above.
absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ClientConfig& config,
                                                           const grpc::ChannelArguments& args);

}  // namespace gcl::client
