// Two-view (spec 2.4) and fine-tuning (spec 2.5) augmentations.
#include <cmath>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>

#include "gtest/gtest.h"
#include "worker/gcl/data/augment.h"

namespace gcl::core {
namespace {

at::Tensor RandomSlices(int64_t b, int64_t h, int64_t w, uint64_t seed, double lo = 0.0,
                        double hi = 1.0) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::rand({b, h, w}, gen, at::kFloat) * (hi - lo) + lo;
}

// No geometry, no blur: only brightness/contrast/clip remain.
TwoViewAugmentOptions IntensityOnly() {
  TwoViewAugmentOptions o;
  o.crop_scale_min = o.crop_scale_max = 1.0;
  o.aspect_min = o.aspect_max = 1.0;
  o.rotation_deg = 0;
  o.flip_p = 0;
  o.blur_p = 0;
  return o;
}

// Least-squares fit y = c x + b over one view.
void FitLine(const at::Tensor& x, const at::Tensor& y, double* c, double* b) {
  at::Tensor xd = x.flatten().to(at::kDouble), yd = y.flatten().to(at::kDouble);
  const double mx = xd.mean().item<double>(), my = yd.mean().item<double>();
  *c = ((xd - mx) * (yd - my)).sum().item<double>() / ((xd - mx).pow(2).sum().item<double>());
  *b = my - *c * mx;
}

// Intensity-weighted centroid (x, y) in pixels of a [H, W] map.
std::pair<double, double> Centroid(const at::Tensor& m) {
  const int64_t h = m.size(0), w = m.size(1);
  at::Tensor md = m.to(at::kDouble);
  at::Tensor xs = at::arange(w, at::kDouble).view({1, w});
  at::Tensor ys = at::arange(h, at::kDouble).view({h, 1});
  const double total = md.sum().item<double>();
  return {(md * xs).sum().item<double>() / total, (md * ys).sum().item<double>() / total};
}

TEST(TwoViewAugmentTest, ShapesAndAffines) {
  at::Tensor x = RandomSlices(3, 32, 24, 1);
  at::Tensor affines;
  at::Tensor out = TwoViewAugment(x, {}, 42, &affines);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{6, 1, 32, 24}));
  EXPECT_EQ(out.scalar_type(), at::kFloat);
  EXPECT_EQ(affines.sizes(), (std::vector<int64_t>{6, 2, 3}));
  EXPECT_TRUE(at::isfinite(out).all().item<bool>());
  EXPECT_THROW(TwoViewAugment(x[0], {}, 42), c10::Error);
}

TEST(TwoViewAugmentTest, DeterministicInSeedAndViewsDiffer) {
  at::Tensor x = RandomSlices(4, 24, 24, 2);
  at::Tensor a1, a2;
  at::Tensor v1 = TwoViewAugment(x, {}, 7, &a1);
  at::Tensor v2 = TwoViewAugment(x, {}, 7, &a2);
  EXPECT_TRUE(at::equal(v1, v2));
  EXPECT_TRUE(at::equal(a1, a2));
  EXPECT_FALSE(at::equal(v1, TwoViewAugment(x, {}, 8)));
  for (int64_t i = 0; i < 4; ++i) {
    EXPECT_GT((v1[2 * i] - v1[2 * i + 1]).abs().max().item<float>(), 1e-3) << i;
    EXPECT_FALSE(at::equal(a1[2 * i], a1[2 * i + 1])) << i;
  }
}

// A data-parallel rank augments only its shard, and must get exactly the rows
// the whole batch would have had (same seed).
TEST(TwoViewAugmentTest, ShardIsExactlyItsRowsOfTheWholeBatch) {
  const at::Tensor slices = RandomSlices(8, 16, 16, 3);
  TwoViewAugmentOptions o;
  o.blur_p = 0.5;
  const at::Tensor whole = TwoViewAugment(slices, o, 42);
  for (int64_t first : {0, 2, 4, 6}) {
    const at::Tensor shard = TwoViewAugment(slices.narrow(0, first, 2), o, 42, nullptr, 2 * first);
    EXPECT_TRUE(at::equal(shard, whole.narrow(0, 2 * first, 4))) << "first slice " << first;
  }
  EXPECT_FALSE(at::equal(TwoViewAugment(slices.narrow(0, 2, 2), o, 42),
                            whole.narrow(0, 4, 4)));
}

