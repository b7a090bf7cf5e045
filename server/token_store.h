// The coordinator's current TokenTable (--tokens FILE), replaced whole when
// the file is read again (gcl-coordinator does that on SIGHUP), so a leaked
// token can be revoked, or a user added, without a restart. A call checks
// its token against the table current when it arrives.
//
// Thread-safety: all methods may be called from any thread.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "server/token_table.h"

namespace gcl::server {

class TokenStore {
 public:
  // Loads `path` (TokenTable::LoadFile's errors).
  static absl::StatusOr<std::unique_ptr<TokenStore>> Open(std::string path);

  // Never null.
  std::shared_ptr<const TokenTable> Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Reads the file again and makes it current; returns its number of tokens.
  // On any error (TokenTable::LoadFile's, naming FILE:LINE:COL) the current
  // table stays, so a typo never locks everyone out.
  absl::StatusOr<size_t> Reload() ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& path() const { return path_; }

 private:
  TokenStore(std::string path, std::shared_ptr<const TokenTable> table)
      : path_(std::move(path)), table_(std::move(table)) {}

  const std::string path_;
  mutable absl::Mutex mu_;
  std::shared_ptr<const TokenTable> table_ ABSL_GUARDED_BY(mu_);
};

}  // namespace gcl::server
