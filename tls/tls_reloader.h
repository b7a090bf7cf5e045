// Serves one end's TLS files to gRPC so that they can be replaced while the
// process runs (certificate rotation): the coordinator's port and
// gcl-worker's channel. gRPC's own file watcher reads key and certificate
// separately and takes whatever it finds: a half-copied pair or a wrong key
// would break every new handshake. So the files are checked first
// (ReadTlsFiles) and only a good set is copied into a private folder, key and
// certificate in one file and one rename, which gRPC's watcher reads every
// second. A set that fails the checks is reported and the served copy stays.
//
// Thread-safe.
#pragma once

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/security/tls_certificate_provider.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tls/tls_files.h"

namespace gcl::tls {

class TlsReloader {
 public:
  // Checks the files (ReadTlsFiles' errors) and copies them into `dir`,
  // made if absent and set to mode 700 (a file there is replaced). `who`
  // begins the lines Reload writes ("gcl-worker").
  static absl::StatusOr<std::unique_ptr<TlsReloader>> Create(TlsFiles files, std::string dir,
                                                             std::string who);
  ~TlsReloader();  // removes the copy

  TlsReloader(const TlsReloader&) = delete;
  TlsReloader& operator=(const TlsReloader&) = delete;

  // The credentials below follow the served copy, so they must not outlive
  // this object (nor must channels or servers made with them).
  //
  // For a server: REQUIRES files.cert. Client certificates are required and
  // verified against files.ca when it is set.
  std::shared_ptr<grpc::ServerCredentials> ServerCredentials() const;
  // For a channel: REQUIRES files.ca. The server's certificate must chain to
  // it and name the host dialled; files.cert is presented when set (mTLS).
  std::shared_ptr<grpc::ChannelCredentials> ChannelCredentials() const;

  // Reads the files again. false: unchanged. true: changed and good, now
  // served (new handshakes use them within about a second). An error: they
  // fail the checks, and the previous ones stay served. A change, and each
  // new error (once, not at every periodic call), get a line on stderr.
  absl::StatusOr<bool> Reload() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  TlsReloader(TlsFiles files, std::string dir, std::string who)
      : files_(std::move(files)), dir_(std::move(dir)), who_(std::move(who)) {}
  absl::StatusOr<bool> ReloadLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Serve(const TlsPem& pem);

  const TlsFiles files_;
  const std::string dir_;
  const std::string who_;
  std::shared_ptr<grpc::experimental::FileWatcherCertificateProvider> provider_;
  absl::Mutex mu_;
  TlsPem served_;           // written by Create, then under mu_
  std::string last_error_ ABSL_GUARDED_BY(mu_);  // the last one reported
};

}  // namespace gcl::tls
