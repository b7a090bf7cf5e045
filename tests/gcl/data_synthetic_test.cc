// Synthetic phantom and meta labels (spec 2.1; architecture.md section 6).
#include <set>
#include <string>
#include <vector>

#include <ATen/ATen.h>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/gcl/data/meta_labels.h"
#include "worker/gcl/data/synthetic.h"

namespace gcl::core {
namespace {

using ::gcl::testing::StatusIs;

SyntheticOptions SmallOptions(uint64_t seed) {
  SyntheticOptions o;
  o.patients = 4;
  o.slices = 8;
  o.size = 64;
  o.seed = seed;
  return o;
}

TEST(SyntheticTest, ShapesIdsAndMetadata) {
  const auto vols = GenerateSyntheticVolumes(SmallOptions(1));
  ASSERT_EQ(vols.size(), 8u);
  EXPECT_EQ(vols[0].id, "syn001_frame01");
  EXPECT_EQ(vols[1].id, "syn001_frame02");
  EXPECT_EQ(vols[7].id, "syn004_frame02");
  for (size_t i = 0; i < vols.size(); ++i) {
    const Volume& v = vols[i];
    EXPECT_EQ(v.case_id, v.id.substr(0, 6));
    EXPECT_EQ(v.phase, static_cast<int>(i % 2));
    EXPECT_EQ(v.image.sizes(), (std::vector<int64_t>{8, 64, 64}));
    EXPECT_EQ(v.image.scalar_type(), at::kFloat);
    EXPECT_EQ(v.label.sizes(), v.image.sizes());
    EXPECT_EQ(v.label.scalar_type(), at::kLong);
    EXPECT_TRUE(v.has_spacing());
    EXPECT_EQ(v.spacing_zyx, (std::array<double, 3>{8, 1.5, 1.5}));
    EXPECT_GE(v.image.min().item<float>(), 0.0f);
    EXPECT_LE(v.image.max().item<float>(), 1.0f);
  }
}

TEST(SyntheticTest, DeterministicInSeed) {
  const auto a = GenerateSyntheticVolumes(SmallOptions(7));
  const auto b = GenerateSyntheticVolumes(SmallOptions(7));
  const auto c = GenerateSyntheticVolumes(SmallOptions(8));
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(at::equal(a[i].image, b[i].image)) << i;
    EXPECT_TRUE(at::equal(a[i].label, b[i].label)) << i;
    EXPECT_FALSE(at::equal(a[i].image, c[i].image)) << i;
    EXPECT_FALSE(at::equal(a[i].label, c[i].label)) << i;
  }
  // Patient p depends only on (seed, p), not on the number of patients.
  SyntheticOptions more = SmallOptions(7);
  more.patients = 6;
  const auto d = GenerateSyntheticVolumes(more);
  EXPECT_TRUE(at::equal(a[5].image, d[5].image));
}

TEST(SyntheticTest, AllClassesPresentAndPatientsDiffer) {
  const auto vols = GenerateSyntheticVolumes(SmallOptions(3));
  for (const Volume& v : vols) {
    for (int64_t k = 0; k < 4; ++k) {
      EXPECT_GT(v.label.eq(k).sum().item<int64_t>(), 0) << v.id << " class " << k;
    }
    EXPECT_EQ(v.label.max().item<int64_t>(), 3);
    // Every slice has all three structures (basal and apical).
    for (int64_t z = 0; z < v.label.size(0); ++z) {
      for (int64_t k = 1; k < 4; ++k) {
        EXPECT_GT(v.label[z].eq(k).sum().item<int64_t>(), 0) << v.id << " z=" << z << " k=" << k;
      }
    }
  }
  // Per-patient shape: ED label maps of different patients differ.
  EXPECT_FALSE(at::equal(vols[0].label, vols[2].label));
}

TEST(SyntheticTest, EsCavitySmallerAndWallThicker) {
  const auto vols = GenerateSyntheticVolumes(SmallOptions(5));
  for (size_t p = 0; p < vols.size() / 2; ++p) {
    const Volume& ed = vols[2 * p];
    const Volume& es = vols[2 * p + 1];
    ASSERT_EQ(ed.case_id, es.case_id);
    const int64_t lv_ed = ed.label.eq(kSyntheticLv).sum().item<int64_t>();
    const int64_t lv_es = es.label.eq(kSyntheticLv).sum().item<int64_t>();
    EXPECT_LT(lv_es, lv_ed) << ed.case_id;
    // Wall thickness ~ myocardial area / outer perimeter; compare the
    // myocardium-to-(LV+myo) area ratio instead, which grows at ES.
    const double myo_ed = ed.label.eq(kSyntheticMyo).sum().item<int64_t>();
    const double myo_es = es.label.eq(kSyntheticMyo).sum().item<int64_t>();
    EXPECT_GT(myo_es / (myo_es + lv_es), myo_ed / (myo_ed + lv_ed)) << ed.case_id;
  }
}

TEST(SyntheticTest, AreasShrinkFromBaseToApex) {
  SyntheticOptions o = SmallOptions(11);
  o.patients = 6;
  const auto vols = GenerateSyntheticVolumes(o);
  // Mean heart area (labels > 0) per slice over all volumes.
  at::Tensor area = at::zeros({o.slices}, at::kDouble);
  for (const Volume& v : vols) area += v.label.gt(0).sum({1, 2}).to(at::kDouble);
  for (int64_t z = 1; z < o.slices; ++z) {
    EXPECT_LT(area[z].item<double>(), area[z - 1].item<double>()) << "z=" << z;
  }
  // And per quantile: base quarter clearly larger than apex quarter.
  EXPECT_GT(area[0].item<double>(), 1.5 * area[o.slices - 1].item<double>());
}

TEST(SyntheticTest, IntensitiesFollowTissues) {
  const auto vols = GenerateSyntheticVolumes(SmallOptions(2));
  for (const Volume& v : vols) {
    const double blood = v.image.masked_select(v.label.eq(kSyntheticLv)).mean().item<float>();
    const double myo = v.image.masked_select(v.label.eq(kSyntheticMyo)).mean().item<float>();
    EXPECT_GT(blood, myo + 0.2) << v.id;
  }
}

// ---- meta labels ----

TEST(MetaLabelsTest, ParseAndName) {
  for (MetaLabel m : {MetaLabel::kPatient, MetaLabel::kPosition, MetaLabel::kPhase}) {
    auto parsed = ParseMetaLabel(MetaLabelName(m));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, m);
  }
  EXPECT_EQ(MetaLabelName(MetaLabel::kPosition), "position");
  EXPECT_THAT(ParseMetaLabel("slice"), StatusIs(absl::StatusCode::kInvalidArgument, "slice"));
}

