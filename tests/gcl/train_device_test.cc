// Device placement (issue 6, GPU build): option parsing, autocast scope,
// bf16 pre-training on the CPU, and -- where a CUDA device is visible --
// pre-training and fine-tuning on CUDA against the CPU run (GCL_REQUIRE_CUDA).
#include "worker/gcl/train/device_placement.h"

#include <torch/torch.h>

#include <cmath>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/cuda.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_training.h"
#include "worker/gcl/data/synthetic.h"
#include "worker/gcl/train/finetune.h"
#include "worker/gcl/train/pretrain.h"

namespace gcl::core {
namespace {

using ::gcl::testing::IsOk;
using ::gcl::testing::TinyFullPretrainOptions;
using ::gcl::testing::TinySyntheticData;
using ::gcl::testing::StatusIs;
using ::testing::HasSubstr;

PretrainOptions TinyFull() { return TinyFullPretrainOptions(3); }

// Per-step losses and the final flat state of a short pre-training run.
struct PretrainRun {
  std::vector<double> losses;
  torch::Tensor state;
};

PretrainRun RunPretrain(const Dataset& data, const PretrainOptions& o) {
  PretrainRun run;
  auto trainer = Pretrainer::Create(data, o);
  EXPECT_THAT(trainer, IsOk());
  if (!trainer.ok()) return run;
  PretrainCallbacks cb;
  cb.on_step = [&](int64_t, int64_t, double loss, double, const MetricsRecord&) {
    run.losses.push_back(loss);
  };
  auto r = (*trainer)->Run(cb);
  EXPECT_THAT(r, IsOk());
  run.state = (*trainer)->FlatState();
  return run;
}

TEST(DeviceOptionsTest, ParsesNames) {
  EXPECT_EQ(*ParseTrainDevice("cpu"), TrainDevice::kCpu);
  EXPECT_EQ(*ParseTrainDevice("cuda"), TrainDevice::kCuda);
  EXPECT_EQ(*ParseTrainDevice("auto"), TrainDevice::kAuto);
  EXPECT_THAT(ParseTrainDevice("gpu"), StatusIs(absl::StatusCode::kInvalidArgument, "cpu | cuda"));
  EXPECT_EQ(*ParsePrecision("fp32"), Precision::kFp32);
  EXPECT_EQ(*ParsePrecision("bf16"), Precision::kBf16);
  EXPECT_THAT(ParsePrecision("fp16"), StatusIs(absl::StatusCode::kInvalidArgument, "fp32 | bf16"));
  EXPECT_EQ(TrainDeviceName(TrainDevice::kAuto), "auto");
  EXPECT_EQ(PrecisionName(Precision::kBf16), "bf16");
}

TEST(DevicePlacementTest, CpuAndAutoResolve) {
  const DevicePlacement def;
  EXPECT_TRUE(def.device().is_cpu());
  EXPECT_TRUE(def.channels_last());
  auto cpu = DevicePlacement::Create({});
  ASSERT_THAT(cpu, IsOk());
  EXPECT_TRUE(cpu->device().is_cpu());
  DeviceOptions o;
  o.device = TrainDevice::kAuto;
  auto autop = DevicePlacement::Create(o);
  ASSERT_THAT(autop, IsOk());
  EXPECT_EQ(autop->is_cuda(), CudaAvailable());
}

TEST(DevicePlacementTest, CudaWithoutDeviceIsFailedPrecondition) {
  if (CudaAvailable()) GTEST_SKIP() << "a CUDA device is visible";
  DeviceOptions o;
  o.device = TrainDevice::kCuda;
  EXPECT_THAT(DevicePlacement::Create(o),
              StatusIs(absl::StatusCode::kFailedPrecondition, "no CUDA device"));
}

TEST(DevicePlacementTest, InputIsChannelsLastOnTheDevice) {
  DeviceOptions o;
  o.device = TrainDevice::kAuto;
  auto p = DevicePlacement::Create(o);
  ASSERT_THAT(p, IsOk());
  const torch::Tensor x = torch::rand({2, 3, 8, 8});
  const torch::Tensor y = p->Input(x);
  EXPECT_EQ(y.device(), p->device());
  EXPECT_TRUE(y.is_contiguous(torch::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(y.cpu(), x));
  const torch::Tensor labels = torch::arange(4);
  EXPECT_TRUE(torch::equal(p->ToDevice(labels).cpu(), labels));
}

TEST(DevicePlacementTest, AutocastCoversTheScopeOnlyAndEndCastsToFp32) {
  DeviceOptions o;
  o.precision = Precision::kBf16;
  auto p = DevicePlacement::Create(o);  // CPU autocast: same code path as CUDA's
  ASSERT_THAT(p, IsOk());
  torch::nn::Conv2d conv(torch::nn::Conv2dOptions(2, 4, 3).padding(1));
  const torch::Tensor x = torch::rand({1, 2, 8, 8});
  torch::Tensor inside;
  {
    auto scope = p->Autocast();
    inside = conv->forward(x);
    EXPECT_EQ(inside.scalar_type(), torch::kBFloat16);
    scope.End({&inside});
  }
  EXPECT_EQ(inside.scalar_type(), torch::kFloat);
  EXPECT_EQ(conv->forward(x).scalar_type(), torch::kFloat);  // autocast is off again

  auto fp32 = DevicePlacement::Create({});
  ASSERT_THAT(fp32, IsOk());
  auto none = fp32->Autocast();
  EXPECT_EQ(conv->forward(x).scalar_type(), torch::kFloat);
}

TEST(DevicePlacementTest, Bf16PretrainOnCpuStaysFinite) {
  const Dataset data = TinySyntheticData();
  PretrainOptions o = TinyFull();
  o.device.precision = Precision::kBf16;
  const PretrainRun bf16 = RunPretrain(data, o);
  const PretrainRun fp32 = RunPretrain(data, TinyFull());
  ASSERT_EQ(bf16.losses.size(), 3u);
  ASSERT_EQ(fp32.losses.size(), 3u);
  for (double l : bf16.losses) EXPECT_TRUE(std::isfinite(l));
  // Same weights and batch; bf16 rounding of the forward moves the loss a little.
  EXPECT_NEAR(bf16.losses[0], fp32.losses[0], 0.05 * std::abs(fp32.losses[0]));
  EXPECT_EQ(bf16.state.scalar_type(), torch::kFloat);  // parameters stay fp32
}

// CPU vs CUDA on the same weights and batch. Tolerances: cuDNN runs fp32
// convolutions in TF32 on Ampere and later (10-bit mantissa, ~1e-3 relative)
// and reduces in another order, so the first loss agrees to ~1e-3 and the
// parameters after 3 SGD steps to ~1e-2 of their scale.
TEST(DevicePlacementTest, CudaPretrainMatchesCpu) {
  GCL_REQUIRE_CUDA();
  const Dataset data = TinySyntheticData();
  const PretrainRun cpu = RunPretrain(data, TinyFull());
  PretrainOptions o = TinyFull();
  o.device.device = TrainDevice::kCuda;
  const PretrainRun cuda = RunPretrain(data, o);
  ASSERT_EQ(cuda.losses.size(), 3u);
  EXPECT_NEAR(cuda.losses[0], cpu.losses[0], 1e-2 * std::abs(cpu.losses[0]));
  ASSERT_TRUE(cuda.state.device().is_cpu());
  const double scale = cpu.state.abs().max().item<double>();
  const double diff = (cuda.state - cpu.state).abs().max().item<double>();
  std::printf("cpu vs cuda: loss %.6f vs %.6f, max |param diff| %.3g (scale %.3g)\n",
              cpu.losses[0], cuda.losses[0], diff, scale);
  EXPECT_LT(diff, 2e-2 * scale);

  o.device.precision = Precision::kBf16;
  const PretrainRun bf16 = RunPretrain(data, o);
  ASSERT_EQ(bf16.losses.size(), 3u);
  for (double l : bf16.losses) EXPECT_TRUE(std::isfinite(l));
  EXPECT_NEAR(bf16.losses[0], cpu.losses[0], 0.05 * std::abs(cpu.losses[0]));
}

TEST(DevicePlacementTest, CudaFinetuneRunsAndScores) {
  GCL_REQUIRE_CUDA();
  SyntheticOptions so;
  so.patients = 8;
  so.slices = 4;
  so.size = 32;
  so.seed = 3;
  const std::vector<Volume> vols = GenerateSyntheticVolumes(so);
  Dataset ds;
  for (size_t i = 0; i < vols.size(); ++i) {
    const size_t patient = i / 2;
    (patient < 4 ? ds.train : patient < 6 ? ds.val : ds.test).push_back(vols[i]);
  }
  ds.class_names = {"background", "RV", "Myo", "LV"};
  ds.has_phase = true;
  FinetuneOptions o;
  o.model.num_classes = 4;
  o.model.base = 8;
  o.model.depth = 3;
  o.labeled_volumes = 2;
  o.steps = 6;
  o.batch = 6;
  o.val_every = 3;
  o.threads = 1;
  o.device.device = TrainDevice::kCuda;
  for (Precision prec : {Precision::kFp32, Precision::kBf16}) {
    o.device.precision = prec;
    auto r = RunFinetune(ds, o);
    ASSERT_THAT(r, IsOk());
    EXPECT_TRUE(std::isfinite(r->last_loss)) << PrecisionName(prec);
    EXPECT_GE(r->mean_dice, 0.0);
    EXPECT_LE(r->mean_dice, 1.0);
  }
}

}  // namespace
}  // namespace gcl::core
