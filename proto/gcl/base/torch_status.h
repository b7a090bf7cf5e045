// Converts exceptions thrown inside LibTorch calls into absl::Status at a
// library boundary. Header-only so it adds no dependency to gcl_base.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl {

// Runs `fn` (returning absl::Status) and maps any std::exception (c10::Error
// derives from it) to kInternal with `context` prefixed.
template <typename Fn>
absl::Status CatchToStatus(const std::string& context, Fn&& fn) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const std::exception& e) {
    std::string what = e.what();
    // c10::Error messages carry a long backtrace after the first line.
    auto nl = what.find('\n');
    if (nl != std::string::npos) what.resize(nl);
    return absl::InternalError(context + ": " + what);
  }
}

}  // namespace gcl
