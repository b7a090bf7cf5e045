// Pre-training loop: exact resume, checkpoint fallback, metrics, loss falls.
#include "worker/gcl/train/pretrain.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/tiny_training.h"
#include "tests/testing/temp_dir.h"
#include "worker/gcl/train/checkpoint.h"
#include "worker/gcl/train/safetensors.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::IsOk;
using ::gcl::testing::TinyFullPretrainOptions;
using ::gcl::testing::TinySyntheticData;
using ::gcl::testing::TempDir;

PretrainOptions TinyFull(const std::string& out) {
  PretrainOptions o = TinyFullPretrainOptions(6);
  o.checkpoint_every = 3;
  o.output_dir = out;
  return o;
}

std::vector<std::string> ReadLines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(PretrainTest, ResumeContinuesBitForBit) {
  const Dataset data = TinySyntheticData();
  TempDir straight_dir, resumed_dir;

  auto straight = Pretrainer::Create(data, TinyFull(straight_dir.path().string()));
  ASSERT_THAT(straight, IsOk());
  auto r1 = (*straight)->Run();
  ASSERT_THAT(r1, IsOk());
  EXPECT_EQ(r1->steps_done, 6);

  // First half, then a fresh process-like trainer that resumes from step 3.
  PretrainOptions half = TinyFull(resumed_dir.path().string());
  half.stop_after_step = 3;
  {
    auto first = Pretrainer::Create(data, half);
    ASSERT_THAT(first, IsOk());
    auto r = (*first)->Run();
    ASSERT_THAT(r, IsOk());
    EXPECT_EQ(r->steps_done, 3);
    EXPECT_TRUE(r->final_checkpoint.empty());
  }
  auto second = Pretrainer::Create(data, TinyFull(resumed_dir.path().string()));
  ASSERT_THAT(second, IsOk());
  auto r2 = (*second)->Run();
  ASSERT_THAT(r2, IsOk());
  EXPECT_EQ(r2->resumed_from, 3);
  EXPECT_EQ(r2->steps_done, 6);

  const torch::Tensor a = (*straight)->FlatState();
  const torch::Tensor b = (*second)->FlatState();
  ASSERT_EQ(a.sizes(), b.sizes());
  EXPECT_TRUE(torch::equal(a, b)) << "max diff " << (a - b).abs().max().item<double>();

  // The metrics log of the resumed run has every step exactly once.
  const auto lines = ReadLines(resumed_dir.path() / "metrics.jsonl");
  ASSERT_EQ(lines.size(), 6u);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(lines[i].rfind("{\"step\":" + std::to_string(i + 1) + ",", 0), 0u) << lines[i];
  }
}

TEST(PretrainTest, PrefetchingTheNextBatchChangesNothing) {
  // Batches made one step ahead on a second thread, also across a stop and a
  // resume, give bit for bit the parameters of batches made in the step.
  const Dataset data = TinySyntheticData();
  TempDir inline_dir, ahead_dir;
  PretrainOptions in_step = TinyFull(inline_dir.path().string());
  in_step.prefetch = false;
  auto straight = Pretrainer::Create(data, in_step);
  ASSERT_THAT(straight, IsOk());
  ASSERT_THAT((*straight)->Run(), IsOk());

  PretrainOptions ahead = TinyFull(ahead_dir.path().string());
  ahead.prefetch = true;
  ahead.stop_after_step = 4;  // between checkpoints: steps 4.. are made again
  {
    auto first = Pretrainer::Create(data, ahead);
    ASSERT_THAT(first, IsOk());
    ASSERT_THAT((*first)->Run(), IsOk());
  }
  ahead.stop_after_step = -1;
  auto second = Pretrainer::Create(data, ahead);
  ASSERT_THAT(second, IsOk());
  auto r = (*second)->Run();
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->resumed_from, 3);
  const torch::Tensor a = (*straight)->FlatState();
  const torch::Tensor b = (*second)->FlatState();
  EXPECT_TRUE(torch::equal(a, b)) << "max diff " << (a - b).abs().max().item<double>();
}

