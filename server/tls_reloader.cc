#include "server/tls_reloader.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/strings/str_cat.h"
#include "gcl/base/status_macros.h"
#include "gcl/base/write_file.h"

namespace gcl::server {
namespace {

constexpr char kIdentity[] = "identity.pem";  // key + certificate chain
constexpr char kClientCa[] = "client_ca.pem";

}  // namespace

absl::StatusOr<std::unique_ptr<TlsReloader>> TlsReloader::Create(ServerTlsFiles files,
                                                                 std::string dir) {
  GCL_ASSIGN_OR_RETURN(ServerTlsPem pem, ReadServerTlsFiles(files));
  if ((::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) || ::chmod(dir.c_str(), 0700) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot make the folder for the served TLS files ", dir, ": ", std::strerror(errno)));
  }
  std::unique_ptr<TlsReloader> reloader(new TlsReloader(std::move(files), dir));
  GCL_RETURN_IF_ERROR(reloader->Serve(pem));
  const std::string identity = absl::StrCat(dir, "/", kIdentity);
  const bool mtls = !reloader->files_.client_ca.empty();
  // The key and the certificate chain are read from the same file: PEM
  // readers skip the blocks of the other kind.
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      identity, identity, mtls ? absl::StrCat(dir, "/", kClientCa) : std::string(),
      /*refresh_interval_sec=*/1);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (mtls) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  } else {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  }
  reloader->credentials_ = grpc::experimental::TlsServerCredentials(options);
  return reloader;
}

TlsReloader::~TlsReloader() {
  for (const char* name : {kIdentity, kClientCa}) ::unlink(absl::StrCat(dir_, "/", name).c_str());
  ::rmdir(dir_.c_str());
}

absl::Status TlsReloader::Serve(const ServerTlsPem& pem) {
  // One file and one rename: gRPC's watcher never reads a key with another certificate.
  GCL_RETURN_IF_ERROR(WriteFileReplacing(absl::StrCat(dir_, "/", kIdentity),
                                         absl::StrCat(pem.key, "\n", pem.cert), 0600));
  if (!pem.client_ca.empty()) {
    GCL_RETURN_IF_ERROR(WriteFileReplacing(absl::StrCat(dir_, "/", kClientCa), pem.client_ca, 0600));
  }
  served_ = pem;
  return absl::OkStatus();
}

absl::StatusOr<bool> TlsReloader::Reload() {
  GCL_ASSIGN_OR_RETURN(ServerTlsPem pem, ReadServerTlsFiles(files_));
  if (pem == served_) return false;
  GCL_RETURN_IF_ERROR(Serve(pem));
  return true;
}

}  // namespace gcl::server
