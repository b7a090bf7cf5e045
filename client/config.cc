#include "client/config.h"

#include <cstdlib>
#include <filesystem>

#include <yaml-cpp/yaml.h>

#include "absl/strings/str_cat.h"

namespace gcl::client {

ConfigSources EnvSources() {
  ConfigSources s;
  if (const char* v = std::getenv("GCL_ADDR")) s.env_addr = v;
  if (const char* v = std::getenv("GCL_TOKEN")) s.env_token = v;
  if (const char* home = std::getenv("HOME")) s.config_path = std::string(home) + "/.config/gcl/config.yaml";
  return s;
}

absl::StatusOr<ClientConfig> ResolveConfig(const ConfigSources& sources) {
  ClientConfig file;
  std::error_code ec;
  if (!sources.config_path.empty() && std::filesystem::is_regular_file(sources.config_path, ec)) {
    try {
      YAML::Node root = YAML::LoadFile(sources.config_path);
      if (!root.IsNull() && !root.IsMap()) {
        return absl::InvalidArgumentError(absl::StrCat(sources.config_path, ": expected a map of keys (addr:, token:)"));
      }
      for (const char* key : {"addr", "token"}) {
        const YAML::Node n = root[key];
        if (!n) continue;
        if (!n.IsScalar()) {
          return absl::InvalidArgumentError(absl::StrCat(sources.config_path, ":", n.Mark().line + 1, ":",
                                                         n.Mark().column + 1, ": ", key, ": expected a string"));
        }
        (std::string(key) == "addr" ? file.addr : file.token) = n.as<std::string>();
      }
    } catch (const YAML::Exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(sources.config_path, ":", e.mark.line + 1, ":",
                                                     e.mark.column + 1, ": ", e.msg));
    }
  }
  ClientConfig out;
  out.addr = !sources.flag_addr.empty() ? sources.flag_addr
             : !sources.env_addr.empty() ? sources.env_addr
             : !file.addr.empty()        ? file.addr
                                         : kDefaultAddr;
  out.token = !sources.flag_token.empty() ? sources.flag_token
              : !sources.env_token.empty() ? sources.env_token
                                           : file.token;
  return out;
}

}  // namespace gcl::client
