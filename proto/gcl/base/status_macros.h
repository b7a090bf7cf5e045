// Status propagation macros. Debian's Abseil (20220623) ships neither
// ABSL_RETURN_IF_ERROR nor ABSL_ASSIGN_OR_RETURN, so the project has its own.
#pragma once

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define GCL_STATUS_CONCAT_INNER_(a, b) a##b
#define GCL_STATUS_CONCAT_(a, b) GCL_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define GCL_RETURN_IF_ERROR(expr)                   \
  do {                                              \
    ::absl::Status gcl_status_ = (expr);            \
    if (!gcl_status_.ok()) return gcl_status_;      \
  } while (0)

// GCL_ASSIGN_OR_RETURN(auto x, MakeX()); declares or assigns `lhs` from the
// value of a StatusOr, or returns its error.
#define GCL_ASSIGN_OR_RETURN(lhs, expr) \
  GCL_ASSIGN_OR_RETURN_IMPL_(GCL_STATUS_CONCAT_(gcl_statusor_, __LINE__), lhs, expr)

#define GCL_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
