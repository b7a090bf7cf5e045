#include "client/channel.h"

#include <grpcpp/support/client_interceptor.h>

#include <utility>
#include <vector>

#include "gcl/base/status_macros.h"
#include "tls/tls_files.h"

namespace gcl::client {
namespace {

using grpc::experimental::InterceptionHookPoints;

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
  GCL_ASSIGN_OR_RETURN(tls::TlsPem pem, tls::ReadTlsFiles({cert, key, ca}));
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = std::move(pem.ca);
  options.pem_cert_chain = std::move(pem.cert);
  options.pem_private_key = std::move(pem.key);
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
