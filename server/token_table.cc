#include "server/token_table.h"

// GCC 12 reports a false -Wdangling-pointer inside yaml-cpp 0.7's inlined
// Node::Mark(); silence it for that header only.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wpragmas"
#pragma GCC diagnostic ignored "-Wdangling-pointer"
#include <yaml-cpp/yaml.h>
#pragma GCC diagnostic pop

#include <openssl/crypto.h>

#include <fstream>
#include <map>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "gcl/base/sha256.h"

namespace gcl::server {
namespace {

absl::Status Error(std::string_view file, const YAML::Mark& mark, std::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(absl::string_view(file.data(), file.size()), ":",
                                                 mark.line + 1, ":", mark.column + 1, ": ",
                                                 absl::string_view(what.data(), what.size())));
}

bool IsHex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

}  // namespace

std::string_view RoleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kUser:
      return "user";
    case Role::kWorker:
      return "worker";
  }
  return "unknown";
}

std::optional<Role> ParseRole(std::string_view name) {
  for (Role r : {Role::kAdmin, Role::kUser, Role::kWorker}) {
    if (name == RoleName(r)) return r;
  }
  return std::nullopt;
}

absl::StatusOr<TokenTable> TokenTable::LoadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("--tokens ", path, ": cannot read the file"));
  std::stringstream text;
  text << in.rdbuf();
  return Parse(text.str(), path);
}

absl::StatusOr<TokenTable> TokenTable::Parse(std::string_view yaml, std::string_view file) {
  const std::string name(file);
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return Error(file, e.mark, e.msg);
  }
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, ": expected a map with a `tokens:` list of {token, user, role}"));
  }
  for (const auto& kv : root) {
    const std::string key = kv.first.Scalar();
    if (key != "tokens")
      return Error(file, kv.first.Mark(), key + ": unknown key (expected tokens)");
  }
  const YAML::Node list = root["tokens"];
  if (!list) return absl::InvalidArgumentError(absl::StrCat(name, ": tokens: missing"));
  if (!list.IsSequence()) {
    return Error(file, list.Mark(), "tokens: expected a list of {token, user, role}");
  }
  if (list.size() == 0) {
    return Error(file, list.Mark(), "tokens: empty list (nobody could call the coordinator)");
  }

  TokenTable table;
  std::map<std::string, int> first_line;  // digest -> line of its first entry
  for (size_t i = 0; i < list.size(); ++i) {
    const YAML::Node entry = list[i];
    const std::string where = absl::StrCat("tokens[", i, "]");
    if (!entry.IsMap())
      return Error(file, entry.Mark(), where + ": expected a map {token, user, role}");
    std::map<std::string, YAML::Node> fields;
    for (const auto& kv : entry) {
      const std::string key = kv.first.Scalar();
      if (key != "token" && key != "token_sha256" && key != "user" && key != "role") {
        return Error(file, kv.first.Mark(),
                     absl::StrCat(where, ".", key,
                                  ": unknown key (expected token or token_sha256, user, role)"));
      }
      if (!kv.second.IsScalar() && !kv.second.IsNull()) {
        return Error(file, kv.second.Mark(), absl::StrCat(where, ".", key, ": expected a string"));
      }
      fields[key] = kv.second;
    }
    auto value = [&](const char* key) {
      return fields[key].IsScalar() ? fields[key].Scalar() : std::string();
    };
    const bool has_token = fields.count("token") > 0, has_sha = fields.count("token_sha256") > 0;
    if (has_token && has_sha) {
      return Error(file, entry.Mark(), where + ": give token or token_sha256, not both");
    }
    if (!has_token && !has_sha) return Error(file, entry.Mark(), where + ": missing key `token`");
    for (const char* key : {"user", "role"}) {
      if (!fields.count(key))
        return Error(file, entry.Mark(), absl::StrCat(where, ": missing key `", key, "`"));
    }
    Entry e;
    const YAML::Node& secret = fields[has_token ? "token" : "token_sha256"];
    const std::string secret_key = absl::StrCat(where, has_token ? ".token" : ".token_sha256");
    if (has_token) {
      const std::string token = value("token");
      if (token.empty()) return Error(file, secret.Mark(), secret_key + ": empty");
      e.sha256_hex = Sha256Hex(token);
    } else {
      e.sha256_hex = absl::AsciiStrToLower(value("token_sha256"));
      if (!IsHex64(e.sha256_hex)) {
        return Error(file, secret.Mark(),
                     secret_key + ": expected 64 hex digits (sha256sum of the token)");
      }
    }
    e.caller.user = value("user");
    if (e.caller.user.empty()) return Error(file, fields["user"].Mark(), where + ".user: empty");
    const std::string role = value("role");
    std::optional<Role> parsed = ParseRole(role);
    if (!parsed) {
      return Error(
          file, fields["role"].Mark(),
          absl::StrCat(where, ".role: unknown role '", role, "' (expected admin, user or worker)"));
    }
    e.caller.role = *parsed;
    const int line = secret.Mark().line + 1;
    auto [it, inserted] = first_line.emplace(e.sha256_hex, line);
    if (!inserted) {
      return Error(file, secret.Mark(),
                   absl::StrCat(secret_key, ": duplicate token (also at line ", it->second, ")"));
    }
    table.entries_.push_back(std::move(e));
  }
  return table;
}

std::optional<Caller> TokenTable::Lookup(std::string_view token) const {
  if (token.empty()) return std::nullopt;
  const std::string digest = Sha256Hex(token);
  // Visit every entry and keep the match in a branch-free way, so that
  // neither the position of the match nor its absence shows in the timing.
  size_t match = entries_.size();
  for (size_t i = 0; i < entries_.size(); ++i) {
    const size_t equal =
        CRYPTO_memcmp(digest.data(), entries_[i].sha256_hex.data(), digest.size()) == 0;
    match = equal * i + (1 - equal) * match;
  }
  if (match == entries_.size()) return std::nullopt;
  return entries_[match].caller;
}

}  // namespace gcl::server