TEST(TwoViewAugmentTest, BrightnessContrastRanges) {
  const TwoViewAugmentOptions o = IntensityOnly();
  at::Tensor x = RandomSlices(64, 16, 16, 3, 0.3, 0.7);  // never clipped
  at::Tensor out = TwoViewAugment(x, o, 11);
  double c_min = 10, c_max = -10, d_min = 10, d_max = -10;
  for (int64_t n = 0; n < 128; ++n) {
    const at::Tensor src = x[n / 2];
    double c, b;
    FitLine(src, out[n][0], &c, &b);
    // y = (x - m) c + m + delta exactly (identity geometry).
    const double m = src.mean().item<float>();
    const double delta = b - m * (1 - c);
    at::Tensor pred = (src.to(at::kDouble) - m) * c + m + delta;
    EXPECT_LT((pred - out[n][0].to(at::kDouble)).abs().max().item<double>(), 1e-4) << n;
    EXPECT_GE(c, 0.7 - 1e-4);
    EXPECT_LE(c, 1.3 + 1e-4);
    EXPECT_GE(delta, -0.2 - 1e-4);
    EXPECT_LE(delta, 0.2 + 1e-4);
    c_min = std::min(c_min, c), c_max = std::max(c_max, c);
    d_min = std::min(d_min, delta), d_max = std::max(d_max, delta);
  }
  // The ranges are actually used.
  EXPECT_LT(c_min, 0.8);
  EXPECT_GT(c_max, 1.2);
  EXPECT_LT(d_min, -0.13);
  EXPECT_GT(d_max, 0.13);
}

TEST(TwoViewAugmentTest, ClipsToRange) {
  TwoViewAugmentOptions o;
  o.brightness = 0.5;
  o.clip_max = 1.0;
  at::Tensor x = RandomSlices(16, 16, 16, 4);
  at::Tensor out = TwoViewAugment(x, o, 5);
  EXPECT_GE(out.min().item<float>(), 0.0f);
  EXPECT_LE(out.max().item<float>(), 1.0f);
  EXPECT_GT(out.eq(1.0f).sum().item<int64_t>(), 0);  // clipping happened
  EXPECT_GT(out.eq(0.0f).sum().item<int64_t>(), 0);
  o.clip_max = 1.5;
  EXPECT_LE(TwoViewAugment(x * 1.4, o, 5).max().item<float>(), 1.5f);
}

TEST(TwoViewAugmentTest, CropAreaIsTheAffineDeterminant) {
  TwoViewAugmentOptions o;
  o.crop_scale_min = 0.5;
  o.crop_scale_max = 0.75;  // scale * aspect <= 1: never clamped
  at::Tensor affines;
  TwoViewAugment(RandomSlices(50, 16, 16, 5), o, 6, &affines);
  at::Tensor a = affines.to(at::kDouble);
  at::Tensor det = (a.select(1, 0).select(1, 0) * a.select(1, 1).select(1, 1) -
                    a.select(1, 0).select(1, 1) * a.select(1, 1).select(1, 0))
                       .abs();
  EXPECT_GE(det.min().item<double>(), 0.5 - 1e-5);
  EXPECT_LE(det.max().item<double>(), 0.75 + 1e-5);
  // The crop stays inside the image: |t| <= 1 - half extent <= 1 - sqrt(0.5 * 3/4).
  EXPECT_LE(a.select(2, 2).abs().max().item<double>(), 1 - std::sqrt(0.5 * 0.75) + 1e-5);
}

