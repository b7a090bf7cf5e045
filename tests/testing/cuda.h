// CUDA tests skip where no device is visible, unless GCL_EXPECT_CUDA=1 (the
// device check sets it, so a LibTorch that silently lost its CUDA backend
// fails instead of skipping).
#pragma once

#include <cstdlib>
#include <string>

#include "gtest/gtest.h"
#include "worker/gcl/train/device_placement.h"

namespace gcl::testing {

inline bool ExpectCuda() {
  const char* e = std::getenv("GCL_EXPECT_CUDA");
  return e != nullptr && std::string(e) == "1";
}

}  // namespace gcl::testing

#define GCL_REQUIRE_CUDA()                                                      \
  do {                                                                          \
    if (!::gcl::core::CudaAvailable()) {                                        \
      if (::gcl::testing::ExpectCuda()) FAIL() << "GCL_EXPECT_CUDA=1 but no CUDA device"; \
      GTEST_SKIP() << "no CUDA device visible";                                 \
    }                                                                           \
  } while (0)
