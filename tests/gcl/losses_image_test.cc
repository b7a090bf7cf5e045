#include "worker/gcl/losses/image_loss.h"

#include <cmath>
#include <vector>

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace gcl::core {
namespace {

torch::Tensor RandomUnit(int64_t n, int64_t d, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto x = at::randn({n, d}, gen, torch::TensorOptions().dtype(torch::kDouble));
  return x / x.norm(2, 1, true);
}

// Plain double loops: -mean_a (1/|P(a)|) sum_p log(e^{z_a.z_p/t} / sum_{c != a} e^{z_a.z_c/t}).
double ReferenceSupCon(const torch::Tensor& z, const std::vector<int64_t>* labels, double tau) {
  const int64_t n = z.size(0), d = z.size(1);
  auto zz = z.accessor<double, 2>();
  auto dot = [&](int64_t i, int64_t j) {
    double s = 0;
    for (int64_t c = 0; c < d; ++c) s += zz[i][c] * zz[j][c];
    return s / tau;
  };
  double total = 0;
  for (int64_t a = 0; a < n; ++a) {
    double denom = 0;
    for (int64_t c = 0; c < n; ++c) {
      if (c != a) denom += std::exp(dot(a, c));
    }
    double sum = 0;
    int count = 0;
    for (int64_t p = 0; p < n; ++p) {
      if (p == a) continue;
      const bool positive = p == (a ^ 1) || (labels != nullptr && (*labels)[p] == (*labels)[a]);
      if (!positive) continue;
      sum += std::log(std::exp(dot(a, p)) / denom);
      ++count;
    }
    total += -sum / count;
  }
  return total / static_cast<double>(n);
}

// Textbook NT-Xent (SimCLR), written as cross-entropy over the other views.
double ReferenceNtXent(const torch::Tensor& z, double tau) {
  const int64_t n = z.size(0);
  auto sim = torch::matmul(z, z.t()) / tau;
  double total = 0;
  for (int64_t a = 0; a < n; ++a) {
    std::vector<double> row;
    int64_t target = -1;
    for (int64_t c = 0; c < n; ++c) {
      if (c == a) continue;
      if (c == (a ^ 1)) target = static_cast<int64_t>(row.size());
      row.push_back(sim[a][c].item<double>());
    }
    double mx = row[0];
    for (double r : row) mx = std::max(mx, r);
    double s = 0;
    for (double r : row) s += std::exp(r - mx);
    total += -(row[target] - mx - std::log(s));
  }
  return total / static_cast<double>(n);
}

TEST(ImageLossTest, NtXentMatchesReference) {
  const auto z = RandomUnit(8, 5, 11);
  for (double tau : {0.1, 0.5, 1.0}) {
    const double got = ImageContrastiveLoss(z, torch::Tensor(), tau).item<double>();
    EXPECT_NEAR(got, ReferenceNtXent(z, tau), 1e-10) << tau;
    EXPECT_NEAR(got, ReferenceSupCon(z, nullptr, tau), 1e-10) << tau;
  }
}

TEST(ImageLossTest, SupConWithLabelsMatchesReference) {
  const auto z = RandomUnit(12, 4, 12);
  // Both views of a slice share the label; classes 0..2.
  std::vector<int64_t> lab = {0, 0, 1, 1, 0, 0, 2, 2, 1, 1, 0, 0};
  const auto labels = torch::tensor(lab, torch::kLong);
  for (double tau : {0.07, 0.1, 0.3}) {
    EXPECT_NEAR(ImageContrastiveLoss(z, labels, tau).item<double>(),
                ReferenceSupCon(z, &lab, tau), 1e-10);
  }
  // Labels that differ from the pairing (views of one slice with different
  // labels) still keep a^+ in P(a).
  std::vector<int64_t> odd = {0, 1, 1, 0, 2, 2, 0, 1, 2, 0, 1, 2};
  EXPECT_NEAR(ImageContrastiveLoss(z, torch::tensor(odd, torch::kLong), 0.2).item<double>(),
              ReferenceSupCon(z, &odd, 0.2), 1e-10);
  // All-distinct labels reduce to NT-Xent.
  std::vector<int64_t> distinct = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5};
  EXPECT_NEAR(ImageContrastiveLoss(z, torch::tensor(distinct, torch::kLong), 0.2).item<double>(),
              ImageContrastiveLoss(z, torch::Tensor(), 0.2).item<double>(), 1e-12);
}

TEST(ImageLossTest, StableAtSmallTemperatureInFloat) {
  const auto z = RandomUnit(16, 8, 13).to(torch::kFloat);
  const auto loss = ImageContrastiveLoss(z, torch::Tensor(), 1e-3);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
  const auto ref = ReferenceNtXent(z.to(torch::kDouble), 1e-3);
  EXPECT_NEAR(loss.item<double>(), ref, 1e-3 * std::abs(ref) + 1e-3);
}

TEST(ImageLossTest, GradientMatchesFiniteDifferences) {
  auto gen = at::detail::createCPUGenerator(14);
  auto x = at::randn({6, 3}, gen, torch::TensorOptions().dtype(torch::kDouble)).requires_grad_(true);
  const auto labels = torch::tensor(std::vector<int64_t>{0, 0, 1, 1, 0, 0}, torch::kLong);
  auto f = [&](const torch::Tensor& in) {
    return ImageContrastiveLoss(in / in.norm(2, 1, true), labels, 0.2);
  };
  f(x).backward();
  const auto grad = x.grad().clone();
  const double eps = 1e-6;
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < x.size(0); ++i) {
    for (int64_t j = 0; j < x.size(1); ++j) {
      auto xp = x.detach().clone(), xm = x.detach().clone();
      xp[i][j] += eps;
      xm[i][j] -= eps;
      const double fd = (f(xp).item<double>() - f(xm).item<double>()) / (2 * eps);
      EXPECT_NEAR(grad[i][j].item<double>(), fd, 1e-7) << i << "," << j;
    }
  }
}

TEST(ImageLossTest, RejectsBadShapes) {
  EXPECT_THROW(ImageContrastiveLoss(RandomUnit(5, 3, 1), torch::Tensor(), 0.1), c10::Error);
  EXPECT_THROW(ImageContrastiveLoss(RandomUnit(4, 3, 1), torch::zeros({3}, torch::kLong), 0.1),
               c10::Error);
}

}  // namespace
}  // namespace gcl::core
