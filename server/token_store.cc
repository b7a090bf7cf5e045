#include "server/token_store.h"

#include <utility>

#include "gcl/base/status_macros.h"

namespace gcl::server {

absl::StatusOr<std::unique_ptr<TokenStore>> TokenStore::Open(std::string path) {
  GCL_ASSIGN_OR_RETURN(TokenTable table, TokenTable::LoadFile(path));
  return std::unique_ptr<TokenStore>(
      new TokenStore(std::move(path), std::make_shared<const TokenTable>(std::move(table))));
}

std::shared_ptr<const TokenTable> TokenStore::Current() const {
  absl::MutexLock lock(&mu_);
  return table_;
}

absl::StatusOr<size_t> TokenStore::Reload() {
  // Parsed outside the lock: calls keep authenticating meanwhile.
  GCL_ASSIGN_OR_RETURN(TokenTable table, TokenTable::LoadFile(path_));
  const size_t n = table.size();
  auto fresh = std::make_shared<const TokenTable>(std::move(table));
  absl::MutexLock lock(&mu_);
  table_ = std::move(fresh);
  return n;
}

}  // namespace gcl::server
