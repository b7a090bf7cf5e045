// Tokens, roles and TLS of the coordinator: TokenTable parsing and its
// errors, the role table, the loopback rule, and a real Coordinator on
// 127.0.0.1:0 with a tokens file driven over real channels (plaintext, TLS
// and mTLS with certificates made by deploy/make-certs.sh).
#include <gmock/gmock.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/codegen/client_unary_call.h>
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "client/config.h"
#include "client/gclctl.h"
#include "gcl/base/sha256.h"
#include "gcl/v1/job.grpc.pb.h"
#include "gcl/v1/worker.grpc.pb.h"
#include "server/auth_interceptor.h"
#include "server/coordinator.h"
#include "server/token_store.h"
#include "server/token_table.h"
#include "server/transport_security.h"
#include "tests/testing/make_certs.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::server {
namespace {

using ::gcl::testing::MakeCerts;
using ::gcl::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kSpec[] =
    "name: t-pre\n"
    "kind: pretrain\n"
    "dataset: {format: synthetic, image_size: 32}\n"
    "train: {steps: 10, batch: 16}\n";

constexpr char kTokens[] =
    "tokens:\n"
    "  - {token: \"alice-t0ken\", user: alice, role: user}\n"
    "  - {token: \"bob-t0ken\", user: bob, role: user}\n"
    "  - {token: \"w0rk3r\", user: node1, role: worker}\n"
    "  - {token: \"r00t\", user: root, role: admin}\n";

// ---------------------------------------------------------------- TokenTable

TEST(TokenTableTest, LooksUpTokensAndDigests) {
  const std::string digest = absl::AsciiStrToUpper(Sha256Hex("h4shed"));
  GCL_ASSERT_OK_AND_ASSIGN(TokenTable t,
                           TokenTable::Parse(std::string(kTokens) + "  - {token_sha256: " + digest +
                                                 ", user: ops, role: admin}\n",
                                             "tokens.yaml"));
  EXPECT_EQ(t.size(), 5u);
  std::optional<Caller> c = t.Lookup("alice-t0ken");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->user, "alice");
  EXPECT_EQ(c->role, Role::kUser);
  c = t.Lookup("w0rk3r");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->role, Role::kWorker);
  c = t.Lookup("h4shed");
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->user, "ops");
  EXPECT_EQ(c->role, Role::kAdmin);
  EXPECT_FALSE(t.Lookup("alice-t0ke").has_value());
  EXPECT_FALSE(t.Lookup("alice-t0ken ").has_value());
  EXPECT_FALSE(t.Lookup("").has_value());
  EXPECT_FALSE(t.Lookup(digest).has_value());  // the digest is not the token
}

struct BadTokens {
  const char* yaml;
  const char* message;
};

class TokenTableErrorTest : public ::testing::TestWithParam<BadTokens> {};

TEST_P(TokenTableErrorTest, NamesFileLineAndWhat) {
  absl::StatusOr<TokenTable> t = TokenTable::Parse(GetParam().yaml, "tokens.yaml");
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument, GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Errors, TokenTableErrorTest,
    ::testing::Values(
        BadTokens{"tokens:\n  - {token: a, user: u, role: root}\n",
                  "tokens.yaml:2:31: tokens[0].role: unknown role 'root' (expected admin, user or "
                  "worker)"},
        BadTokens{"tokens:\n  - {token: \"\", user: u, role: user}\n",
                  "tokens.yaml:2:13: tokens[0].token: empty"},
        BadTokens{"tokens:\n  - {token: , user: u, role: user}\n", "tokens[0].token: empty"},
        BadTokens{"tokens:\n  - {token: a, role: user}\n",
                  "tokens.yaml:2:5: tokens[0]: missing key `user`"},
        BadTokens{"tokens:\n  - {token: a, user: u}\n",
                  "tokens.yaml:2:5: tokens[0]: missing key `role`"},
        BadTokens{"tokens:\n  - {user: u, role: user}\n",
                  "tokens.yaml:2:5: tokens[0]: missing key `token`"},
        BadTokens{"tokens:\n  - {token: a, user: \"\", role: user}\n",
                  "tokens.yaml:2:22: tokens[0].user: empty"},
        BadTokens{"tokens:\n  - {token: a, usr: u, role: user}\n",
                  "tokens.yaml:2:16: tokens[0].usr: unknown key (expected token or token_sha256, "
                  "user, role)"},
        BadTokens{"tokens:\n  - {token: a, token_sha256: b, user: u, role: user}\n",
                  "tokens.yaml:2:5: tokens[0]: give token or token_sha256, not both"},
        BadTokens{"tokens:\n  - {token_sha256: abc, user: u, role: user}\n",
                  "tokens.yaml:2:20: tokens[0].token_sha256: expected 64 hex digits"},
        BadTokens{"tokens:\n  - {token: [a], user: u, role: user}\n",
                  "tokens.yaml:2:13: tokens[0].token: expected a string"},
        BadTokens{"tokens:\n  - just-a-token\n",
                  "tokens.yaml:2:5: tokens[0]: expected a map {token, user, role}"},
        BadTokens{"tokens: []\n", "tokens.yaml:1:9: tokens: empty list"},
        BadTokens{"tokens: {token: a}\n", "tokens.yaml:1:9: tokens: expected a list"},
        BadTokens{"tokenz:\n  - {token: a, user: u, role: user}\n",
                  "tokens.yaml:1:1: tokenz: unknown key (expected tokens)"},
        BadTokens{"- {token: a, user: u, role: user}\n",
                  "tokens.yaml: expected a map with a `tokens:` list"},
        BadTokens{"", "tokens.yaml: expected a map"},
        BadTokens{"tokens:\n  - {token: a, user: u, role: user\n", "tokens.yaml:3:1: "}));

