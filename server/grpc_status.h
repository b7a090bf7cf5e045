// absl::Status <-> grpc::Status. The two code enums share their numbering
// (0-16; Abseil documents each code by its gRPC twin), so the mapping is a
// cast; the message travels unchanged (it names the spec key, the job id...).
#pragma once

#include <string_view>

#include <grpcpp/support/status.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace gcl::server {

inline grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
}

// Debian's Abseil has its own absl::string_view; StrCat needs it.
inline absl::string_view Sv(std::string_view s) { return absl::string_view(s.data(), s.size()); }

}  // namespace gcl::server
