// Test certificates from deploy/make-certs.sh (a CA, server.pem/key for
// localhost, 127.0.0.1 and ::1, client.pem/key), as an operator makes them.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace gcl::testing {

// Runs deploy/make-certs.sh into `dir`; false (the caller skips) without
// openssl or GCL_SOURCE_DIR.
inline bool MakeCerts(const std::filesystem::path& dir) {
  const char* src = std::getenv("GCL_SOURCE_DIR");
  if (src == nullptr || std::system("command -v openssl >/dev/null 2>&1") != 0) return false;
  const std::string cmd =
      "bash " + std::string(src) + "/deploy/make-certs.sh " + dir.string() + " >/dev/null";
  return std::system(cmd.c_str()) == 0;
}

}  // namespace gcl::testing
