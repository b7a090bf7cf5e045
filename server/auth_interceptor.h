// Bearer-token authentication and role checks for every RPC of the
// coordinator, on every transport (plaintext loopback, TLS, mTLS).
//
// A gRPC server interceptor and not an AuthMetadataProcessor: the latter is
// ignored on InsecureServerCredentials (architecture.md "Measured pitfalls"),
// and the embedded default serves plaintext on loopback.
//
// Per call the interceptor reads `authorization: Bearer <token>`, looks the
// token up in the TokenTable and checks the caller's role against the method:
//   /gcl.v1.JobService/*                         user, admin
//   /gcl.v1.WorkerService/*                      worker, admin
//   /grpc.health.v1.Health/*, server reflection   anyone, no token needed
//   anything else                                admin
// No token: UNAUTHENTICATED "missing token: pass --token or set GCL_TOKEN";
// an unknown or malformed one: UNAUTHENTICATED "invalid token: ..."; a role
// that may not call the method: PERMISSION_DENIED naming user, role and method.
// With no TokenTable (auth off) every caller is user "" with role admin.
//
// gRPC 1.51 gives server interceptors no way to stop a call before its
// handler runs (no Hijack on the server; TryCancel would turn the status into
// CANCELLED). So for a denied call the interceptor
//   1. empties each request message of a gcl.v1 method before the handler
//      sees it (a gcl.v1 handler must do nothing on an empty request: an empty
//      job/worker id or spec is an error - keep it so for new methods),
//   2. empties every response message it sends (nothing leaks), and
//   3. replaces the final status with the denial.
// Handlers that act on identity call CallerOf(), which fails for a denied call.
#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/server_interceptor.h>

#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "server/token_store.h"
#include "server/token_table.h"

namespace gcl::server {

// The caller of a call the interceptor let through, as it wrote it into the
// call's received metadata (it erases any client-sent copy first: a client
// cannot claim a user). kUnauthenticated when there is none: the call was
// denied, or the interceptor is not installed. REQUIRES: ctx non-null.
absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase* ctx);

// The caller for `metadata` (a call's client metadata); tokens == nullptr
// means auth off ({"", admin}). kUnauthenticated for a missing, malformed or
// unknown token.
absl::StatusOr<Caller> Authenticate(
    const TokenTable* tokens, const std::multimap<grpc::string_ref, grpc::string_ref>& metadata);

// True for methods anyone may call without a token (health, reflection).
bool IsOpenMethod(std::string_view method);

// OK when `caller` may call `method` ("/package.Service/Method"), else
// kPermissionDenied naming the user, its role and the roles the method needs.
absl::Status Authorize(std::string_view method, const Caller& caller);

// OK when `caller` may `verb` (e.g. "cancel") the job `job_id` owned by
// `owner`: admins always, users only their own jobs; else kPermissionDenied
// "job j-... belongs to bob; only its owner or an admin may cancel it".
absl::Status MayActOnJob(const Caller& caller, std::string_view job_id, std::string_view owner,
                         std::string_view verb);

// Installs the check on a server:
//   builder.experimental().SetInterceptorCreators({AuthInterceptorFactory(tokens)}).
// Thread-safe; creates one interceptor per call.
class AuthInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // tokens == nullptr: auth off (the interceptor still strips client-sent
  // caller metadata and records {"", admin}). Each call is checked against
  // the store's current table. REQUIRES: tokens outlives the factory.
  explicit AuthInterceptorFactory(const TokenStore* tokens) : tokens_(tokens) {}

  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  const TokenStore* const tokens_;
};

}  // namespace gcl::server
