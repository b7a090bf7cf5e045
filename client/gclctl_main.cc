#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "client/gclctl.h"

int main(int argc, char** argv) {
  // gclctl explains failed calls itself; gRPC's own log lines (e.g. "Handshake
  // failed") would only repeat them. GRPC_VERBOSITY set by the user wins.
  setenv("GRPC_VERBOSITY", "NONE", /*overwrite=*/0);
  std::vector<std::string> args(argv + 1, argv + argc);
  return gcl::client::RunGclctl(args, gcl::client::EnvSources(), std::cout, std::cerr,
                                isatty(STDOUT_FILENO) == 1);
}
