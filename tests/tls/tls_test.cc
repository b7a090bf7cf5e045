// ReadTlsFiles' errors, and TlsReloader on both ends of a real TLS/mTLS
// connection over loopback while the files are replaced: re-issued
// certificates of a new CA are used by the next handshake without new
// credentials objects, and a half-copied set is refused while the old one
// keeps working. Certificates come from deploy/make-certs.sh.
#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/make_certs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "tls/tls_files.h"
#include "tls/tls_reloader.h"

namespace gcl::tls {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::MakeCerts;
using ::gcl::testing::StatusIs;

TEST(ReadTlsFilesTest, ErrorsNameFlagAndFile) {
  gcl::testing::TempDir dir;
  const std::string certs = (dir.path() / "certs").string();
  if (!MakeCerts(certs)) GTEST_SKIP() << "openssl or GCL_SOURCE_DIR missing";
  const std::string junk = (dir.path() / "junk.pem").string();
  std::ofstream(junk) << "not a certificate\n";
  const std::string cert = certs + "/server.pem", key = certs + "/server.key";
  EXPECT_THAT(ReadTlsFiles({certs + "/nope.pem", key, ""}),
              StatusIs(absl::StatusCode::kNotFound, "--tls-cert " + certs + "/nope.pem: cannot read"));
  EXPECT_THAT(ReadTlsFiles({junk, key, ""}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-cert " + junk + ": no PEM certificate"));
  EXPECT_THAT(ReadTlsFiles({cert, junk, ""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--tls-key " + junk + ": no unencrypted PEM private key"));
  EXPECT_THAT(ReadTlsFiles({cert, certs + "/client.key", ""}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--tls-key " + certs + "/client.key: not the private key of the certificate in " +
                           cert));
  EXPECT_THAT(ReadTlsFiles({cert, key, junk, "--tls-client-ca"}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-client-ca " + junk));
  // A client without a certificate of its own: the CA alone.
  EXPECT_THAT(ReadTlsFiles({"", "", junk}),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-ca " + junk + ": no PEM certificate"));
  GCL_ASSERT_OK_AND_ASSIGN(TlsPem pem, ReadTlsFiles({"", "", certs + "/ca.pem"}));
  EXPECT_TRUE(pem.cert.empty() && pem.key.empty());
  GCL_ASSERT_OK_AND_ASSIGN(pem, ReadTlsFiles({cert, key, certs + "/ca.pem"}));
  EXPECT_THAT(pem.ca, ::testing::HasSubstr("-----BEGIN CERTIFICATE-----"));
}

// What a Reload call did, or its error.
std::string Outcome(const absl::StatusOr<bool>& r) {
  return r.ok() ? (*r ? "changed" : "unchanged") : std::string(r.status().message());
}

// A gRPC server (a generic service that answers UNIMPLEMENTED) over the server end's reloader (mTLS), and
// channels over the client end's: a channel that becomes READY has completed
// the handshake, both certificates verified.
class TlsReloaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_files_ = (dir_.path() / "server").string();
    client_files_ = (dir_.path() / "client").string();
    if (!MakeCerts(server_files_)) GTEST_SKIP() << "openssl or GCL_SOURCE_DIR missing";
    fs::copy(server_files_, client_files_);
    GCL_ASSERT_OK_AND_ASSIGN(
        server_tls_, TlsReloader::Create({server_files_ + "/server.pem", server_files_ + "/server.key",
                                          server_files_ + "/ca.pem", "--tls-client-ca"},
                                         (dir_.path() / "server.tls").string(), "server"));
    grpc::ServerBuilder builder;
    builder.RegisterCallbackGenericService(&service_);  // a server needs one
    builder.AddListeningPort("127.0.0.1:0", server_tls_->ServerCredentials(), &port_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    GCL_ASSERT_OK_AND_ASSIGN(
        client_tls_, TlsReloader::Create({client_files_ + "/client.pem", client_files_ + "/client.key",
                                          client_files_ + "/ca.pem"},
                                         (dir_.path() / "client.tls").string(), "client"));
    creds_ = client_tls_->ChannelCredentials();
  }

  void TearDown() override {
    if (server_) server_->Shutdown(std::chrono::system_clock::now());
  }

  // A new connection (its own subchannel pool: no reuse of an earlier
  // handshake) to host:port, expecting the server's certificate to name
  // `name` when set (else host); true when it becomes READY within `wait`.
  bool Connects(const std::string& host = "localhost",
                std::chrono::milliseconds wait = std::chrono::milliseconds(3000),
                const std::string& name = "") {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    if (!name.empty()) args.SetSslTargetNameOverride(name);
    auto channel = grpc::CreateCustomChannel(host + ":" + std::to_string(port_), creds_, args);
    return channel->WaitForConnected(std::chrono::system_clock::now() + wait);
  }

  // Polls Connects() for up to 5 s (gRPC's watchers look every second);
  // true when it returned `want`.
  bool Eventually(bool want) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (Connects("localhost", std::chrono::milliseconds(500)) != want) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return true;
  }

  // Replaces `files`' name with the one from `from`, as an operator's
  // copy-then-rename does.
  static void Install(const std::string& from, const std::string& files, const char* name) {
    fs::copy_file(from + "/" + name, files + "/" + name + ".new");
    fs::rename(files + "/" + name + ".new", files + "/" + name);
  }

  gcl::testing::TempDir dir_;
  std::string server_files_, client_files_;
  std::unique_ptr<TlsReloader> server_tls_, client_tls_;
  grpc::CallbackGenericService service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
};

TEST_F(TlsReloaderTest, ChannelVerifiesTheServerAndPresentsItsCertificate) {
  EXPECT_TRUE(Connects("localhost"));
  EXPECT_TRUE(Connects("127.0.0.1"));  // an IP name in the certificate
  // A name the server's certificate does not hold.
  EXPECT_FALSE(Connects("127.0.0.1", std::chrono::milliseconds(2000), "elsewhere.example"));
  // Without a client certificate the mTLS server refuses.
  gcl::testing::TempDir other;
  GCL_ASSERT_OK_AND_ASSIGN(
      auto anonymous, TlsReloader::Create({"", "", client_files_ + "/ca.pem"},
                                          (other.path() / "tls").string(), "anonymous"));
  creds_ = anonymous->ChannelCredentials();
  EXPECT_FALSE(Connects("localhost", std::chrono::milliseconds(2000)));
  creds_ = nullptr;  // not past its reloader, which removes the files it serves
}

TEST_F(TlsReloaderTest, RotationToANewCaWithoutNewCredentials) {
  ASSERT_TRUE(Connects());
  const std::string fresh = (dir_.path() / "fresh").string();
  ASSERT_TRUE(MakeCerts(fresh));
  // The server moves to the new CA first: the client, still trusting the
  // old one and presenting an old certificate, cannot connect.
  for (const char* f : {"server.key", "server.pem", "ca.pem"}) Install(fresh, server_files_, f);
  EXPECT_EQ(Outcome(server_tls_->Reload()), "changed");
  EXPECT_TRUE(Eventually(false)) << "the server kept its old certificates";
  // Half-way on the client (a certificate without its key): refused by the
  // checks; the served set does not change.
  Install(fresh, client_files_, "client.pem");
  EXPECT_THAT(client_tls_->Reload(), StatusIs(absl::StatusCode::kInvalidArgument,
                                              "not the private key of the certificate"));
  for (const char* f : {"client.key", "ca.pem"}) Install(fresh, client_files_, f);
  EXPECT_EQ(Outcome(client_tls_->Reload()), "changed");
  EXPECT_EQ(Outcome(client_tls_->Reload()), "unchanged");
  // The same credentials object, new files: connects within gRPC's 1 s refresh.
  EXPECT_TRUE(Eventually(true)) << "the client did not take up the rotated files";
}

}  // namespace
}  // namespace gcl::tls
