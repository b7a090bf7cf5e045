#include "client/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace gcl::client {
namespace {

const std::string& First(const std::string& flag, const std::string& env, const std::string& file) {
  return !flag.empty() ? flag : !env.empty() ? env : file;
}

}  // namespace

ConfigSources EnvSources() {
  ConfigSources s;
  auto env = [](const char* name, std::string* out) {
    if (const char* v = std::getenv(name)) *out = v;
  };
  env("GCL_ADDR", &s.env_addr);
  env("GCL_TOKEN", &s.env_token);
  env("GCL_TLS_CA", &s.env_tls_ca);
  env("GCL_TLS_CERT", &s.env_tls_cert);
  env("GCL_TLS_KEY", &s.env_tls_key);
  if (const char* home = std::getenv("HOME"))
    s.config_path = std::string(home) + "/.config/gcl/config.yaml";
  return s;
}

absl::StatusOr<ClientConfig> ResolveConfig(const ConfigSources& sources) {
  ClientConfig file;
  std::error_code ec;
  if (!sources.config_path.empty() && std::filesystem::is_regular_file(sources.config_path, ec)) {
    const std::filesystem::path dir = std::filesystem::path(sources.config_path).parent_path();
    try {
      YAML::Node root = YAML::LoadFile(sources.config_path);
      if (!root.IsNull() && !root.IsMap()) {
        return absl::InvalidArgumentError(absl::StrCat(
            sources.config_path, ": expected a map of keys (addr:, token:, tls_ca:, ...)"));
      }
      const std::pair<const char*, std::string*> keys[] = {{"addr", &file.addr},
                                                           {"token", &file.token},
                                                           {"tls_ca", &file.tls_ca},
                                                           {"tls_cert", &file.tls_cert},
                                                           {"tls_key", &file.tls_key}};
      for (const auto& [key, dst] : keys) {
        const YAML::Node n = root[key];
        if (!n) continue;
        if (!n.IsScalar()) {
          return absl::InvalidArgumentError(
              absl::StrCat(sources.config_path, ":", n.Mark().line + 1, ":", n.Mark().column + 1,
                           ": ", key, ": expected a string"));
        }
        *dst = n.as<std::string>();
        const bool is_file = dst != &file.addr && dst != &file.token;
        if (is_file && !dst->empty() && std::filesystem::path(*dst).is_relative()) {
          *dst = (dir / *dst).string();
        }
      }
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(sources.config_path, ":", e.mark.line + 1, ":",
                                                     e.mark.column + 1, ": ", e.msg));
    }
  }
  ClientConfig out;
  out.addr = First(sources.flag_addr, sources.env_addr, file.addr);
  if (out.addr.empty()) out.addr = kDefaultAddr;
  // A token pasted from a file often ends in a newline, which metadata may not hold.
  out.token = std::string(
      absl::StripAsciiWhitespace(First(sources.flag_token, sources.env_token, file.token)));
  out.tls_ca = First(sources.flag_tls_ca, sources.env_tls_ca, file.tls_ca);
  out.tls_cert = First(sources.flag_tls_cert, sources.env_tls_cert, file.tls_cert);
  out.tls_key = First(sources.flag_tls_key, sources.env_tls_key, file.tls_key);
  if (out.tls_cert.empty() != out.tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key go together (client certificate and its key; "
        "or GCL_TLS_CERT/GCL_TLS_KEY, or tls_cert:/tls_key: in the config file)");
  }
  if (!out.tls_cert.empty() && out.tls_ca.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert needs --tls-ca (the CA that signed the coordinator's certificate) to use TLS");
  }
  return out;
}

}  // namespace gcl::client