TEST(TokenTableTest, DuplicateTokenNamesBothLinesButNotTheToken) {
  absl::StatusOr<TokenTable> t = TokenTable::Parse(
      "tokens:\n"
      "  - {token: s3cr3t-value, user: a, role: user}\n"
      "  - {token: other, user: b, role: user}\n"
      "  - {token: s3cr3t-value, user: c, role: admin}\n",
      "tokens.yaml");
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument,
                          "tokens.yaml:4:13: tokens[2].token: duplicate token (also at line 2)"));
  EXPECT_THAT(std::string(t.status().message()), Not(HasSubstr("s3cr3t")));
  // The same secret once in clear and once as its digest is a duplicate too.
  t = TokenTable::Parse(
      "tokens:\n  - {token: s3cr3t-value, user: a, role: user}\n  - {token_sha256: " +
          Sha256Hex("s3cr3t-value") + ", user: c, role: admin}\n",
      "t.yaml");
  EXPECT_THAT(t, StatusIs(absl::StatusCode::kInvalidArgument, "duplicate token (also at line 2)"));
}

TEST(TokenTableTest, ExampleFileParses) {
  const char* src = std::getenv("GCL_SOURCE_DIR");
  if (src == nullptr) GTEST_SKIP() << "GCL_SOURCE_DIR unset";
  GCL_ASSERT_OK_AND_ASSIGN(TokenTable t,
                           TokenTable::LoadFile(std::string(src) + "/deploy/tokens.example.yaml"));
  std::optional<Caller> ops = t.Lookup("change-me");  // its token_sha256 entry
  ASSERT_TRUE(ops.has_value());
  EXPECT_EQ(ops->user, "ops");
  EXPECT_EQ(ops->role, Role::kAdmin);
}

TEST(TokenTableTest, UnreadableFileIsNotFoundNamingIt) {
  EXPECT_THAT(
      TokenTable::LoadFile("/nonexistent/tokens.yaml"),
      StatusIs(absl::StatusCode::kNotFound, "--tokens /nonexistent/tokens.yaml: cannot read"));
}

TEST(TokenStoreTest, ReloadReplacesTheTableAndKeepsItOnAnError) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "tokens.yaml").string();
  std::ofstream(path) << kTokens;
  GCL_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TokenStore> store, TokenStore::Open(path));
  std::shared_ptr<const TokenTable> before = store->Current();
  ASSERT_TRUE(before->Lookup("alice-t0ken").has_value());

  std::ofstream(path) << "tokens:\n  - {token: \"c4r0l\", user: carol, role: user}\n";
  GCL_ASSERT_OK_AND_ASSIGN(size_t n, store->Reload());
  EXPECT_EQ(n, 1u);
  EXPECT_FALSE(store->Current()->Lookup("alice-t0ken").has_value());
  EXPECT_EQ(store->Current()->Lookup("c4r0l")->user, "carol");
  // A call that took the old table keeps it.
  EXPECT_TRUE(before->Lookup("alice-t0ken").has_value());

  std::ofstream(path) << "tokens:\n  - {token: \"d4ve\", user: dave, role: boss}\n";
  EXPECT_THAT(store->Reload(), StatusIs(absl::StatusCode::kInvalidArgument, path + ":2:39: tokens[0].role: unknown role"));
  std::filesystem::remove(path);
  EXPECT_THAT(store->Reload(), StatusIs(absl::StatusCode::kNotFound, path));
  EXPECT_EQ(store->Current()->Lookup("c4r0l")->user, "carol");
}

