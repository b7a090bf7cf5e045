#include "client/channel.h"

#include "gcl/base/read_file.h"
#include "gcl/base/status_macros.h"

#include <grpcpp/support/client_interceptor.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace gcl::client {
namespace {

using grpc::experimental::InterceptionHookPoints;

absl::StatusOr<std::string> ReadPem(const char* flag, const std::string& path, const char* marker) {
  GCL_ASSIGN_OR_RETURN(std::string text, ReadFileNamed(flag, path));
  if (!absl::StrContains(text, marker)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " ", path, ": not a PEM file (no '", marker, "' line)"));
  }
  return text;
}

class BearerInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit BearerInterceptor(std::string value) : value_(std::move(value)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      m->GetSendInitialMetadata()->emplace("authorization", value_);
    }
    m->Proceed();
  }

 private:
  const std::string value_;
};

class BearerInterceptorFactory final
    : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit BearerInterceptorFactory(const std::string& token) : value_("Bearer " + token) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(
      grpc::experimental::ClientRpcInfo*) override {
    return new BearerInterceptor(value_);
  }

 private:
  const std::string value_;
};

}  // namespace

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentialsFromFiles(
    const std::string& ca, const std::string& cert, const std::string& key) {
  if (ca.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  absl::StatusOr<std::string> pem = ReadPem("--tls-ca", ca, "-----BEGIN CERTIFICATE-----");
  if (!pem.ok()) return pem.status();
  options.pem_root_certs = std::move(*pem);
  if (!cert.empty()) {
    pem = ReadPem("--tls-cert", cert, "-----BEGIN CERTIFICATE-----");
    if (!pem.ok()) return pem.status();
    options.pem_cert_chain = std::move(*pem);
    pem = ReadPem("--tls-key", key, "PRIVATE KEY-----");
    if (!pem.ok()) return pem.status();
    options.pem_private_key = std::move(*pem);
  }
  return grpc::SslCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> OpenChannel(const ClientConfig& config,
                                                           const grpc::ChannelArguments& args) {
  absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> creds =
      ChannelCredentialsFromFiles(config.tls_ca, config.tls_cert, config.tls_key);
  if (!creds.ok()) return creds.status();
  std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
  if (!config.token.empty())
    interceptors.push_back(std::make_unique<BearerInterceptorFactory>(config.token));
  return grpc::experimental::CreateCustomChannelWithInterceptors(config.addr, *creds, args,
                                                                 std::move(interceptors));
}

}  // namespace gcl::client
