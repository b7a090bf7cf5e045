#include "worker/gcl/model/unet.h"

#include <torch/torch.h>

#include "gtest/gtest.h"
#include "worker/gcl/model/projection_head.h"

namespace gcl::core {
namespace {

int64_t CountParams(torch::nn::Module& m) {
  int64_t total = 0;
  for (const auto& p : m.parameters()) total += p.numel();
  return total;
}

TEST(UNetTest, EncoderParameterCountBase16Depth5) {
  torch::manual_seed(0);
  UNetEncoder enc(UNetOptions{});
  // Per level: conv(cin->c, 3x3, no bias) + BN(2c) + conv(c->c) + BN(2c).
  // 16: 144+32+2304+32 = 2512; 32: 4608+64+9216+64 = 13952;
  // 64: 18432+128+36864+128 = 55552; 128: 73728+256+147456+256 = 221696;
  // 256: 294912+512+589824+512 = 885760. Sum = 1179472.
  EXPECT_EQ(CountParams(*enc), 1179472);
  EXPECT_EQ(enc->out_channels(), 256);
  // The last conv is level 4's second conv: 256 -> 256, 3x3, no bias.
  auto last = enc->last_conv();
  EXPECT_EQ(last->weight.sizes(), (std::vector<int64_t>{256, 256, 3, 3}));
  EXPECT_FALSE(last->bias.defined());
  // last_conv() shares its weight with the registered module (same storage).
  bool found = false;
  for (const auto& p : enc->named_parameters()) {
    if (p.value().is_same(last->weight)) {
      found = true;
      EXPECT_EQ(p.key(), "level4.3.weight");
    }
  }
  EXPECT_TRUE(found);
}

TEST(UNetTest, ShapesDepth5) {
  torch::manual_seed(1);
  UNetOptions o;
  o.base = 4;
  UNet net(o);
  auto x = torch::randn({2, 1, 64, 48});
  auto feats = net->encoder->forward(x);
  ASSERT_EQ(feats.size(), 5u);
  EXPECT_EQ(feats[0].sizes(), (std::vector<int64_t>{2, 4, 64, 48}));
  EXPECT_EQ(feats.back().sizes(), (std::vector<int64_t>{2, 64, 4, 3}));
  EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{2, 4, 64, 48}));
}

TEST(UNetTest, ShapesDepth4AndOddSizes) {
  torch::manual_seed(2);
  UNetOptions o;
  o.base = 4;
  o.depth = 4;
  o.num_classes = 3;
  o.in_channels = 2;
  UNet net(o);
  auto x = torch::randn({1, 2, 37, 45});
  auto feats = net->encoder->forward(x);
  ASSERT_EQ(feats.size(), 4u);
  EXPECT_EQ(feats.back().sizes(), (std::vector<int64_t>{1, 32, 4, 5}));  // floor(37/8), floor(45/8)
  EXPECT_EQ(net->forward(x).sizes(), (std::vector<int64_t>{1, 3, 37, 45}));
}

TEST(UNetTest, RegisteredNamesAndInit) {
  torch::manual_seed(3);
  UNetOptions o;
  o.base = 8;
  UNet net(o);
  auto params = net->named_parameters();
  EXPECT_TRUE(params.contains("encoder.level0.0.weight"));
  EXPECT_TRUE(params.contains("decoder.head.weight"));
  EXPECT_TRUE(params.contains("decoder.head.bias"));
  // BN gamma 1, beta 0.
  EXPECT_TRUE(torch::all(params["encoder.level2.1.weight"] == 1).item<bool>());
  EXPECT_TRUE(torch::all(params["encoder.level2.1.bias"] == 0).item<bool>());
  // Kaiming normal, fan_in, ReLU gain: std = sqrt(2 / (cin * 9)). Level 3 conv2: 64*64*9 weights.
  const auto w = params["encoder.level3.3.weight"];
  const double expected_std = std::sqrt(2.0 / (64 * 9));
  EXPECT_NEAR(w.std().item<double>(), expected_std, 0.03 * expected_std);
  EXPECT_NEAR(w.mean().item<double>(), 0.0, 0.03 * expected_std);
  // Deterministic given the global seed.
  torch::manual_seed(3);
  UNet again(o);
  EXPECT_TRUE(torch::equal(again->named_parameters()["encoder.level3.3.weight"], w));
}

TEST(UNetTest, GradientsReachEncoderLastConv) {
  torch::manual_seed(4);
  UNetOptions o;
  o.base = 4;
  o.depth = 3;
  UNet net(o);
  auto y = net->forward(torch::randn({2, 1, 16, 16}));
  y.sum().backward();
  auto g = net->encoder->last_conv()->weight.grad();
  ASSERT_TRUE(g.defined());
  EXPECT_GT(g.abs().sum().item<double>(), 0);
}

TEST(ProjectionHeadTest, ShapesAndParameterCount) {
  torch::manual_seed(5);
  ProjectionHead head(32, 16);
  EXPECT_EQ(head->forward(torch::randn({3, 32, 5, 7})).sizes(),
            (std::vector<int64_t>{3, 16, 5, 7}));
  // (32*32 + 32) + (32*16 + 16)
  EXPECT_EQ(CountParams(*head), 32 * 32 + 32 + 32 * 16 + 16);
}

TEST(ProjectionHeadTest, MatchesPlainConvReluConv) {
  torch::manual_seed(6);
  ProjectionHead head(4, 3);
  auto p = head->named_parameters();
  auto f = torch::randn({2, 4, 3, 3});
  // 1x1 conv == per-pixel matmul.
  auto x = f.permute({0, 2, 3, 1});  // [N, h, w, C]
  auto h = torch::relu(torch::matmul(x, p["fc1.weight"].view({4, 4}).t()) + p["fc1.bias"]);
  auto y = torch::matmul(h, p["fc2.weight"].view({3, 4}).t()) + p["fc2.bias"];
  EXPECT_TRUE(torch::allclose(head->forward(f), y.permute({0, 3, 1, 2}), 1e-5, 1e-6));
}

}  // namespace
}  // namespace gcl::core
