#include "tls/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "gcl/base/read_file.h"
#include "gcl/base/status_macros.h"

namespace gcl::tls {
namespace {

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

}  // namespace

absl::StatusOr<TlsPem> ReadTlsFiles(const TlsFiles& files) {
  TlsPem pem;
  if (!files.cert.empty()) {
    GCL_ASSIGN_OR_RETURN(pem.cert, ReadFileNamed("--tls-cert", files.cert));
    GCL_ASSIGN_OR_RETURN(pem.key, ReadFileNamed("--tls-key", files.key));
    GCL_ASSIGN_OR_RETURN(X509Ptr cert, FirstCert("--tls-cert", files.cert, pem.cert));
    if (X509_cmp_current_time(X509_get0_notAfter(cert.get())) < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tls-cert ", files.cert,
                       ": the certificate has expired (make new ones: deploy/make-certs.sh)"));
    }
    BioPtr key_bio = MemBio(pem.key);
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
  }
  if (!files.ca.empty()) {
    GCL_ASSIGN_OR_RETURN(pem.ca, ReadFileNamed(files.ca_flag, files.ca));
    GCL_RETURN_IF_ERROR(FirstCert(files.ca_flag, files.ca, pem.ca).status());
  }
  return pem;
}

}  // namespace gcl::tls
