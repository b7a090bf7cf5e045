// PreprocessVolume (spec 2.2 as adapted by the data contract): percentile
// clipping, min-max scaling, centred square padding, resizing, spacing.
#include <set>
#include <vector>

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "worker/gcl/data/preprocess.h"

namespace gcl::core {
namespace {

TEST(PreprocessTest, PercentileMatchesLinearInterpolation) {
  at::Tensor x = at::arange(101, at::kFloat);  // 0..100
  EXPECT_NEAR(Percentile(x, 0.5), 0.5, 1e-9);
  EXPECT_NEAR(Percentile(x, 99.5), 99.5, 1e-9);
  EXPECT_NEAR(Percentile(x, 0.0), 0.0, 1e-9);
  EXPECT_NEAR(Percentile(x, 100.0), 100.0, 1e-9);
  // numpy.percentile([4, 1, 3, 2], 50) = 2.5; q = 10 -> 1.3.
  at::Tensor y = at::tensor({4.0f, 1.0f, 3.0f, 2.0f});
  EXPECT_NEAR(Percentile(y, 50.0), 2.5, 1e-9);
  EXPECT_NEAR(Percentile(y, 10.0), 1.3, 1e-6);
}

TEST(PreprocessTest, NormalizeClipsOutliersAndScalesToUnitRange) {
  // 1000 values 0..999 and one huge outlier: P99.5 is ~995, so the outlier
  // is clipped instead of squashing everything else towards 0.
  at::Tensor x = at::cat({at::arange(1000, at::kFloat), at::tensor({1e6f})}).reshape({1, 7, 143});
  at::Tensor y = NormalizeIntensity(x);
  EXPECT_EQ(y.scalar_type(), at::kFloat);
  EXPECT_FLOAT_EQ(y.min().item<float>(), 0.0f);
  EXPECT_FLOAT_EQ(y.max().item<float>(), 1.0f);
  const double lo = Percentile(x, 0.5), hi = Percentile(x, 99.5);
  EXPECT_NEAR(lo, 5.0, 1e-9);     // position 0.005 * 1000 = 5
  EXPECT_NEAR(hi, 995.0, 1e-9);   // position 995
  const float v500 = y.reshape({-1})[500].item<float>();
  EXPECT_NEAR(v500, (500.0 - lo) / (hi - lo), 1e-6);
  EXPECT_FLOAT_EQ(y.reshape({-1})[1000].item<float>(), 1.0f);  // the outlier
  EXPECT_FLOAT_EQ(y.reshape({-1})[2].item<float>(), 0.0f);     // below P0.5
  // A constant volume maps to zeros rather than NaN.
  EXPECT_TRUE(at::equal(NormalizeIntensity(at::full({2, 3, 3}, 7.0f)), at::zeros({2, 3, 3})));
}

TEST(PreprocessTest, PadsToCentredSquareWithoutResizeWhenSizesMatch) {
  Volume v;
  v.id = "x";
  v.image = at::rand({2, 20, 9}) + 1.0;
  v.label = at::ones({2, 20, 9}, at::kLong);
  Volume out = PreprocessVolume(v, 20);
  ASSERT_EQ(out.image.sizes(), (std::vector<int64_t>{2, 20, 20}));
  ASSERT_EQ(out.label.sizes(), (std::vector<int64_t>{2, 20, 20}));
  // W 9 -> 20: 5 columns left, 6 right.
  using at::indexing::Slice;
  EXPECT_EQ(out.label.index({Slice(), Slice(), Slice(0, 5)}).sum().item<int64_t>(), 0);
  EXPECT_EQ(out.label.index({Slice(), Slice(), Slice(14, 20)}).sum().item<int64_t>(), 0);
  EXPECT_TRUE(at::equal(out.label.index({Slice(), Slice(), Slice(5, 14)}), v.label));
  EXPECT_TRUE(at::allclose(out.image.index({Slice(), Slice(), Slice(5, 14)}), NormalizeIntensity(v.image)));
  EXPECT_EQ(out.image.index({Slice(), Slice(), Slice(0, 5)}).abs().sum().item<float>(), 0.0f);
  EXPECT_EQ(out.id, "x");
}

TEST(PreprocessTest, ResizesImageBilinearAndLabelNearest) {
  Volume v;
  v.image = at::rand({3, 40, 30});
  v.label = at::randint(0, 3, {3, 40, 30}, at::kLong) * 2 + 1;  // values {1, 3, 5}
  v.label.index_put_({0, 0, 0}, 0);
  v.spacing_zyx = {5.0, 1.25, 1.25};
  v.phase = 1;
  v.case_id = "c";
  Volume out = PreprocessVolume(v, 16);
  ASSERT_EQ(out.image.sizes(), (std::vector<int64_t>{3, 16, 16}));
  EXPECT_EQ(out.image.scalar_type(), at::kFloat);
  EXPECT_GE(out.image.min().item<float>(), 0.0f);
  EXPECT_LE(out.image.max().item<float>(), 1.0f);
  EXPECT_EQ(out.label.scalar_type(), at::kLong);
  at::Tensor u = std::get<0>(at::_unique(out.label.reshape({-1})));
  std::set<int64_t> values;
  for (int64_t i = 0; i < u.numel(); ++i) values.insert(u[i].item<int64_t>());
  for (int64_t value : values) EXPECT_TRUE(value == 0 || value == 1 || value == 3 || value == 5) << value;
  EXPECT_TRUE(values.count(1) && values.count(3) && values.count(5));
  // Square side 40 -> 16: in-plane spacing grows by 40 / 16.
  EXPECT_DOUBLE_EQ(out.spacing_zyx[0], 5.0);
  EXPECT_DOUBLE_EQ(out.spacing_zyx[1], 1.25 * 40 / 16);
  EXPECT_DOUBLE_EQ(out.spacing_zyx[2], 1.25 * 40 / 16);
  EXPECT_EQ(out.phase, 1);
  EXPECT_EQ(out.case_id, "c");

  // Unknown spacing stays unknown; unlabelled stays unlabelled.
  Volume w;
  w.image = at::rand({1, 8, 8});
  Volume wo = PreprocessVolume(w, 32);
  EXPECT_FALSE(wo.label.defined());
  EXPECT_FALSE(wo.has_spacing());
  EXPECT_EQ(wo.spacing_zyx[1], 0.0);
}

TEST(PreprocessTest, NearestUpsamplingReplicatesBlocksAndBilinearKeepsRamps) {
  Volume blocks;
  blocks.image = at::zeros({1, 2, 2});
  blocks.label = at::arange(4, at::kLong).reshape({1, 2, 2});
  Volume lab = PreprocessVolume(blocks, 4);
  at::Tensor expected = at::tensor({0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3}, at::kLong).reshape({1, 4, 4});
  EXPECT_TRUE(at::equal(lab.label, expected));
  Volume v;
  v.image = at::arange(8, at::kFloat).reshape({1, 1, 8}).expand({1, 8, 8}).contiguous();  // ramp along W
  Volume ramp = PreprocessVolume(v, 4);
  at::Tensor row = ramp.image[0][2];
  for (int i = 1; i < 4; ++i) EXPECT_GT(row[i].item<float>(), row[i - 1].item<float>());
  // Every row is the same (constant along H).
  EXPECT_TRUE(at::allclose(ramp.image[0][0], ramp.image[0][3]));
}

}  // namespace
}  // namespace gcl::core
