// The whole core on synthetic phantoms: GCL pre-training (variant full)
// whose loss falls, then fine-tuning from its checkpoint whose test Dice
// beats the same U-Net untrained.
#include <torch/torch.h>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/gcl/data/rng.h"
#include "worker/gcl/eval/dice.h"
#include "worker/gcl/train/finetune.h"
#include "worker/gcl/train/pretrain.h"

namespace gcl::core {
namespace {

using ::gcl::testing::IsOk;
using ::gcl::testing::TempDir;

TEST(EndToEndTest, PretrainThenFinetuneBeatsUntrained) {
  at::set_num_threads(1);
  DatasetOptions dopt;
  dopt.format = "synthetic";
  dopt.image_size = 32;
  dopt.synthetic.patients = 8;
  dopt.synthetic.slices = 8;
  dopt.synthetic.size = 32;
  dopt.val_cases = 1;
  dopt.test_cases = 2;
  auto data = LoadDataset(dopt);
  ASSERT_THAT(data, IsOk());

  TempDir dir;
  PretrainOptions p;
  p.model.base = 8;
  p.model.depth = 3;
  p.proj_dim = 16;
  p.meta_labels = {MetaLabel::kPatient, MetaLabel::kPosition, MetaLabel::kPhase};
  p.pixel_loss = true;
  p.grad_filter = true;
  p.pool_k = 4;
  p.combine = CombineMode::kGradMitigator;
  p.batch = 16;
  p.steps = 40;
  p.lr = 0.05;
  p.threads = 1;
  p.log_every = 10;
  p.checkpoint_every = 0;
  p.output_dir = (dir.path() / "pretrain").string();
  auto trainer = Pretrainer::Create(*data, p);
  ASSERT_THAT(trainer, IsOk());
  auto pre = (*trainer)->Run();
  ASSERT_THAT(pre, IsOk());
  EXPECT_LT(pre->last_loss, pre->first_loss) << pre->first_loss << " -> " << pre->last_loss;
  ASSERT_FALSE(pre->final_checkpoint.empty());

  FinetuneOptions f;
  f.model.base = 8;
  f.model.depth = 3;
  f.model.num_classes = data->num_classes();
  f.init_checkpoint = pre->final_checkpoint;
  f.labeled_volumes = 2;
  f.steps = 60;
  f.batch = 8;
  f.lr = 3e-3;
  f.val_every = 20;
  f.threads = 1;
  f.output_dir = (dir.path() / "finetune").string();
  auto tuned = RunFinetune(*data, f);
  ASSERT_THAT(tuned, IsOk());

  // The same architecture, initialised as fine-tuning would, never trained.
  torch::manual_seed(StreamSeed(f.seed, RngStream::kInit, 0));
  UNet untrained(f.model);
  const double untrained_dice =
      MeanOverVolumes(EvaluateVolumes(untrained, data->test, data->num_classes(), false));
  EXPECT_GT(tuned->mean_dice, untrained_dice + 0.2)
      << "fine-tuned " << tuned->mean_dice << " vs untrained " << untrained_dice;
  EXPECT_EQ(tuned->test_cases.size(), data->test.size());
}

}  // namespace
}  // namespace gcl::core
