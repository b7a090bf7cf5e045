// Where gclctl finds the coordinator: --addr, else $GCL_ADDR, else the
// `addr:` key of ~/.config/gcl/config.yaml, else 127.0.0.1:7070. The token
// follows the same chain (--token, $GCL_TOKEN, `token:`); it is not sent yet.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace gcl::client {

inline constexpr char kDefaultAddr[] = "127.0.0.1:7070";

struct ClientConfig {
  std::string addr;
  std::string token;
};

struct ConfigSources {
  std::string flag_addr, flag_token;  // "" = not given
  std::string env_addr, env_token;    // "" = unset
  std::string config_path;            // "" = none; a missing file is fine
};

// The sources of this process: $GCL_ADDR, $GCL_TOKEN, $HOME/.config/gcl/config.yaml.
ConfigSources EnvSources();

// kInvalidArgument "FILE:LINE:COL: ..." for a config file that is not a YAML
// map or whose addr/token are not strings.
absl::StatusOr<ClientConfig> ResolveConfig(const ConfigSources& sources);

}  // namespace gcl::client
