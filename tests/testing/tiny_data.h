// The core's smallest real training data: 6 synthetic patients of 8 slices at
// 32 px (1 validation and 1 test case), for training-loop tests.
#pragma once

#include <utility>

#include "gtest/gtest.h"
#include "worker/gcl/data/dataset.h"

namespace gcl::testing {

inline core::Dataset TinySyntheticData() {
  core::DatasetOptions o;
  o.format = "synthetic";
  o.image_size = 32;
  o.synthetic.patients = 6;
  o.synthetic.slices = 8;
  o.synthetic.size = 32;
  o.val_cases = 1;
  o.test_cases = 1;
  auto d = core::LoadDataset(o);
  EXPECT_TRUE(d.ok()) << d.status();
  return *std::move(d);
}

}  // namespace gcl::testing
