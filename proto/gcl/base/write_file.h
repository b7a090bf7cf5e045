// Replacing a file that other processes may read at any time.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "absl/status/status.h"

namespace gcl {

// Writes `text` to `path` through "<path>.tmp" and a rename, so that a reader
// sees the old content or the new, never a part. A created file gets `mode`
// (less the umask). kUnavailable "cannot write <path>.tmp: <errno text>" or
// "cannot rename <path>.tmp to <path>: <errno text>".
absl::Status WriteFileReplacing(const std::string& path, std::string_view text, mode_t mode = 0666);

}  // namespace gcl
