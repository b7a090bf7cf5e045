#include <unistd.h>

#include <iostream>
#include <string>
#include <vector>

#include "client/gclctl.h"

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  return gcl::client::RunGclctl(args, gcl::client::EnvSources(), std::cout, std::cerr,
                                isatty(STDOUT_FILENO) == 1);
}
