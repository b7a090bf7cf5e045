// Internal to storage/: Debian's Abseil (20220623) is built with its own
// absl::string_view (ABSL_OPTION_USE_STD_STRING_VIEW 0), so absl::StrCat
// does not accept std::string_view. Cat() converts such arguments.
#pragma once

#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace gcl::storage::internal {

template <typename T>
const T& ToAbsl(const T& v) {
  return v;
}
inline absl::string_view ToAbsl(std::string_view v) { return absl::string_view(v.data(), v.size()); }

template <typename... Args>
std::string Cat(const Args&... args) {
  return absl::StrCat(ToAbsl(args)...);
}

inline std::string Lower(std::string_view s) { return absl::AsciiStrToLower(ToAbsl(s)); }
inline std::string Upper(std::string_view s) { return absl::AsciiStrToUpper(ToAbsl(s)); }

}  // namespace gcl::storage::internal
