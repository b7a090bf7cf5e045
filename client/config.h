// Where gclctl finds the coordinator and how it proves who it is. Each
// setting comes from its flag, else its environment variable, else its key in
// ~/.config/gcl/config.yaml:
//   --addr      GCL_ADDR      addr:      default 127.0.0.1:7070
//   --token     GCL_TOKEN     token:     bearer token; "" sends none
//   --tls-ca    GCL_TLS_CA    tls_ca:    CA (PEM) that signed the server; enables TLS
//   --tls-cert  GCL_TLS_CERT  tls_cert:  client certificate (PEM) for mTLS
//   --tls-key   GCL_TLS_KEY   tls_key:   its private key (PEM)
// Relative file paths in the config file are relative to its folder. With
// TLS, --addr must name the server as its certificate does (localhost,
// 127.0.0.1 or a host name given to deploy/make-certs.sh).
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace gcl::client {

inline constexpr char kDefaultAddr[] = "127.0.0.1:7070";

struct ClientConfig {
  std::string addr;
  std::string token;                      // surrounding whitespace removed
  std::string tls_ca, tls_cert, tls_key;  // files; tls_ca "" = plaintext
};

struct ConfigSources {
  std::string flag_addr, flag_token;  // "" = not given
  std::string env_addr, env_token;    // "" = unset
  std::string flag_tls_ca, flag_tls_cert, flag_tls_key;
  std::string env_tls_ca, env_tls_cert, env_tls_key;
  std::string config_path;  // "" = none; a missing file is fine
};

// The sources of this process: $GCL_ADDR, $GCL_TOKEN, $GCL_TLS_CA,
// $GCL_TLS_CERT, $GCL_TLS_KEY, $HOME/.config/gcl/config.yaml.
ConfigSources EnvSources();

// kInvalidArgument "FILE:LINE:COL: ..." for a config file that is not a YAML
// map or whose keys above are not strings; kInvalidArgument when a client
// certificate comes without its key (or the reverse) or without a CA.
absl::StatusOr<ClientConfig> ResolveConfig(const ConfigSources& sources);

}  // namespace gcl::client