TEST(PretrainTest, CorruptNewestCheckpointFallsBackToOlder) {
  const Dataset data = TinySyntheticData();
  TempDir dir;
  PretrainOptions o = TinyFull(dir.path().string());
  o.checkpoint_every = 2;
  o.keep_checkpoints = 3;
  o.stop_after_step = 4;
  {
    auto t = Pretrainer::Create(data, o);
    ASSERT_THAT(t, IsOk());
    ASSERT_THAT((*t)->Run(), IsOk());
  }
  const fs::path newest = dir.path() / "checkpoints" / "step-00000004.ckpt";
  ASSERT_TRUE(fs::exists(newest));
  fs::resize_file(newest, fs::file_size(newest) / 2);  // a torn write
  o.stop_after_step = -1;
  auto t = Pretrainer::Create(data, o);
  ASSERT_THAT(t, IsOk());
  auto r = (*t)->Run();
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(r->resumed_from, 2);
  EXPECT_EQ(r->steps_done, 6);
}

TEST(PretrainTest, WritesMetricsCheckpointsAndSafetensors) {
  const Dataset data = TinySyntheticData();
  TempDir dir;
  PretrainOptions o = TinyFull(dir.path().string());
  o.keep_checkpoints = 1;
  auto t = Pretrainer::Create(data, o);
  ASSERT_THAT(t, IsOk());
  auto r = (*t)->Run();
  ASSERT_THAT(r, IsOk());

  // Retention keeps only the newest step checkpoint, and it verifies.
  int count = 0;
  for (const auto& e : fs::directory_iterator(dir.path() / "checkpoints")) {
    if (e.path().extension() == ".ckpt") ++count;
  }
  EXPECT_EQ(count, 1);
  auto ckpt = ReadCheckpoint(r->final_checkpoint);
  ASSERT_THAT(ckpt, IsOk());
  EXPECT_EQ(ckpt->meta.step, 6);
  EXPECT_EQ(ckpt->meta.kind, "pretrain");

  auto enc = ReadSafetensors(r->encoder_safetensors);
  ASSERT_THAT(enc, IsOk());
  EXPECT_FALSE(enc->empty());
  for (const auto& [name, tensor] : *enc) EXPECT_EQ(name.rfind("encoder.", 0), 0u) << name;

  // Every metric family of a `full` run appears in the last record.
  const auto lines = ReadLines(dir.path() / "metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  for (const char* family :
       {"gcl_train_loss", "gcl_grad_cosine", "gcl_grad_target_cosine", "gcl_grad_conflicts_total",
        "gcl_grad_modified_total", "gcl_grad_injection_weight", "gcl_grad_norm",
        "gcl_update_cosine", "gcl_gradfilter_selected", "gcl_gradfilter_score",
        "gcl_train_step_seconds", "gcl_train_samples_per_second"}) {
    EXPECT_NE(lines.back().find(std::string("\"") + family + "\""), std::string::npos) << family;
  }
  EXPECT_NE(lines.back().find("\"pair\":\"patient|phase\""), std::string::npos);
}

TEST(PretrainTest, SimclrLossFalls) {
  const Dataset data = TinySyntheticData();
  PretrainOptions o;
  o.model.base = 4;
  o.model.depth = 3;
  o.proj_dim = 16;
  o.batch = 16;
  o.steps = 40;
  o.lr = 0.05;
  o.threads = 1;
  o.log_every = 5;
  auto t = Pretrainer::Create(data, o);
  ASSERT_THAT(t, IsOk());
  auto r = (*t)->Run();
  ASSERT_THAT(r, IsOk());
  EXPECT_LT(r->last_loss, r->first_loss - 0.05) << r->first_loss << " -> " << r->last_loss;
}

TEST(PretrainTest, BadBatchIsAnError) {
  const Dataset data = TinySyntheticData();
  PretrainOptions o = TinyFull("");
  o.batch = 12;  // not patients x 2 phases x 4 positions
  auto t = Pretrainer::Create(data, o);
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace gcl::core
