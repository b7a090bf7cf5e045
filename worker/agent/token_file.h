// gcl-worker's token read from a file (--token-file), so that a worker token
// can be rotated without restarting the agent and its jobs: Reload reads the
// file again, and a file that is unreadable or empty leaves the previous
// token in use. A file keeps the token out of the process list, too.
//
// Thread-compatible: one thread calls Reload.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace gcl::agent {

class TokenFile {
 public:
  // Reads the token: the file's text without surrounding whitespace.
  // kNotFound when it cannot be read; kInvalidArgument when it is empty or
  // holds more than one line. Messages name "--token-file PATH".
  static absl::StatusOr<TokenFile> Open(std::string path);

  const std::string& token() const { return token_; }

  // Reads the file again. false: the same token. true: token() is the new
  // one. An error (Open's): token() stays. A change, and each new error
  // (once, not at every periodic call), get a line on stderr.
  absl::StatusOr<bool> Reload();

 private:
  TokenFile(std::string path, std::string token) : path_(std::move(path)), token_(std::move(token)) {}

  std::string path_;
  std::string token_;
  std::string last_error_;  // the last one reported
};

}  // namespace gcl::agent