TEST(TwoViewAugmentTest, AffinesDescribeTheWarp) {
  // Rotation and flips only; a small bright blob must land where the recorded
  // affine says: theta maps output -> input, so p_out = A^-1 (p_in - t).
  TwoViewAugmentOptions o = IntensityOnly();
  o.rotation_deg = 20;
  o.flip_p = 0.5;
  o.brightness = 0;
  o.contrast_min = o.contrast_max = 1;
  const int64_t s = 48;
  at::Tensor ys = at::arange(s, at::kDouble).view({s, 1}), xs = at::arange(s, at::kDouble).view({1, s});
  const double bx = 30.5, by = 16.5;  // pixel coordinates of the blob centre
  at::Tensor blob = at::exp(-((xs - bx).pow(2) + (ys - by).pow(2)) / (2 * 2.0 * 2.0))
                        .to(at::kFloat)
                        .unsqueeze(0);
  at::Tensor affines;
  at::Tensor out = TwoViewAugment(blob.repeat({8, 1, 1}), o, 9, &affines);
  int flipped = 0;
  for (int64_t n = 0; n < 16; ++n) {
    auto th = affines[n].to(at::kDouble);
    const double a = th[0][0].item<double>(), b = th[0][1].item<double>();
    const double c = th[1][0].item<double>(), d = th[1][1].item<double>();
    // Pixel -> normalised (align_corners = false): u = (2 x + 1) / W - 1.
    const double u_in = (2 * bx + 1) / s - 1, v_in = (2 * by + 1) / s - 1;
    const double px = u_in - th[0][2].item<double>(), py = v_in - th[1][2].item<double>();
    const double det = a * d - b * c;
    flipped += det < 0;
    const double u_out = (d * px - b * py) / det, v_out = (-c * px + a * py) / det;
    const double x_out = ((u_out + 1) * s - 1) / 2, y_out = ((v_out + 1) * s - 1) / 2;
    auto [cx, cy] = Centroid(out[n][0]);
    EXPECT_NEAR(cx, x_out, 0.3) << n;
    EXPECT_NEAR(cy, y_out, 0.3) << n;
  }
  EXPECT_GT(flipped, 0);  // some views have exactly one flip
}

TEST(TwoViewAugmentTest, BlurMatchesReferenceConvolution) {
  TwoViewAugmentOptions o = IntensityOnly();
  o.brightness = 0;
  o.contrast_min = o.contrast_max = 1;
  o.blur_p = 1;
  o.blur_sigma_min = o.blur_sigma_max = 0.8;
  at::Tensor x = RandomSlices(1, 9, 7, 6);
  at::Tensor out = TwoViewAugment(x, o, 1);
  // Reference: direct 2D sum, 7x7 Gaussian taps (radius ceil(3 * 0.8) = 3),
  // replicate padding (clamped indices).
  const int radius = 3;
  std::vector<double> g(2 * radius + 1);
  double sum = 0;
  for (int j = -radius; j <= radius; ++j) sum += g[j + radius] = std::exp(-0.5 * j * j / 0.64);
  for (double& v : g) v /= sum;
  auto acc = x.accessor<float, 3>();
  for (int64_t n = 0; n < 2; ++n) {
    for (int i = 0; i < 9; ++i) {
      for (int j = 0; j < 7; ++j) {
        double ref = 0;
        for (int di = -radius; di <= radius; ++di) {
          for (int dj = -radius; dj <= radius; ++dj) {
            const int ii = std::clamp(i + di, 0, 8), jj = std::clamp(j + dj, 0, 6);
            ref += g[di + radius] * g[dj + radius] * acc[0][ii][jj];
          }
        }
        EXPECT_NEAR(out[n][0][i][j].item<float>(), ref, 1e-5) << i << "," << j;
      }
    }
  }
}

// ---- fine-tuning ----

// Label map with three blobs (values 1..3) on background 0.
at::Tensor BlobLabels(int64_t b, int64_t s) {
  at::Tensor lab = at::zeros({b, s, s}, at::kLong);
  lab.slice(1, 6, 16).slice(2, 5, 18).fill_(1);
  lab.slice(1, 20, 30).slice(2, 12, 26).fill_(2);
  lab.slice(1, 10, 14).slice(2, 22, 28).fill_(3);
  return lab;
}

FinetuneAugmentOptions GeometryOnly() {
  FinetuneAugmentOptions o;
  o.brightness = 0;
  o.contrast_min = o.contrast_max = 1;
  o.clip_max = 10;
  return o;
}

TEST(FinetuneAugmentTest, ShapesAndDeterminism) {
  at::Tensor lab = BlobLabels(4, 32);
  at::Tensor img = RandomSlices(4, 32, 32, 1);
  auto [i1, l1] = FinetuneAugment(img, lab, {}, 3);
  auto [i2, l2] = FinetuneAugment(img, lab, {}, 3);
  auto [i3, l3] = FinetuneAugment(img, lab, {}, 4);
  EXPECT_EQ(i1.sizes(), (std::vector<int64_t>{4, 1, 32, 32}));
  EXPECT_EQ(l1.sizes(), (std::vector<int64_t>{4, 32, 32}));
  EXPECT_EQ(i1.scalar_type(), at::kFloat);
  EXPECT_EQ(l1.scalar_type(), at::kLong);
  EXPECT_TRUE(at::equal(i1, i2));
  EXPECT_TRUE(at::equal(l1, l2));
  EXPECT_FALSE(at::equal(i1, i3));
  // Same input, different samples: different transforms.
  EXPECT_FALSE(at::equal(l1[0], l1[1]));
  EXPECT_GE(i1.min().item<float>(), 0.0f);
  EXPECT_LE(i1.max().item<float>(), 1.5f);
  EXPECT_THROW(FinetuneAugment(img, lab.slice(1, 0, 16), {}, 3), c10::Error);
}

