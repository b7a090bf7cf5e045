// Fine-tuning loop (spec 8): learns on synthetic phantoms, frozen encoder,
// model selection on val, determinism, labelled-subset protocol, errors.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"
#include "worker/gcl/data/synthetic.h"
#include "worker/gcl/train/checkpoint.h"
#include "worker/gcl/train/finetune.h"

namespace gcl::core {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;
using ::gcl::testing::TempDir;
using ::testing::HasSubstr;

// 8 phantom patients (2 volumes each): 4 train, 2 val, 2 test; 32 x 32 x 4.
const Dataset& TinyDataset() {
  static const Dataset* d = [] {
    SyntheticOptions so;
    so.patients = 8;
    so.slices = 4;
    so.size = 32;
    so.seed = 3;
    std::vector<Volume> vols = GenerateSyntheticVolumes(so);
    auto* ds = new Dataset;
    for (size_t i = 0; i < vols.size(); ++i) {
      const size_t patient = i / 2;
      (patient < 4 ? ds->train : patient < 6 ? ds->val : ds->test).push_back(vols[i]);
    }
    ds->class_names = {"background", "RV", "Myo", "LV"};
    ds->has_phase = true;
    return ds;
  }();
  return *d;
}

FinetuneOptions TinyOptions() {
  FinetuneOptions o;
  o.model.in_channels = 1;
  o.model.num_classes = 4;
  o.model.base = 8;  // base 4 is too narrow to learn reliably in 60 steps
  o.model.depth = 3;
  o.labeled_volumes = 2;
  o.steps = 60;
  o.batch = 6;
  o.lr = 1e-2;
  o.lr_min = 1e-4;
  o.val_every = 10;
  o.seed = 7;
  o.threads = 1;  // 2 threads spin-wait badly on the shared 2-core box (30x slower)
  return o;
}

std::map<std::string, torch::Tensor> TensorsWithPrefix(const std::string& ckpt_path,
                                                       const std::string& prefix) {
  auto ckpt = ReadCheckpoint(ckpt_path);
  EXPECT_THAT(ckpt, IsOk());
  std::map<std::string, torch::Tensor> out;
  if (!ckpt.ok()) return out;
  for (const auto& [name, t] : ckpt->tensors) {
    if (name.rfind(prefix, 0) == 0) out[name] = t;
  }
  return out;
}

TEST(FinetuneTest, LossFallsAndBeatsUntrainedNetwork) {
  FinetuneOptions o = TinyOptions();
  std::vector<double> losses;
  FinetuneCallbacks cb;
  cb.on_step = [&](int64_t step, double loss, double lr, double) {
    EXPECT_EQ(step, static_cast<int64_t>(losses.size()) + 1);
    EXPECT_DOUBLE_EQ(lr, FinetuneLr(o, step - 1));
    losses.push_back(loss);
  };
  auto trained = RunFinetune(TinyDataset(), o, cb);
  ASSERT_THAT(trained, IsOk());
  ASSERT_EQ(losses.size(), 60u);
  EXPECT_LT(trained->last_loss, 0.8 * trained->first_loss);

  FinetuneOptions untrained_opt = o;
  untrained_opt.steps = 0;  // same seed: the same initial weights, never updated
  auto untrained = RunFinetune(TinyDataset(), untrained_opt);
  ASSERT_THAT(untrained, IsOk());
  EXPECT_GT(trained->mean_dice, untrained->mean_dice + 0.2)
      << "trained " << trained->mean_dice << " untrained " << untrained->mean_dice;

  ASSERT_EQ(trained->test_cases.size(), 4u);
  EXPECT_EQ(trained->test_cases[0].case_id, TinyDataset().test[0].id);
  EXPECT_EQ(trained->per_class_dice.size(), 3u);
  EXPECT_EQ(trained->hd95_unit, "mm");  // phantoms have spacing {8, 1.5, 1.5}
  EXPECT_TRUE(std::isfinite(trained->accumulated_dice));
  EXPECT_GT(trained->accumulated_dice, 0.0);
  // M_lab = 2 patients -> their ED and ES volumes.
  ASSERT_EQ(trained->labeled_ids.size(), 4u);
  std::set<std::string> cases;
  for (const auto& id : trained->labeled_ids) cases.insert(id.substr(0, 6));
  EXPECT_EQ(cases.size(), 2u);
}

TEST(FinetuneTest, DeterministicGivenSeed) {
  FinetuneOptions o = TinyOptions();
  o.steps = 12;
  o.val_every = 6;
  auto run = [&](const FinetuneOptions& opt, std::vector<double>* losses) {
    FinetuneCallbacks cb;
    cb.on_step = [losses](int64_t, double loss, double, double) { losses->push_back(loss); };
    return RunFinetune(TinyDataset(), opt, cb);
  };
  std::vector<double> l1, l2;
  auto a = run(o, &l1);
  auto b = run(o, &l2);
  ASSERT_THAT(a, IsOk());
  ASSERT_THAT(b, IsOk());
  EXPECT_EQ(l1, l2);
  EXPECT_EQ(a->labeled_ids, b->labeled_ids);
  EXPECT_EQ(a->best_step, b->best_step);
  EXPECT_EQ(a->best_val_dice, b->best_val_dice);
  ASSERT_EQ(a->test_cases.size(), b->test_cases.size());
  for (size_t i = 0; i < a->test_cases.size(); ++i) {
    EXPECT_EQ(a->test_cases[i].mean_dice, b->test_cases[i].mean_dice);
    EXPECT_EQ(a->test_cases[i].mean_hd95, b->test_cases[i].mean_hd95);
  }
  // Another seed trains differently.
  FinetuneOptions other = o;
  other.seed = 8;
  std::vector<double> l3;
  ASSERT_THAT(run(other, &l3), IsOk());
  EXPECT_NE(l1, l3);
}

TEST(FinetuneTest, LabeledSubsetsAreNestedAndVaryWithRepeat) {
  FinetuneOptions o = TinyOptions();
  std::set<std::vector<size_t>> subsets;
  for (int64_t r = 0; r < 6; ++r) {
    o.repeat = r;
    o.labeled_volumes = 1;
    auto one = SelectLabeledVolumes(TinyDataset(), o);
    ASSERT_THAT(one, IsOk());
    ASSERT_EQ(one->size(), 2u);  // ED + ES of one patient
    EXPECT_EQ(TinyDataset().train[(*one)[0]].case_id, TinyDataset().train[(*one)[1]].case_id);
    o.labeled_volumes = 3;
    auto three = SelectLabeledVolumes(TinyDataset(), o);
    ASSERT_THAT(three, IsOk());
    EXPECT_EQ(three->size(), 6u);
    for (size_t v : *one) EXPECT_NE(std::find(three->begin(), three->end(), v), three->end());
    subsets.insert(*one);
  }
  EXPECT_GT(subsets.size(), 1u);
  o.labeled_volumes = 0;  // all
  auto all = SelectLabeledVolumes(TinyDataset(), o);
  ASSERT_THAT(all, IsOk());
  EXPECT_EQ(all->size(), TinyDataset().train.size());
}

TEST(FinetuneTest, ModelSelectionKeepsBestValidationStep) {
  TempDir dir;
  FinetuneOptions o = TinyOptions();
  o.steps = 40;
  o.val_every = 5;
  o.lr = 2e-2;  // a jumpy run, so the last step is not automatically the best
  o.output_dir = dir.path().string();
  std::vector<std::pair<int64_t, double>> vals;
  FinetuneCallbacks cb;
  cb.on_validate = [&](int64_t step, double dice) { vals.emplace_back(step, dice); };
  auto r = RunFinetune(TinyDataset(), o, cb);
  ASSERT_THAT(r, IsOk());
  ASSERT_EQ(vals.size(), 8u);
  auto best = vals.front();
  for (const auto& v : vals) {
    if (v.second > best.second) best = v;  // first maximum wins ties
  }
  EXPECT_EQ(r->best_step, best.first);
  EXPECT_EQ(r->best_val_dice, best.second);

  // The saved weights are the selected ones: re-scoring val reproduces the number.
  ASSERT_EQ(r->best_checkpoint, (dir.path() / "best.ckpt").string());
  UNet model(o.model);
  auto ckpt = ReadCheckpoint(r->best_checkpoint);
  ASSERT_THAT(ckpt, IsOk());
  EXPECT_EQ(ckpt->meta.kind, "finetune");
  EXPECT_EQ(ckpt->meta.step, r->best_step);
  ASSERT_THAT(RestoreModuleState("", *ckpt, model.get()), IsOk());
  EXPECT_EQ(MeanOverVolumes(EvaluateVolumes(model, TinyDataset().val, 4, false)), r->best_val_dice);
  EXPECT_EQ(MeanOverVolumes(EvaluateVolumes(model, TinyDataset().test, 4, false)), r->mean_dice);

  // Output files.
  std::ifstream summary(dir.path() / "summary.json");
  std::stringstream ss;
  ss << summary.rdbuf();
  EXPECT_THAT(ss.str(), HasSubstr("\"metric_per_case\""));
  EXPECT_THAT(ss.str(), HasSubstr("\"hd95_unit\": \"mm\""));
  EXPECT_THAT(ss.str(), HasSubstr(TinyDataset().test[0].id));
  std::ifstream metrics(dir.path() / "metrics.jsonl");
  int lines = 0, val_lines = 0;
  for (std::string line; std::getline(metrics, line);) {
    ++lines;
    if (line.find("gcl_finetune_val_dice") != std::string::npos) ++val_lines;
  }
  EXPECT_EQ(lines, 40);
  EXPECT_EQ(val_lines, 8);
  EXPECT_TRUE(fs::exists(dir.path() / "finetune.json"));
}

TEST(FinetuneTest, FrozenEncoderKeepsPretrainedWeights) {
  TempDir dir;
  FinetuneOptions o = TinyOptions();
  o.steps = 15;
  o.val_every = 5;

  // A "pre-training" checkpoint: an encoder with its own init and non-trivial BN stats.
  torch::manual_seed(1234);
  UNetEncoder pre(o.model);
  {
    torch::NoGradGuard ng;
    for (auto& b : pre->buffers()) {
      if (b.is_floating_point()) b.add_(0.25);
    }
  }
  std::vector<std::pair<std::string, torch::Tensor>> tensors;
  AppendModuleState("encoder.", *pre, &tensors);
  tensors.emplace_back("head_i.weight", torch::ones({3}));  // ignored at fine-tuning
  CheckpointMeta meta;
  meta.kind = "pretrain";
  const std::string init = (dir.path() / "pre.ckpt").string();
  ASSERT_THAT(WriteCheckpoint(init, tensors, meta), IsOk());
  std::map<std::string, torch::Tensor> pre_state;
  for (const auto& [name, t] : tensors) pre_state[name] = t;

  auto run = [&](bool frozen, int64_t steps, const std::string& sub) {
    FinetuneOptions f = o;
    f.init_checkpoint = init;
    f.frozen_encoder = frozen;
    f.steps = steps;
    f.output_dir = (dir.path() / sub).string();
    auto r = RunFinetune(TinyDataset(), f);
    EXPECT_THAT(r, IsOk());
    return (dir.path() / sub / "best.ckpt").string();
  };
  const std::string frozen = run(true, 15, "frozen");
  const std::string tuned = run(false, 15, "tuned");
  const std::string start = run(false, 0, "start");

  auto frozen_enc = TensorsWithPrefix(frozen, "encoder.");
  auto tuned_enc = TensorsWithPrefix(tuned, "encoder.");
  auto start_enc = TensorsWithPrefix(start, "encoder.");
  ASSERT_EQ(frozen_enc.size(), pre->parameters().size() + pre->buffers().size());
  bool tuned_changed = false;
  for (const auto& [name, t] : frozen_enc) {
    ASSERT_TRUE(pre_state.count(name)) << name;
    EXPECT_TRUE(torch::equal(t, pre_state[name])) << name << " changed under a frozen encoder";
    EXPECT_TRUE(torch::equal(start_enc[name], pre_state[name])) << name << " not loaded";
    if (!torch::equal(tuned_enc[name], pre_state[name])) tuned_changed = true;
  }
  EXPECT_TRUE(tuned_changed);
  // The decoder does train when the encoder is frozen.
  auto frozen_dec = TensorsWithPrefix(frozen, "decoder.");
  auto start_dec = TensorsWithPrefix(start, "decoder.");
  ASSERT_FALSE(frozen_dec.empty());
  bool dec_changed = false;
  for (const auto& [name, t] : frozen_dec) {
    if (!torch::equal(t, start_dec[name])) dec_changed = true;
  }
  EXPECT_TRUE(dec_changed);
}

TEST(FinetuneTest, RejectsBadOptions) {
  FinetuneOptions o = TinyOptions();
  o.loss = "focal";
  EXPECT_THAT(RunFinetune(TinyDataset(), o), StatusIs(absl::StatusCode::kInvalidArgument, "focal"));
  o = TinyOptions();
  o.labeled_volumes = 5;  // only 4 train patients
  EXPECT_THAT(RunFinetune(TinyDataset(), o),
              StatusIs(absl::StatusCode::kInvalidArgument, "labeled_volumes"));
  o = TinyOptions();
  o.model.num_classes = 3;
  EXPECT_THAT(RunFinetune(TinyDataset(), o),
              StatusIs(absl::StatusCode::kInvalidArgument, "classes"));
  o = TinyOptions();
  o.init_checkpoint = "/nonexistent/pre.ckpt";
  EXPECT_FALSE(RunFinetune(TinyDataset(), o).ok());
}

}  // namespace
}  // namespace gcl::core
