// Reading a whole file named on a command line, with an error a user can act on.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace gcl {

// The file's bytes. kNotFound "<what> <path>: cannot read: <errno text>"
// (what: e.g. the flag that named it, "--tls-cert").
absl::StatusOr<std::string> ReadFileNamed(const std::string& what, const std::string& path);

}  // namespace gcl
