// The coordinator's bearer tokens: which token belongs to which user, and the
// role that user acts in, from a YAML file (--tokens; TokenStore reloads it):
//
//   tokens:
//     - {token: "s3cr3t", user: alice, role: user}
//     - {token: "w0rk3r", user: node1, role: worker}
//     - {token_sha256: "9f86d0...", user: ops, role: admin}   # hex SHA-256 of the token
//
// Each entry has exactly one of `token` (the secret itself) or `token_sha256`
// (its lowercase or uppercase hex SHA-256, so the file need not hold the
// secret: `printf %s "$TOKEN" | sha256sum`), plus `user` and `role`.
// Roles:
//   admin   every RPC; may cancel any job
//   user    JobService (submit, list, watch...); may cancel only its own jobs
//   worker  WorkerService (the gcl-worker agent)
// A user may hold several tokens; a token (or digest) appears once. Unknown
// keys, an empty token or user, an unknown role, a duplicate token or an empty
// list are errors that name FILE:LINE:COL. Messages never quote a token.
//
// Thread-safety: immutable after Load/Parse; Lookup is safe from any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace gcl::server {

enum class Role { kAdmin, kUser, kWorker };

// "admin", "user", "worker".
std::string_view RoleName(Role role);
// nullopt for anything but the three names above (case-sensitive).
std::optional<Role> ParseRole(std::string_view name);

// Who is calling: the user a token belongs to and the role it grants.
struct Caller {
  std::string user;  // "" when auth is off
  Role role = Role::kAdmin;
};

class TokenTable {
 public:
  // Reads and parses `path`; kNotFound when it cannot be read, otherwise as
  // Parse with `path` as the file name in messages.
  static absl::StatusOr<TokenTable> LoadFile(const std::string& path);
  // kInvalidArgument "FILE:LINE:COL: tokens[i].key: what is wrong".
  static absl::StatusOr<TokenTable> Parse(std::string_view yaml, std::string_view file_name);

  // The caller holding `token`, or nullopt. Compares SHA-256 digests against
  // every entry without an early exit, so the time taken does not depend on
  // which entry (if any) matches or on how much of a token is right.
  std::optional<Caller> Lookup(std::string_view token) const;

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::string sha256_hex;  // lowercase, 64 characters
    Caller caller;
  };
  std::vector<Entry> entries_;
};

}  // namespace gcl::server
