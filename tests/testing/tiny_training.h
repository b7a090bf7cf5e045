// The core's smallest real training set-up, for training-loop tests: 6
// synthetic patients of 8 slices at 32 px (1 validation and 1 test case), and
// the `full` GCL configuration on a 4-wide, 3-level U-Net.
#pragma once

#include <utility>

#include "gtest/gtest.h"
#include "worker/gcl/data/dataset.h"
#include "worker/gcl/train/pretrain.h"

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

// 3 meta labels, GradMitigator, pixel loss with GradFilter (pool 4), 16
// slices, lr 0.05, 1 thread, every step logged, only the final checkpoint.
inline core::PretrainOptions TinyFullPretrainOptions(int64_t steps) {
  core::PretrainOptions o;
  o.model.base = 4;
  o.model.depth = 3;
  o.proj_dim = 16;
  o.meta_labels = {core::MetaLabel::kPatient, core::MetaLabel::kPosition, core::MetaLabel::kPhase};
  o.pixel_loss = true;
  o.grad_filter = true;
  o.pool_k = 4;
  o.combine = core::CombineMode::kGradMitigator;
  o.batch = 16;
  o.steps = steps;
  o.lr = 0.05;
  o.threads = 1;
  o.log_every = 1;
  o.checkpoint_every = 0;
  return o;
}

}  // namespace gcl::testing
