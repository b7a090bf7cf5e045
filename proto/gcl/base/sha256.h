// SHA-256 digests (OpenSSL EVP) for checkpoints, caches and artifacts, as
// lowercase hex. One implementation for the whole project.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace gcl {

// Incremental digest, for data that arrives in chunks. Not thread-safe.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Update(std::string_view bytes);
  // Lowercase hex digest (64 characters). Call once.
  std::string HexDigest();

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

// Lowercase hex SHA-256 of `bytes` (64 characters).
std::string Sha256Hex(std::string_view bytes);

// Lowercase hex SHA-256 of a file's contents, streamed in 1 MiB chunks.
// kNotFound when it cannot be opened, kDataLoss on a read error.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace gcl
