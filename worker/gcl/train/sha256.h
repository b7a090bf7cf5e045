// SHA-256 digests (OpenSSL EVP) for checkpoint integrity, as lowercase hex.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace gcl::core {

// Lowercase hex SHA-256 of `bytes` (64 characters).
std::string Sha256Hex(std::string_view bytes);

// Lowercase hex SHA-256 of a file's contents, streamed in 1 MiB chunks.
// kNotFound when it cannot be opened, kDataLoss on a read error.
absl::StatusOr<std::string> Sha256File(const std::string& path);

}  // namespace gcl::core