TEST(MetaLabelsTest, PositionQuantileTable) {
  // S = 8: two slices per quarter.
  std::vector<int> s8;
  for (int s = 0; s < 8; ++s) s8.push_back(PositionQuantile(s, 8));
  EXPECT_EQ(s8, (std::vector<int>{0, 0, 1, 1, 2, 2, 3, 3}));
  // S = 10: floor(4s/10) = 0,0,0,1,1,2,2,2,3,3.
  std::vector<int> s10;
  for (int s = 0; s < 10; ++s) s10.push_back(PositionQuantile(s, 10));
  EXPECT_EQ(s10, (std::vector<int>{0, 0, 0, 1, 1, 2, 2, 2, 3, 3}));
  // S = 3: floor(4s/3) = 0, 1, 2 (no slice in quarter 3).
  EXPECT_EQ(PositionQuantile(0, 3), 0);
  EXPECT_EQ(PositionQuantile(1, 3), 1);
  EXPECT_EQ(PositionQuantile(2, 3), 2);
  // S = 1 and the min(., 3) cap.
  EXPECT_EQ(PositionQuantile(0, 1), 0);
  EXPECT_EQ(PositionQuantile(6, 7), 3);
}

Volume MakeVolume(const std::string& case_id, int phase, int64_t slices) {
  Volume v;
  v.case_id = case_id;
  v.id = case_id + "_" + std::to_string(phase);
  v.phase = phase;
  v.image = at::zeros({slices, 4, 4});
  return v;
}

TEST(MetaLabelsTest, IndexSlicesDensePatients) {
  std::vector<Volume> vols = {MakeVolume("b", 0, 5), MakeVolume("a", 1, 3),
                              MakeVolume("b", 1, 4), MakeVolume("c", -1, 2)};
  const auto refs = IndexSlices(vols);
  ASSERT_EQ(refs.size(), 14u);
  EXPECT_EQ(refs[0], (SliceRef{0, 0, 0, 0, 0}));
  EXPECT_EQ(refs[4], (SliceRef{0, 4, 0, 3, 0}));  // floor(16/5) = 3
  EXPECT_EQ(refs[5], (SliceRef{1, 0, 1, 0, 1}));  // "a" is second seen
  EXPECT_EQ(refs[7], (SliceRef{1, 2, 1, 2, 1}));  // floor(8/3) = 2
  EXPECT_EQ(refs[8], (SliceRef{2, 0, 0, 0, 1}));  // "b" again -> 0
  EXPECT_EQ(refs[12], (SliceRef{3, 0, 2, 0, -1}));
  EXPECT_EQ(refs[13], (SliceRef{3, 1, 2, 2, -1}));
}

TEST(MetaLabelsTest, ViewLabelsRepeatEachSlice) {
  std::vector<SliceRef> batch = {{0, 1, 5, 2, 1}, {3, 0, 7, 0, 0}};
  EXPECT_TRUE(at::equal(ViewLabels(batch, MetaLabel::kPatient),
                        at::tensor(std::vector<int64_t>{5, 5, 7, 7})));
  EXPECT_TRUE(at::equal(ViewLabels(batch, MetaLabel::kPosition),
                        at::tensor(std::vector<int64_t>{2, 2, 0, 0})));
  EXPECT_TRUE(at::equal(ViewLabels(batch, MetaLabel::kPhase),
                        at::tensor(std::vector<int64_t>{1, 1, 0, 0})));
  EXPECT_EQ(ViewLabels(batch, MetaLabel::kPhase).scalar_type(), at::kLong);
}

}  // namespace
}  // namespace gcl::core
