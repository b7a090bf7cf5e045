#include "server/auth_interceptor.h"

#include <google/protobuf/message.h>

#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "server/grpc_status.h"

namespace gcl::server {
namespace {

using grpc::experimental::InterceptionHookPoints;

// Written by the interceptor into the call's client metadata. A server
// interceptor cannot attach objects to a ServerContext (no user-data slot in
// 1.51, and its AuthContext belongs to the connection, shared by all calls),
// but the received metadata is per call and handlers read it through the
// same ServerContext.
constexpr char kVerifiedUserKey[] = "gcl-verified-user";
constexpr char kVerifiedRoleKey[] = "gcl-verified-role";

constexpr char kGclPrefix[] = "/gcl.v1.";

absl::string_view Sv(grpc::string_ref s) { return absl::string_view(s.data(), s.size()); }

class AuthInterceptor final : public grpc::experimental::Interceptor {
 public:
  AuthInterceptor(std::shared_ptr<const TokenTable> tokens, std::string method)
      : tokens_(std::move(tokens)), method_(std::move(method)) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* m) override {
    if (m->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_INITIAL_METADATA)) {
      Check(m->GetRecvInitialMetadata());
    }
    if (!denied_.ok()) {
      if (m->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE) &&
          absl::StartsWith(method_, kGclPrefix)) {
        // gcl.v1 services are generated protobuf services: the received
        // message is the request type, a google::protobuf::Message.
        if (void* msg = m->GetRecvMessage()) static_cast<google::protobuf::Message*>(msg)->Clear();
      }
      if (m->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
        // Zero bytes: the encoding of an empty message of any type.
        if (grpc::ByteBuffer* buf = m->GetSerializedSendMessage()) {
          grpc::Slice empty;
          *buf = grpc::ByteBuffer(&empty, 1);
        }
      }
      if (m->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
        m->ModifySendStatus(denied_);
      }
    }
    m->Proceed();
  }

 private:
  void Check(std::multimap<grpc::string_ref, grpc::string_ref>* metadata) {
    metadata->erase(grpc::string_ref(kVerifiedUserKey));
    metadata->erase(grpc::string_ref(kVerifiedRoleKey));
    if (IsOpenMethod(method_)) return;  // no caller recorded: handlers of open methods need none
    absl::StatusOr<Caller> caller = Authenticate(tokens_.get(), *metadata);
    absl::Status allowed = caller.ok() ? Authorize(method_, *caller) : caller.status();
    if (!allowed.ok()) {
      denied_ = ToGrpcStatus(allowed);
      return;
    }
    // The strings live in this interceptor, which lives as long as the
    // call's ServerContext (it owns the ServerRpcInfo that owns us).
    user_ = caller->user;
    role_ = std::string(RoleName(caller->role));
    metadata->emplace(grpc::string_ref(kVerifiedUserKey), grpc::string_ref(user_));
    metadata->emplace(grpc::string_ref(kVerifiedRoleKey), grpc::string_ref(role_));
  }

  const std::shared_ptr<const TokenTable> tokens_;
  const std::string method_;
  grpc::Status denied_;  // OK while allowed
  std::string user_, role_;
};

}  // namespace

absl::StatusOr<Caller> CallerOf(const grpc::ServerContextBase* ctx) {
  const auto& md = ctx->client_metadata();
  auto user = md.find(grpc::string_ref(kVerifiedUserKey));
  auto role = md.find(grpc::string_ref(kVerifiedRoleKey));
  if (user == md.end() || role == md.end()) {
    return absl::UnauthenticatedError(
        "no verified caller for this call (auth interceptor missing?)");
  }
  std::optional<Role> parsed =
      ParseRole(std::string_view(role->second.data(), role->second.size()));
  if (!parsed) return absl::InternalError("auth interceptor recorded an unknown role");
  return Caller{std::string(user->second.data(), user->second.size()), *parsed};
}

absl::StatusOr<Caller> Authenticate(
    const TokenTable* tokens, const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) {
  if (tokens == nullptr) return Caller{"", Role::kAdmin};
  auto it = metadata.find(grpc::string_ref("authorization"));
  if (it == metadata.end()) {
    return absl::UnauthenticatedError("missing token: pass --token or set GCL_TOKEN");
  }
  absl::string_view value = absl::StripAsciiWhitespace(Sv(it->second));
  // RFC 6750: the scheme name is case-insensitive.
  if (value.size() < 7 || !absl::EqualsIgnoreCase(value.substr(0, 7), "bearer ")) {
    return absl::UnauthenticatedError(
        "invalid token: the authorization metadata must be 'Bearer <token>'");
  }
  absl::string_view token = absl::StripLeadingAsciiWhitespace(value.substr(7));
  std::optional<Caller> caller = tokens->Lookup(std::string_view(token.data(), token.size()));
  if (!caller) {
    return absl::UnauthenticatedError("invalid token: not in the coordinator's tokens file");
  }
  return *caller;
}

bool IsOpenMethod(std::string_view method) {
  const absl::string_view m = Sv(method);
  return absl::StartsWith(m, "/grpc.health.v1.Health/") ||
         absl::StartsWith(m, "/grpc.reflection.v1alpha.ServerReflection/") ||
         absl::StartsWith(m, "/grpc.reflection.v1.ServerReflection/");
}

absl::Status Authorize(std::string_view method, const Caller& caller) {
  const absl::string_view m = Sv(method);
  if (IsOpenMethod(method) || caller.role == Role::kAdmin) return absl::OkStatus();
  const char* needs = "an admin";
  if (absl::StartsWith(m, "/gcl.v1.JobService/")) {
    if (caller.role == Role::kUser) return absl::OkStatus();
    needs = "a user or admin";
  } else if (absl::StartsWith(m, "/gcl.v1.WorkerService/")) {
    if (caller.role == Role::kWorker) return absl::OkStatus();
    needs = "a worker or admin";
  }
  return absl::PermissionDeniedError(absl::StrCat(
      caller.user, " has role ", Sv(RoleName(caller.role)), "; ", m, " needs ", needs, " token"));
}

absl::Status MayActOnJob(const Caller& caller, std::string_view job_id, std::string_view owner,
                         std::string_view verb) {
  if (caller.role == Role::kAdmin || (caller.role == Role::kUser && owner == caller.user)) {
    return absl::OkStatus();
  }
  const absl::string_view id = Sv(job_id);
  if (owner.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("job ", id, " has no owner (submitted while auth was off); only an admin may ",
                     Sv(verb), " it"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "job ", id, " belongs to ", Sv(owner), "; only its owner or an admin may ", Sv(verb), " it"));
}

grpc::experimental::Interceptor* AuthInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new AuthInterceptor(tokens_ == nullptr ? nullptr : tokens_->Current(),
                             info->method() == nullptr ? "" : info->method());
}

}  // namespace gcl::server