// ------------------------------------------------------ roles and addresses

TEST(AuthorizeTest, RolesPerService) {
  const Caller alice{"alice", Role::kUser}, node{"node1", Role::kWorker},
      root{"root", Role::kAdmin};
  const std::string submit = "/gcl.v1.JobService/SubmitJob", reg = "/gcl.v1.WorkerService/Register";
  EXPECT_THAT(Authorize(submit, alice), gcl::testing::IsOk());
  EXPECT_THAT(Authorize(submit, root), gcl::testing::IsOk());
  EXPECT_THAT(
      Authorize(submit, node),
      StatusIs(absl::StatusCode::kPermissionDenied,
               "node1 has role worker; /gcl.v1.JobService/SubmitJob needs a user or admin token"));
  EXPECT_THAT(Authorize(reg, node), gcl::testing::IsOk());
  EXPECT_THAT(Authorize(reg, root), gcl::testing::IsOk());
  EXPECT_THAT(Authorize(reg, alice),
              StatusIs(absl::StatusCode::kPermissionDenied, "needs a worker or admin"));
  EXPECT_THAT(Authorize("/other.Service/Do", alice),
              StatusIs(absl::StatusCode::kPermissionDenied, "an admin"));
  EXPECT_THAT(Authorize("/other.Service/Do", root), gcl::testing::IsOk());
  EXPECT_TRUE(IsOpenMethod("/grpc.health.v1.Health/Check"));
  EXPECT_TRUE(IsOpenMethod("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"));
  EXPECT_FALSE(IsOpenMethod("/gcl.v1.JobService/ListJobs"));
}

TEST(AuthorizeTest, OnlyOwnerOrAdminActsOnAJob) {
  EXPECT_THAT(MayActOnJob({"bob", Role::kUser}, "j-1", "bob", "cancel"), gcl::testing::IsOk());
  EXPECT_THAT(MayActOnJob({"root", Role::kAdmin}, "j-1", "bob", "cancel"), gcl::testing::IsOk());
  EXPECT_THAT(MayActOnJob({"alice", Role::kUser}, "j-1", "bob", "cancel"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       "job j-1 belongs to bob; only its owner or an admin may cancel it"));
  EXPECT_THAT(MayActOnJob({"alice", Role::kUser}, "j-1", "", "cancel"),
              StatusIs(absl::StatusCode::kPermissionDenied, "only an admin may cancel it"));
  EXPECT_THAT(MayActOnJob({"node1", Role::kWorker}, "j-1", "node1", "cancel"),
              StatusIs(absl::StatusCode::kPermissionDenied, "belongs to node1"));
}

TEST(LoopbackTest, ClassifiesListenAddresses) {
  for (const char* local :
       {"127.0.0.1:7070", "127.3.2.1:0", "localhost:7070", "[::1]:7070", "ipv4:127.0.0.1:1",
        "ipv6:[::1]:1", "[::ffff:127.0.0.1]:1", "unix:/tmp/gcl.sock", "::1"}) {
    EXPECT_TRUE(IsLoopbackListen(local)) << local;
  }
  for (const char* remote : {"0.0.0.0:7070", "[::]:7070", ":7070", "10.0.0.5:7070", "gpu1.lab:7070",
                             "128.0.0.1:1", "[::ffff:10.0.0.1]:1", "localhost.evil.org:1"}) {
    EXPECT_FALSE(IsLoopbackListen(remote)) << remote;
  }
}

