// Spec test 7: Dice is 1 on a perfect prediction, the standard value on
// hand-made 3D volumes, and skips empty classes; accumulated Dice; summary.json.
#include <cmath>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/gcl/eval/dice.h"
#include "worker/gcl/eval/summary.h"

namespace gcl::core {
namespace {

using ::testing::HasSubstr;

at::Tensor Labels(std::vector<int64_t> v, int64_t s, int64_t h, int64_t w) {
  return at::tensor(v, at::kLong).reshape({s, h, w});
}

// ref / pred, [2, 2, 3]:
//   ref  s0 = [[1,1,0],[2,2,0]]  s1 = [[1,0,0],[2,2,2]]
//   pred s0 = [[1,0,0],[2,2,2]]  s1 = [[1,1,0],[0,2,2]]
// class 1: |G| = 3, |P| = 3, |P∩G| = 2 -> 4/6
// class 2: |G| = 5, |P| = 5, |P∩G| = 4 -> 8/10
// class 3: absent from both -> skipped
at::Tensor ToyRef() { return Labels({1, 1, 0, 2, 2, 0, 1, 0, 0, 2, 2, 2}, 2, 2, 3); }
at::Tensor ToyPred() { return Labels({1, 0, 0, 2, 2, 2, 1, 1, 0, 0, 2, 2}, 2, 2, 3); }

TEST(DiceTest, PerfectPredictionIsOne) {
  at::Tensor ref = ToyRef();
  VolumeScore vs = ScoreVolume(ref, ref.clone(), 3, {1, 1, 1});
  ASSERT_EQ(vs.classes.size(), 2u);
  for (const auto& c : vs.classes) {
    EXPECT_TRUE(c.dice_valid);
    EXPECT_DOUBLE_EQ(c.dice, 1.0);
    EXPECT_TRUE(c.hd95_valid);
    EXPECT_DOUBLE_EQ(c.hd95, 0.0);
  }
  EXPECT_DOUBLE_EQ(vs.mean_dice, 1.0);
  EXPECT_DOUBLE_EQ(vs.mean_hd95, 0.0);
}

TEST(DiceTest, HandMadeToyVolume) {
  VolumeScore vs = ScoreVolume(ToyPred(), ToyRef(), 4, {2.0, 1.0, 1.0}, /*compute_hd95=*/false);
  ASSERT_EQ(vs.classes.size(), 3u);
  EXPECT_EQ(vs.classes[0].n_ref, 3);
  EXPECT_EQ(vs.classes[0].n_pred, 3);
  EXPECT_EQ(vs.classes[0].n_intersection, 2);
  EXPECT_DOUBLE_EQ(vs.classes[0].dice, 4.0 / 6.0);
  EXPECT_EQ(vs.classes[1].n_ref, 5);
  EXPECT_EQ(vs.classes[1].n_pred, 5);
  EXPECT_EQ(vs.classes[1].n_intersection, 4);
  EXPECT_DOUBLE_EQ(vs.classes[1].dice, 0.8);
  // Empty class skipped: not valid, not in the mean.
  EXPECT_FALSE(vs.classes[2].dice_valid);
  EXPECT_FALSE(vs.classes[2].hd95_valid);
  EXPECT_DOUBLE_EQ(vs.mean_dice, (4.0 / 6.0 + 0.8) / 2.0);
  EXPECT_FALSE(vs.classes[0].hd95_valid);  // not computed
  EXPECT_TRUE(std::isnan(vs.mean_hd95));
  EXPECT_EQ(vs.hd95_unit, "mm");
}

TEST(DiceTest, ClassInOnlyOneMaskIsZeroDiceAndSkippedHd95) {
  at::Tensor ref = ToyRef();
  ref[0][0][2] = 3;  // class 3 only in the reference
  VolumeScore vs = ScoreVolume(ToyPred(), ref, 4, {0, 0, 0});
  EXPECT_EQ(vs.hd95_unit, "voxel");
  ASSERT_EQ(vs.classes.size(), 3u);
  EXPECT_TRUE(vs.classes[2].dice_valid);
  EXPECT_DOUBLE_EQ(vs.classes[2].dice, 0.0);
  EXPECT_FALSE(vs.classes[2].hd95_valid);
  EXPECT_DOUBLE_EQ(vs.mean_dice, (4.0 / 6.0 + 0.8 + 0.0) / 3.0);
  EXPECT_TRUE(vs.classes[0].hd95_valid);
  EXPECT_TRUE(vs.classes[1].hd95_valid);
  EXPECT_DOUBLE_EQ(vs.mean_hd95, (vs.classes[0].hd95 + vs.classes[1].hd95) / 2.0);
}

TEST(DiceTest, AllClassesEmptyGivesNanMean) {
  at::Tensor zeros = at::zeros({2, 3, 3}, at::kLong);
  VolumeScore vs = ScoreVolume(zeros, zeros, 3, {1, 1, 1});
  EXPECT_FALSE(vs.classes[0].dice_valid);
  EXPECT_FALSE(vs.classes[1].dice_valid);
  EXPECT_TRUE(std::isnan(vs.mean_dice));
}

TEST(DiceTest, RejectsBadInput) {
  EXPECT_ANY_THROW(ScoreVolume(ToyPred(), ToyRef(), 2, {1, 1, 1}));  // label 2 >= 2
  EXPECT_ANY_THROW(ScoreVolume(ToyPred(), ToyRef().reshape({2, 3, 2}), 3, {1, 1, 1}));
}

TEST(DiceTest, VolumeAndClassMeans) {
  at::Tensor perfect = Labels({1, 1, 0, 1, 1, 0}, 1, 2, 3);
  std::vector<VolumeScore> cases = {ScoreVolume(ToyPred(), ToyRef(), 3, {1, 1, 1}, false),
                                    ScoreVolume(perfect, perfect, 3, {1, 1, 1}, false)};
  // Volume 2 has only class 1: its mean is 1.
  EXPECT_DOUBLE_EQ(MeanOverVolumes(cases), ((4.0 / 6.0 + 0.8) / 2.0 + 1.0) / 2.0);
  std::vector<double> per_class = PerClassMean(cases, 3);
  ASSERT_EQ(per_class.size(), 2u);
  EXPECT_DOUBLE_EQ(per_class[0], (4.0 / 6.0 + 1.0) / 2.0);
  EXPECT_DOUBLE_EQ(per_class[1], 0.8);
}

TEST(AccumulatedDiceTest, SumsIntersectionsAndSizesOverVolumes) {
  at::Tensor perfect = Labels({1, 1, 0, 1, 1, 0}, 1, 2, 3);  // class 1: 4 voxels
  AccumulatedDice acc;
  acc.Add(ToyPred(), ToyRef(), 4);
  acc.Add(perfect, perfect, 4);
  std::vector<double> pc = acc.PerClass();
  ASSERT_EQ(pc.size(), 3u);
  EXPECT_DOUBLE_EQ(pc[0], 2.0 * (2 + 4) / (6 + 8));  // 6/7
  EXPECT_DOUBLE_EQ(pc[1], 0.8);
  EXPECT_TRUE(std::isnan(pc[2]));
  EXPECT_DOUBLE_EQ(acc.Mean(), (12.0 / 14.0 + 0.8) / 2.0);
  // From the scores' counts: the same numbers without re-predicting.
  AccumulatedDice from_scores;
  from_scores.Add(ScoreVolume(ToyPred(), ToyRef(), 4, {1, 1, 1}, false));
  from_scores.Add(ScoreVolume(perfect, perfect, 4, {1, 1, 1}, false));
  EXPECT_DOUBLE_EQ(from_scores.PerClass()[0], pc[0]);
  EXPECT_DOUBLE_EQ(from_scores.PerClass()[1], pc[1]);
  EXPECT_DOUBLE_EQ(from_scores.Mean(), acc.Mean());
  EXPECT_ANY_THROW(acc.Add(perfect, perfect, 3));
  acc.Reset();
  acc.Add(perfect, perfect, 2);
  EXPECT_DOUBLE_EQ(acc.Mean(), 1.0);
}

// Brackets balance outside strings: a cheap well-formedness check.
bool Balanced(const std::string& s) {
  std::vector<char> stack;
  bool in_str = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_str) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_str = false;
      continue;
    }
    if (c == '"')
      in_str = true;
    else if (c == '{' || c == '[')
      stack.push_back(c);
    else if (c == '}' || c == ']') {
      if (stack.empty() || stack.back() != (c == '}' ? '{' : '[')) return false;
      stack.pop_back();
    }
  }
  return stack.empty() && !in_str;
}