TEST(FinetuneAugmentTest, IdentityAndFlipAreExact) {
  at::Tensor lab = BlobLabels(2, 32);
  at::Tensor img = RandomSlices(2, 32, 32, 2);
  FinetuneAugmentOptions o = GeometryOnly();
  o.rotation_deg = 0;
  o.scale_min = o.scale_max = 1;
  o.translate_px = 0;
  o.flip_p = 0;
  auto [i0, l0] = FinetuneAugment(img, lab, o, 1);
  EXPECT_TRUE(at::equal(l0, lab));
  EXPECT_LT((i0.squeeze(1) - img).abs().max().item<float>(), 1e-5);
  o.flip_p = 1;
  auto [i1, l1] = FinetuneAugment(img, lab, o, 1);
  EXPECT_TRUE(at::equal(l1, lab.flip({2})));
  EXPECT_LT((i1.squeeze(1) - img.flip({2})).abs().max().item<float>(), 1e-5);
}

TEST(FinetuneAugmentTest, ImageAndLabelStayAligned) {
  at::Tensor lab = BlobLabels(16, 32);
  at::Tensor img = lab.to(at::kFloat);
  auto [ai, al] = FinetuneAugment(img, lab, GeometryOnly(), 17);
  // Label values are preserved exactly by nearest sampling.
  EXPECT_GE(al.min().item<int64_t>(), 0);
  EXPECT_LE(al.max().item<int64_t>(), 3);
  // Nearest label equals the rounded bilinear image except at some edges.
  const double agree =
      ai.squeeze(1).round().to(at::kLong).eq(al).to(at::kDouble).mean().item<double>();
  EXPECT_GT(agree, 0.95);
  // The warp really moved things.
  EXPECT_LT(al.eq(lab).to(at::kDouble).mean().item<double>(), 0.95);
}

TEST(FinetuneAugmentTest, BrightSquareMovesWithItsLabel) {
  at::Tensor lab = at::zeros({12, 40, 40}, at::kLong);
  lab.slice(1, 10, 18).slice(2, 20, 30).fill_(2);
  at::Tensor img = lab.eq(2).to(at::kFloat);
  auto [ai, al] = FinetuneAugment(img, lab, GeometryOnly(), 23);
  for (int64_t i = 0; i < 12; ++i) {
    auto [ix, iy] = Centroid(ai[i][0]);
    auto [lx, ly] = Centroid(al[i].eq(2));
    EXPECT_NEAR(ix, lx, 0.6) << i;
    EXPECT_NEAR(iy, ly, 0.6) << i;
    // Area preserved up to the 0.9-1.1 zoom (area factor 0.81-1.21).
    const double area = al[i].eq(2).sum().item<int64_t>();
    EXPECT_GT(area, 0.7 * 80);
    EXPECT_LT(area, 1.35 * 80);
  }
}

TEST(FinetuneAugmentTest, BrightnessContrastRanges) {
  FinetuneAugmentOptions o;
  o.rotation_deg = 0;
  o.scale_min = o.scale_max = 1;
  o.translate_px = 0;
  o.flip_p = 0;
  at::Tensor img = RandomSlices(64, 12, 12, 8, 0.3, 0.7);
  at::Tensor lab = at::zeros({64, 12, 12}, at::kLong);
  auto [ai, al] = FinetuneAugment(img, lab, o, 5);
  for (int64_t n = 0; n < 64; ++n) {
    double c, b;
    FitLine(img[n], ai[n][0], &c, &b);
    const double delta = b - img[n].mean().item<float>() * (1 - c);
    EXPECT_GE(c, 0.7 - 1e-4);
    EXPECT_LE(c, 1.3 + 1e-4);
    EXPECT_GE(delta, -0.2 - 1e-4);
    EXPECT_LE(delta, 0.2 + 1e-4);
  }
}

}  // namespace
}  // namespace gcl::core
