// gMock matchers for absl::Status / StatusOr (Debian's Abseil has none).
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gcl/base/status_macros.h"

namespace gcl::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const auto& s = ::gcl::testing::GetStatus(arg);
  if (!s.ok()) *result_listener << "status: " << s.ToString();
  return s.ok();
}

MATCHER_P2(StatusIs, code, substr,
           "has code " + ::testing::PrintToString(code) + " and message containing \"" +
               std::string(substr) + "\"") {
  const auto& s = ::gcl::testing::GetStatus(arg);
  *result_listener << "status: " << s.ToString();
  return s.code() == code && std::string(s.message()).find(substr) != std::string::npos;
}

}  // namespace gcl::testing

#define GCL_ASSERT_OK(expr) ASSERT_THAT((expr), ::gcl::testing::IsOk())
#define GCL_EXPECT_OK(expr) EXPECT_THAT((expr), ::gcl::testing::IsOk())
// Asserts on the status alone: newer Abseil prints a StatusOr's value, and
// c10's catch-all operator<< for vectors breaks that for unprintable types.
#define GCL_ASSERT_OK_AND_ASSIGN(lhs, expr)                                           \
  auto GCL_STATUS_CONCAT_(gcl_t_, __LINE__) = (expr);                                 \
  ASSERT_THAT(GCL_STATUS_CONCAT_(gcl_t_, __LINE__).status(), ::gcl::testing::IsOk()); \
  lhs = std::move(GCL_STATUS_CONCAT_(gcl_t_, __LINE__)).value()