TEST(SummaryJsonTest, NnUnetShape) {
  at::Tensor perfect = Labels({1, 1, 0, 1, 1, 0}, 1, 2, 3);
  std::vector<VolumeScore> cases = {ScoreVolume(ToyPred(), ToyRef(), 4, {1, 1, 1}),
                                    ScoreVolume(perfect, perfect, 4, {1, 1, 1})};
  cases[0].case_id = "p\"001\\x\n";
  cases[1].case_id = "p002";
  std::string json = SummaryJson(cases, {"background", "RV", "Myo", "LV"}, "mm");
  EXPECT_TRUE(Balanced(json)) << json;
  EXPECT_THAT(json, HasSubstr("\"metric_per_case\": ["));
  EXPECT_THAT(json, HasSubstr("\"case\": \"p\\\"001\\\\x\\n\""));
  EXPECT_THAT(json, HasSubstr("\"reference_file\": \"p002\""));
  EXPECT_THAT(json, HasSubstr("\"metrics\": {\"1\": {\"Dice\": 1, \"HD95\": 0, \"n_ref\": 4, "
                              "\"n_pred\": 4"));
  EXPECT_THAT(json, HasSubstr("\"3\": {\"Dice\": null, \"HD95\": null, \"n_ref\": 0"));
  EXPECT_THAT(json, HasSubstr("\"mean\": {"));
  EXPECT_THAT(json, HasSubstr("\"2\": {\"Dice\": 0.8,"));
  EXPECT_THAT(json, HasSubstr("\"foreground_mean\": {\"Dice\": "));
  EXPECT_THAT(json, HasSubstr("\"class_names\": [\"background\", \"RV\", \"Myo\", \"LV\"]"));
  EXPECT_THAT(json, HasSubstr("\"hd95_unit\": \"mm\""));
  EXPECT_THAT(json, HasSubstr("\"num_cases\": 2"));
  EXPECT_EQ(json.find("nan"), std::string::npos);
  // foreground_mean = mean of class means: class 1 (2/3 + 1)/2, class 2 0.8, class 3 none.
  const double fg = ((4.0 / 6.0 + 1.0) / 2.0 + 0.8) / 2.0;
  const size_t at = json.find("\"foreground_mean\": {\"Dice\": ");
  ASSERT_NE(at, std::string::npos);
  EXPECT_NEAR(std::stod(json.substr(at + 28)), fg, 1e-15);
}

TEST(SummaryJsonTest, EscapesAndEmptyInput) {
  std::string json = SummaryJson({}, {"background", std::string("a\tb\x01", 4)}, "voxel");
  EXPECT_THAT(json, HasSubstr("\"a\\tb\\u0001\""));
  EXPECT_TRUE(Balanced(json)) << json;
  EXPECT_THAT(json, HasSubstr("\"metric_per_case\": []"));
  EXPECT_THAT(json, HasSubstr("\"1\": {\"Dice\": null"));
}

}  // namespace
}  // namespace gcl::core
