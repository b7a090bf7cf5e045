// Serves the coordinator's TLS files to gRPC so that they can be replaced
// while it runs (certificate rotation). gRPC's own file watcher reads key and
// certificate separately and takes whatever it finds: a half-copied pair or a
// wrong key would break every new handshake. So the files are checked first
// (ReadServerTlsFiles) and only a good set is copied into a private folder,
// key and certificate in one file and one rename, which gRPC's watcher reads
// every second. A set that fails the checks is reported and the served copy
// stays.
//
// Thread-safety: Reload may be called from any thread, one at a time.
#pragma once

#include <grpcpp/security/server_credentials.h>

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "server/transport_security.h"

namespace gcl::server {

class TlsReloader {
 public:
  // Checks the files (ReadServerTlsFiles' errors) and copies them into
  // `dir`, made if absent and set to mode 700 (a file there is replaced).
  static absl::StatusOr<std::unique_ptr<TlsReloader>> Create(ServerTlsFiles files,
                                                             std::string dir);
  ~TlsReloader();  // removes the copy

  TlsReloader(const TlsReloader&) = delete;
  TlsReloader& operator=(const TlsReloader&) = delete;

  // Server credentials over the served copy; client certificates required
  // and verified when files.client_ca is set.
  std::shared_ptr<grpc::ServerCredentials> credentials() const { return credentials_; }

  // Reads the files again. false: unchanged. true: changed and good, now
  // served (new handshakes use them within about a second). An error: they
  // fail the checks, and the previous ones stay served.
  absl::StatusOr<bool> Reload();

 private:
  TlsReloader(ServerTlsFiles files, std::string dir) : files_(std::move(files)), dir_(std::move(dir)) {}
  absl::Status Serve(const ServerTlsPem& pem);

  const ServerTlsFiles files_;
  const std::string dir_;
  ServerTlsPem served_;
  std::shared_ptr<grpc::ServerCredentials> credentials_;
};

}  // namespace gcl::server
