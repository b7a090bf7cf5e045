#include "tls/tls_reloader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/write_file.h"

namespace gcl::tls {
namespace {

constexpr char kIdentity[] = "identity.pem";  // key + certificate chain
constexpr char kCa[] = "ca.pem";

}  // namespace

absl::StatusOr<std::unique_ptr<TlsReloader>> TlsReloader::Create(TlsFiles files, std::string dir,
                                                                 std::string who) {
  GCL_ASSIGN_OR_RETURN(TlsPem pem, ReadTlsFiles(files));
  if ((::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) || ::chmod(dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot make the folder for the served TLS files ", dir, ": ", std::strerror(errno)));
  }
  std::unique_ptr<TlsReloader> reloader(new TlsReloader(std::move(files), dir, std::move(who)));
  GCL_RETURN_IF_ERROR(reloader->Serve(pem));
  // The key and the certificate chain are read from the same file: PEM
  // readers skip the blocks of the other kind.
  const std::string identity =
      reloader->files_.cert.empty() ? std::string() : absl::StrCat(dir, "/", kIdentity);
  reloader->provider_ = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      identity, identity,
      reloader->files_.ca.empty() ? std::string() : absl::StrCat(dir, "/", kCa),
      /*refresh_interval_sec=*/1);
  return reloader;
}

TlsReloader::~TlsReloader() {
  for (const char* name : {kIdentity, kCa}) ::unlink(absl::StrCat(dir_, "/", name).c_str());
  ::rmdir(dir_.c_str());
}

std::shared_ptr<grpc::ServerCredentials> TlsReloader::ServerCredentials() const {
  grpc::experimental::TlsServerCredentialsOptions options(provider_);
  options.watch_identity_key_cert_pairs();
  if (!files_.ca.empty()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

std::shared_ptr<grpc::ChannelCredentials> TlsReloader::ChannelCredentials() const {
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_certificate_provider(provider_);
  options.watch_root_certs();
  if (!files_.cert.empty()) options.watch_identity_key_cert_pairs();
  // Named, not left to the default, so that the server's certificate must
  // name the host dialled as with grpc::SslCredentials.
  options.set_certificate_verifier(
      std::make_shared<grpc::experimental::HostNameCertificateVerifier>());
  return grpc::experimental::TlsCredentials(options);
}

absl::Status TlsReloader::Serve(const TlsPem& pem) {
  // One file and one rename: gRPC's watcher never reads a key with another certificate.
  if (!pem.cert.empty()) {
    GCL_RETURN_IF_ERROR(WriteFileReplacing(absl::StrCat(dir_, "/", kIdentity),
                                           absl::StrCat(pem.key, "\n", pem.cert), 0600));
  }
  if (!pem.ca.empty()) {
    GCL_RETURN_IF_ERROR(WriteFileReplacing(absl::StrCat(dir_, "/", kCa), pem.ca, 0600));
  }
  served_ = pem;
  return absl::OkStatus();
}

absl::StatusOr<bool> TlsReloader::Reload() {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<bool> changed = ReloadLocked();
  if (!changed.ok()) {
    if (changed.status().message() != last_error_) {
      last_error_ = std::string(changed.status().message());
      std::fprintf(stderr, "%s: TLS files not used, the previous ones stay: %s\n", who_.c_str(),
                   last_error_.c_str());
    }
  } else {
    last_error_.clear();
    if (*changed) std::fprintf(stderr, "%s: TLS files changed: new connections use them\n", who_.c_str());
  }
  return changed;
}

absl::StatusOr<bool> TlsReloader::ReloadLocked() {
  GCL_ASSIGN_OR_RETURN(TlsPem pem, ReadTlsFiles(files_));
  if (pem == served_) return false;
  GCL_RETURN_IF_ERROR(Serve(pem));
  return true;
}

}  // namespace gcl::tls