TEST(ClientConfigTest, TlsSettingsFromFlagsEnvAndConfigFile) {
  gcl::testing::TempDir dir;
  const std::string cfg = (dir.path() / "config.yaml").string();
  std::ofstream(cfg)
      << "token: \"t0 \"\ntls_ca: ca.pem\ntls_cert: /abs/client.pem\ntls_key: client.key\n";
  client::ConfigSources src;
  src.config_path = cfg;
  GCL_ASSERT_OK_AND_ASSIGN(client::ClientConfig c, client::ResolveConfig(src));
  EXPECT_EQ(c.token, "t0");
  EXPECT_EQ(c.tls_ca, (dir.path() / "ca.pem").string());  // relative to the config file
  EXPECT_EQ(c.tls_cert, "/abs/client.pem");
  EXPECT_EQ(c.tls_key, (dir.path() / "client.key").string());
  src.env_tls_ca = "env-ca.pem";
  src.flag_tls_ca = "flag-ca.pem";
  GCL_ASSERT_OK_AND_ASSIGN(c, client::ResolveConfig(src));
  EXPECT_EQ(c.tls_ca, "flag-ca.pem");
  src.flag_tls_ca.clear();
  GCL_ASSERT_OK_AND_ASSIGN(c, client::ResolveConfig(src));
  EXPECT_EQ(c.tls_ca, "env-ca.pem");

  client::ConfigSources bare;
  bare.flag_tls_cert = "client.pem";
  bare.flag_tls_ca = "ca.pem";
  EXPECT_THAT(client::ResolveConfig(bare),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-cert and --tls-key go together"));
  bare.flag_tls_key = "client.key";
  bare.flag_tls_ca.clear();
  EXPECT_THAT(client::ResolveConfig(bare),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-cert needs --tls-ca"));
  std::ofstream(cfg) << "tls_ca: [a, b]\n";
  src = client::ConfigSources();
  src.config_path = cfg;
  EXPECT_THAT(client::ResolveConfig(src), StatusIs(absl::StatusCode::kInvalidArgument,
                                                   cfg + ":1:9: tls_ca: expected a string"));
}

// ------------------------------------------------------------ certificates

// ------------------------------------------------- Coordinator::Create rules

class CreateTest : public ::testing::Test {
 protected:
  Coordinator::Options Base() {
    Coordinator::Options o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_.path() / "registry.db").string();
    return o;
  }
  gcl::testing::TempDir dir_;
};

TEST_F(CreateTest, NonLoopbackWithoutTlsAndTokensIsRefused) {
  Coordinator::Options o = Base();
  o.listen = "0.0.0.0:0";
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       "--listen 0.0.0.0:0 is reachable from other hosts but has no "
                       "TLS and no tokens"));
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kFailedPrecondition, "--insecure-allow-remote"));
  o.tokens_file = (dir_.path() / "tokens.yaml").string();
  std::ofstream(o.tokens_file) << kTokens;
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kFailedPrecondition, "has no TLS:"));
  o.allow_insecure_remote = true;
  GCL_EXPECT_OK(Coordinator::Create(o));
  o = Base();
  o.listen = "[::]:0";
  o.allow_insecure_remote = true;
  GCL_EXPECT_OK(Coordinator::Create(o));
}

TEST_F(CreateTest, BadSecurityOptionsAreClearErrors) {
  Coordinator::Options o = Base();
  o.tls_cert = "server.pem";
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-cert and --tls-key go together"));
  o = Base();
  o.tls_client_ca = "ca.pem";
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument, "--tls-client-ca needs --tls-cert"));
  o = Base();
  o.tls_cert = "/nonexistent/server.pem";
  o.tls_key = "/nonexistent/server.key";
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kNotFound, "--tls-cert /nonexistent/server.pem"));
  o = Base();
  o.tokens_file = (dir_.path() / "tokens.yaml").string();
  std::ofstream(o.tokens_file) << "tokens:\n  - {token: a, user: u, role: superuser}\n";
  EXPECT_THAT(Coordinator::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       o.tokens_file + ":2:31: tokens[0].role: unknown role"));
}

// ------------------------------------------- a Coordinator with tokens, live

class AuthCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Coordinator::Options o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_.path() / "registry.db").string();
    o.tokens_file = (dir_.path() / "tokens.yaml").string();
    o.shutdown_grace_ms = 500;
    o.watch_poll_ms = 20;
    std::ofstream(o.tokens_file) << kTokens;
    GCL_ASSERT_OK_AND_ASSIGN(coordinator_, Coordinator::Create(o));
    GCL_ASSERT_OK(coordinator_->Start());
    auto channel = grpc::CreateChannel(coordinator_->address(), grpc::InsecureChannelCredentials());
    channel_ = channel;
    jobs_ = gcl::v1::JobService::NewStub(channel);
    workers_ = gcl::v1::WorkerService::NewStub(channel);
  }

  // A context carrying `token` ("" = none).
  static std::unique_ptr<grpc::ClientContext> Ctx(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }

  grpc::Status Submit(const std::string& token, gcl::v1::Job* job) {
    gcl::v1::SubmitJobRequest req;
    req.set_spec_yaml(kSpec);
    gcl::v1::SubmitJobResponse resp;
    grpc::Status s = jobs_->SubmitJob(Ctx(token).get(), req, &resp);
    if (job != nullptr) *job = resp.job();
    return s;
  }

  grpc::Status Cancel(const std::string& token, const std::string& id,
                      gcl::v1::CancelJobResponse* resp) {
    gcl::v1::CancelJobRequest req;
    req.set_id(id);
    return jobs_->CancelJob(Ctx(token).get(), req, resp);
  }

  size_t StoredJobs() {
    storage::JobFilter all;
    absl::StatusOr<storage::JobPage> page = coordinator_->registry().ListJobs(all);
    EXPECT_TRUE(page.ok());
    return page.ok() ? page->jobs.size() : 0;
  }

  gcl::testing::TempDir dir_;
  std::unique_ptr<Coordinator> coordinator_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<gcl::v1::JobService::Stub> jobs_;
  std::unique_ptr<gcl::v1::WorkerService::Stub> workers_;
};

