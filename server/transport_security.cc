#include "server/transport_security.h"

#include "gcl/base/read_file.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gcl/base/status_macros.h"

namespace gcl::server {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& flag, const std::string& path) {
  return ReadFileNamed(flag, path);
}

struct BioDeleter {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Deleter {
  void operator()(X509* x) const { X509_free(x); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;
using X509Ptr = std::unique_ptr<X509, X509Deleter>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyDeleter>;

BioPtr MemBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// The first certificate of a PEM text (the leaf of a chain).
absl::StatusOr<X509Ptr> FirstCert(const std::string& flag, const std::string& path,
                                  const std::string& pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (cert == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, " ", path, ": no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)"));
  }
  return cert;
}

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

absl::StatusOr<ServerTlsPem> ReadServerTlsFiles(const ServerTlsFiles& files) {
  GCL_ASSIGN_OR_RETURN(std::string cert_pem, ReadPem("--tls-cert", files.cert));
  GCL_ASSIGN_OR_RETURN(std::string key_pem, ReadPem("--tls-key", files.key));
  GCL_ASSIGN_OR_RETURN(X509Ptr cert, FirstCert("--tls-cert", files.cert, cert_pem));
  if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls-cert ", files.cert,
                     ": the certificate has expired (make new ones: deploy/make-certs.sh)"));
  }
  BioPtr key_bio = MemBio(key_pem);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", files.key,
        ": no unencrypted PEM private key in it (expected -----BEGIN PRIVATE KEY-----)"));
  }
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls-key ", files.key, ": not the private key of the certificate in ", files.cert));
  }
  ServerTlsPem pem{std::move(cert_pem), std::move(key_pem), ""};
  if (!files.client_ca.empty()) {
    GCL_ASSIGN_OR_RETURN(pem.client_ca, ReadPem("--tls-client-ca", files.client_ca));
    GCL_RETURN_IF_ERROR(FirstCert("--tls-client-ca", files.client_ca, pem.client_ca).status());
  }
  return pem;
}

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
