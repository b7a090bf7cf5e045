#include "worker/agent/token_file.h"

#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gcl/base/read_file.h"
#include "gcl/base/status_macros.h"

namespace gcl::agent {
namespace {

absl::StatusOr<std::string> ReadToken(const std::string& path) {
  GCL_ASSIGN_OR_RETURN(std::string text, ReadFileNamed("--token-file", path));
  std::string token(absl::StripAsciiWhitespace(text));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("--token-file ", path, ": empty"));
  }
  if (token.find_first_of("\r\n") != std::string::npos) {
    // gRPC metadata cannot carry a newline; a second line is a mistake.
    return absl::InvalidArgumentError(
        absl::StrCat("--token-file ", path, ": more than one line (one token expected)"));
  }
  return token;
}

}  // namespace

absl::StatusOr<TokenFile> TokenFile::Open(std::string path) {
  GCL_ASSIGN_OR_RETURN(std::string token, ReadToken(path));
  return TokenFile(std::move(path), std::move(token));
}

absl::StatusOr<bool> TokenFile::Reload() {
  absl::StatusOr<std::string> token = ReadToken(path_);
  if (!token.ok()) {
    if (token.status().message() != last_error_) {
      last_error_ = std::string(token.status().message());
      std::fprintf(stderr, "gcl-worker: token not reloaded, the previous one stays: %s\n",
                   last_error_.c_str());
    }
    return token.status();
  }
  last_error_.clear();
  if (*token == token_) return false;
  token_ = *std::move(token);
  std::fprintf(stderr, "gcl-worker: token reloaded from %s\n", path_.c_str());
  return true;
}

}  // namespace gcl::agent