TEST_F(AuthCoordinatorTest, MissingOrWrongTokenIsUnauthenticated) {
  gcl::v1::ListJobsRequest req;
  gcl::v1::ListJobsResponse resp;
  grpc::Status s = jobs_->ListJobs(Ctx("").get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(s.error_message(), "missing token: pass --token or set GCL_TOKEN");
  s = jobs_->ListJobs(Ctx("alice-t0ke").get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("invalid token"));
  grpc::ClientContext basic;
  basic.AddMetadata("authorization", "Basic YWxpY2U6cHc=");
  s = jobs_->ListJobs(&basic, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(s.error_message(), HasSubstr("'Bearer <token>'"));
  EXPECT_TRUE(jobs_->ListJobs(Ctx("alice-t0ken").get(), req, &resp).ok());
  grpc::ClientContext lower;  // the scheme is case-insensitive
  lower.AddMetadata("authorization", "bearer alice-t0ken");
  EXPECT_TRUE(jobs_->ListJobs(&lower, req, &resp).ok());
}

TEST_F(AuthCoordinatorTest, DeniedSubmitStoresNothing) {
  EXPECT_EQ(Submit("", nullptr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Submit("nope", nullptr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  grpc::Status s = Submit("w0rk3r", nullptr);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("node1 has role worker"));
  EXPECT_EQ(StoredJobs(), 0u);
}

TEST_F(AuthCoordinatorTest, DeniedCallsLeakNoData) {
  gcl::v1::Job job;
  ASSERT_TRUE(Submit("alice-t0ken", &job).ok());
  gcl::v1::ListJobsResponse list;
  grpc::Status s = jobs_->ListJobs(Ctx("w0rk3r").get(), gcl::v1::ListJobsRequest(), &list);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(list.jobs_size(), 0);
  gcl::v1::GetJobRequest get;
  get.set_id(job.id());
  gcl::v1::Job got;
  s = jobs_->GetJob(Ctx("").get(), get, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(got.id(), "");
  // A stream: the status comes, no event does.
  gcl::v1::WatchJobRequest watch;
  watch.set_id(job.id());
  auto ctx = Ctx("w0rk3r");
  auto reader = jobs_->WatchJob(ctx.get(), watch);
  gcl::v1::JobEvent e;
  EXPECT_FALSE(reader->Read(&e));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthCoordinatorTest, WorkerServiceNeedsAWorkerToken) {
  gcl::v1::RegisterRequest req;
  req.set_worker_id("w1");
  req.add_devices()->set_id("cpu:0");
  gcl::v1::RegisterResponse resp;
  grpc::Status s = workers_->Register(Ctx("alice-t0ken").get(), req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(),
              HasSubstr("alice has role user; /gcl.v1.WorkerService/Register needs a worker"));
  EXPECT_THAT(coordinator_->registry().GetWorker("w1"), StatusIs(absl::StatusCode::kNotFound, ""));
  EXPECT_EQ(workers_->Register(Ctx("").get(), req, &resp).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_THAT(coordinator_->registry().GetWorker("w1"), StatusIs(absl::StatusCode::kNotFound, ""));
  s = workers_->Register(Ctx("w0rk3r").get(), req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  GCL_EXPECT_OK(coordinator_->registry().GetWorker("w1"));
  gcl::v1::HeartbeatRequest hb;
  hb.set_worker_id("w1");
  gcl::v1::HeartbeatResponse hb_resp;
  EXPECT_TRUE(workers_->Heartbeat(Ctx("r00t").get(), hb, &hb_resp).ok());  // admins may too
}

TEST_F(AuthCoordinatorTest, WorkerTokenOnJobServiceIsDenied) {
  gcl::v1::GetJobRequest req;
  req.set_id("j-000000000000");
  gcl::v1::Job job;
  grpc::Status s = jobs_->GetJob(Ctx("w0rk3r").get(), req, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("needs a user or admin token"));
}

TEST_F(AuthCoordinatorTest, SubmitRecordsTheOwner) {
  gcl::v1::Job job;
  ASSERT_TRUE(Submit("alice-t0ken", &job).ok());
  EXPECT_EQ(job.owner(), "alice");
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobRecord rec, coordinator_->registry().GetJob(job.id()));
  EXPECT_EQ(rec.owner, "alice");
}

TEST_F(AuthCoordinatorTest, ClientCannotClaimAnotherCaller) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer alice-t0ken");
  ctx.AddMetadata("gcl-verified-user", "root");
  ctx.AddMetadata("gcl-verified-role", "admin");
  gcl::v1::SubmitJobRequest req;
  req.set_spec_yaml(kSpec);
  gcl::v1::SubmitJobResponse resp;
  ASSERT_TRUE(jobs_->SubmitJob(&ctx, req, &resp).ok());
  EXPECT_EQ(resp.job().owner(), "alice");
  gcl::v1::Job bobs;
  ASSERT_TRUE(Submit("bob-t0ken", &bobs).ok());
  grpc::ClientContext cancel_ctx;
  cancel_ctx.AddMetadata("authorization", "Bearer alice-t0ken");
  cancel_ctx.AddMetadata("gcl-verified-role", "admin");
  gcl::v1::CancelJobRequest cancel;
  cancel.set_id(bobs.id());
  gcl::v1::CancelJobResponse cancelled;
  EXPECT_EQ(jobs_->CancelJob(&cancel_ctx, cancel, &cancelled).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
}

TEST_F(AuthCoordinatorTest, UsersCancelOnlyTheirOwnJobsAdminsAny) {
  gcl::v1::Job bobs, bobs2;
  ASSERT_TRUE(Submit("bob-t0ken", &bobs).ok());
  ASSERT_TRUE(Submit("bob-t0ken", &bobs2).ok());
  gcl::v1::CancelJobResponse resp;
  grpc::Status s = Cancel("alice-t0ken", bobs.id(), &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(),
            "job " + bobs.id() + " belongs to bob; only its owner or an admin may cancel it");
  GCL_ASSERT_OK_AND_ASSIGN(storage::JobRecord rec, coordinator_->registry().GetJob(bobs.id()));
  EXPECT_EQ(rec.state, storage::JobState::kQueued);  // untouched

  s = Cancel("bob-t0ken", bobs.id(), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.job().state(), gcl::v1::JOB_STATE_CANCELLED);
  s = Cancel("r00t", bobs2.id(), &resp);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.job().state(), gcl::v1::JOB_STATE_CANCELLED);
}

TEST_F(AuthCoordinatorTest, ReloadedTokensApplyToTheNextCall) {
  ASSERT_TRUE(Submit("alice-t0ken", nullptr).ok());
  std::ofstream(dir_.path() / "tokens.yaml")
      << "tokens:\n  - {token: \"c4r0l\", user: carol, role: user}\n";
  GCL_ASSERT_OK_AND_ASSIGN(size_t n, coordinator_->ReloadTokens());
  EXPECT_EQ(n, 1u);
  EXPECT_EQ(Submit("alice-t0ken", nullptr).error_code(), grpc::StatusCode::UNAUTHENTICATED);
  gcl::v1::Job job;
  ASSERT_TRUE(Submit("c4r0l", &job).ok());
  EXPECT_EQ(job.owner(), "carol");
}

TEST(ReloadTokensTest, WithoutTokensThereIsNothingToReload) {
  gcl::testing::TempDir dir;
  Coordinator::Options o;
  o.listen = "127.0.0.1:0";
  o.db_path = (dir.path() / "registry.db").string();
  GCL_ASSERT_OK_AND_ASSIGN(auto coordinator, Coordinator::Create(o));
  EXPECT_THAT(coordinator->ReloadTokens(),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no --tokens file: auth is off"));
}

TEST_F(AuthCoordinatorTest, HealthNeedsNoToken) {
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1), response;
  grpc::ClientContext ctx;
  const grpc::internal::RpcMethod method("/grpc.health.v1.Health/Check",
                                         grpc::internal::RpcMethod::NORMAL_RPC);
  grpc::Status s = grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
      channel_.get(), method, &ctx, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (auto& sl : slices) bytes.append(reinterpret_cast<const char*>(sl.begin()), sl.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // SERVING
}

TEST_F(AuthCoordinatorTest, UnknownMethodIsRefusedWithoutHarm) {
  // A newer client calling a method this coordinator lacks, with a payload.
  auto call = [&](const std::string& token) {
    grpc::Slice payload(
        std::string("\x0a\x03"
                    "abc",
                    5));
    grpc::ByteBuffer request(&payload, 1), response;
    auto ctx = Ctx(token);
    const grpc::internal::RpcMethod method("/gcl.v1.JobService/NoSuchMethod",
                                           grpc::internal::RpcMethod::NORMAL_RPC);
    return grpc::internal::BlockingUnaryCall<grpc::ByteBuffer, grpc::ByteBuffer>(
        channel_.get(), method, ctx.get(), request, &response);
  };
  EXPECT_EQ(call("").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(call("w0rk3r").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(call("alice-t0ken").error_code(), grpc::StatusCode::UNIMPLEMENTED);
  gcl::v1::Job job;
  EXPECT_TRUE(Submit("alice-t0ken", &job).ok());  // still serving
}

TEST_F(AuthCoordinatorTest, GclctlSendsTheTokenAndExplainsRefusals) {
  client::ConfigSources src;
  src.flag_addr = coordinator_->address();
  auto run = [&](const std::string& token, std::vector<std::string> args, std::string* err) {
    src.flag_token = token;
    std::ostringstream o, e;
    int rc = client::RunGclctl(args, src, o, e);
    *err = e.str();
    return rc;
  };
  std::string err;
  EXPECT_EQ(run("alice-t0ken", {"list"}, &err), 0) << err;
  EXPECT_EQ(run("", {"list"}, &err), 1);
  EXPECT_THAT(err, HasSubstr("missing token: pass --token or set GCL_TOKEN"));
  EXPECT_THAT(err, HasSubstr("the coordinator's admin hands out tokens"));
  EXPECT_EQ(run("nope", {"list"}, &err), 1);
  EXPECT_THAT(err, HasSubstr("invalid token"));
  EXPECT_EQ(run("w0rk3r", {"list"}, &err), 1);
  EXPECT_THAT(err, HasSubstr("gclctl: not allowed: node1 has role worker"));
  gcl::v1::Job bobs;
  ASSERT_TRUE(Submit("bob-t0ken", &bobs).ok());
  EXPECT_EQ(run("alice-t0ken\n", {"cancel", bobs.id()}, &err), 1);  // a trailing newline is trimmed
  EXPECT_EQ(err, "gclctl: not allowed: job " + bobs.id() +
                     " belongs to bob; only its owner or an admin may cancel it\n");
}

// ------------------------------------------------------------- TLS, mTLS

class TlsCoordinatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    certs_ = (dir_.path() / "certs").string();
    if (!MakeCerts(certs_)) GTEST_SKIP() << "openssl or GCL_SOURCE_DIR missing";
  }

  void Start(bool mtls) {
    Coordinator::Options o;
    o.listen = "127.0.0.1:0";
    o.db_path = (dir_.path() / "registry.db").string();
    o.tokens_file = (dir_.path() / "tokens.yaml").string();
    o.tls_cert = certs_ + "/server.pem";
    o.tls_key = certs_ + "/server.key";
    if (mtls) o.tls_client_ca = certs_ + "/ca.pem";
    o.tls_reload_seconds = reload_seconds_;
    o.shutdown_grace_ms = 200;
    std::ofstream(o.tokens_file) << kTokens;
    GCL_ASSERT_OK_AND_ASSIGN(coordinator_, Coordinator::Create(o));
    GCL_ASSERT_OK(coordinator_->Start());
  }

  static std::string Read(const std::string& path) {
    std::ifstream in(path);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  // ListJobs as alice to localhost:PORT (a name in the certificate).
  grpc::Status List(std::shared_ptr<grpc::ChannelCredentials> creds) {
    auto stub = gcl::v1::JobService::NewStub(
        grpc::CreateChannel("localhost:" + std::to_string(coordinator_->port()), creds));
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer alice-t0ken");
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    gcl::v1::ListJobsResponse resp;
    return stub->ListJobs(&ctx, gcl::v1::ListJobsRequest(), &resp);
  }

  gcl::testing::TempDir dir_;
  std::string certs_;
  int reload_seconds_ = 60;
  std::unique_ptr<Coordinator> coordinator_;
};

TEST_F(TlsCoordinatorTest, HandshakeWithGeneratedCerts) {
  Start(/*mtls=*/false);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = Read(certs_ + "/ca.pem");
  grpc::Status s = List(grpc::SslCredentials(tls));
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(List(grpc::InsecureChannelCredentials()).error_code(), grpc::StatusCode::UNAVAILABLE);
  // A CA that did not sign the server's certificate.
  gcl::testing::TempDir other;
  ASSERT_TRUE(MakeCerts(other.path()));
  tls.pem_root_certs = Read((other.path() / "ca.pem").string());
  s = List(grpc::SslCredentials(tls));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("certificate verify failed"));
}

TEST_F(TlsCoordinatorTest, MutualTlsNeedsAClientCertificate) {
  Start(/*mtls=*/true);
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = Read(certs_ + "/ca.pem");
  EXPECT_EQ(List(grpc::SslCredentials(tls)).error_code(), grpc::StatusCode::UNAVAILABLE);
  tls.pem_cert_chain = Read(certs_ + "/client.pem");
  tls.pem_private_key = Read(certs_ + "/client.key");
  grpc::Status s = List(grpc::SslCredentials(tls));
  EXPECT_TRUE(s.ok()) << s.error_message();
}

TEST_F(TlsCoordinatorTest, RotatedCertificatesServeNewHandshakesWithoutARestart) {
  reload_seconds_ = 1;
  Start(/*mtls=*/true);
  // Trusting the CA in ca_dir, presenting the client certificate in client_dir.
  auto creds = [&](const std::string& ca_dir, const std::string& client_dir) {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = Read(ca_dir + "/ca.pem");
    tls.pem_cert_chain = Read(client_dir + "/client.pem");
    tls.pem_private_key = Read(client_dir + "/client.key");
    return grpc::SslCredentials(tls);
  };
  const std::string old = (dir_.path() / "old").string();
  std::filesystem::copy(certs_, old);
  grpc::Status s = List(creds(old, old));
  ASSERT_TRUE(s.ok()) << s.error_message();
  // A new CA with new server and client certificates, moved into place.
  const std::string fresh = (dir_.path() / "fresh").string();
  ASSERT_TRUE(MakeCerts(fresh));
  // Half-way (a certificate whose key is not there yet): refused, the old
  // pair stays in use.
  std::filesystem::copy_file(fresh + "/server.pem", certs_ + "/server.pem",
                             std::filesystem::copy_options::overwrite_existing);
  EXPECT_THAT(coordinator_->ReloadTls(),
              StatusIs(absl::StatusCode::kInvalidArgument, "not the private key of the certificate"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // gRPC's watcher had its look
  s = List(creds(old, old));
  EXPECT_TRUE(s.ok()) << "a mismatched certificate and key replaced a good pair: " << s.error_message();
  // The rest arrives; the sweeper (every second here) picks the set up.
  for (const char* f : {"server.key", "server.pem", "ca.pem"}) {
    std::filesystem::copy_file(fresh + "/" + f, certs_ + "/" + f + ".new");
    std::filesystem::rename(certs_ + "/" + f + ".new", certs_ + "/" + f);
  }
  for (int i = 0; i < 100 && !(s = List(creds(fresh, fresh))).ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(s.ok()) << "the rotated files were not in use within 10 s: " << s.error_message();
  // The old CA no longer verifies the server's certificate, and the server
  // no longer accepts a client certificate of the old CA.
  EXPECT_EQ(List(creds(old, fresh)).error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_EQ(List(creds(fresh, old)).error_code(), grpc::StatusCode::UNAVAILABLE);
}

TEST_F(TlsCoordinatorTest, NonLoopbackWithTlsAndTokensIsAllowed) {
  Coordinator::Options o;
  o.listen = "0.0.0.0:0";
  o.db_path = (dir_.path() / "registry.db").string();
  o.tokens_file = (dir_.path() / "tokens.yaml").string();
  o.tls_cert = certs_ + "/server.pem";
  o.tls_key = certs_ + "/server.key";
  std::ofstream(o.tokens_file) << kTokens;
  GCL_EXPECT_OK(Coordinator::Create(o));
}

}  // namespace
}  // namespace gcl::server
