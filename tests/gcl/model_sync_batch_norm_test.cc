// SyncBatchNorm2d against torch::nn::BatchNorm2d: with one rank they must agree
// (forward, gradients, running statistics); with two simulated ranks, the
// statistics must be those of the concatenated batch.
#include "worker/gcl/model/sync_batch_norm.h"

#include <torch/torch.h>

#include "gtest/gtest.h"

namespace gcl::core {
namespace {

// One rank: the sum over ranks is the local tensor itself.
class SingleRank : public BatchStatReducer {
 public:
  void AllReduceSumInPlace(torch::Tensor&) override {}
};

// Rank A of two ranks whose other rank holds a fixed batch: adds that batch's
// forward statistics [Σx, Σx², count], as an all-reduce would. The loss
// depends on rank A's outputs only, so the peer's backward sums are zero.
class WithFixedPeer : public BatchStatReducer {
 public:
  explicit WithFixedPeer(torch::Tensor peer) : peer_(std::move(peer)) {}
  void AllReduceSumInPlace(torch::Tensor& t) override {
    if (t.size(0) % 2 == 0) return;  // backward: [Σdy, Σdy·x̂] of the peer are 0
    t += torch::cat({peer_.sum({0, 2, 3}), (peer_ * peer_).sum({0, 2, 3}),
                     torch::full({1}, double(peer_.numel() / peer_.size(1)))});
  }

 private:
  torch::Tensor peer_;
};

TEST(SyncBatchNormTest, OneRankMatchesBatchNorm2d) {
  torch::manual_seed(0);
  const torch::Tensor x = torch::randn({4, 3, 5, 6}) * 2 + 0.5;
  SingleRank reducer;
  SyncBatchNorm2d sync(3, &reducer);
  torch::nn::BatchNorm2d bn(3);
  {
    torch::NoGradGuard g;
    sync->weight.copy_(torch::tensor({0.5, 1.0, 2.0}));
    bn->weight.copy_(sync->weight);
    sync->bias.copy_(torch::tensor({0.1, -0.2, 0.3}));
    bn->bias.copy_(sync->bias);
  }
  const torch::Tensor xs = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
  const torch::Tensor w = torch::randn({4, 3, 5, 6});
  const torch::Tensor ys = sync->forward(xs), yb = bn->forward(xb);
  EXPECT_TRUE(torch::allclose(ys, yb, 1e-5, 1e-5));
  (ys * w).sum().backward();
  (yb * w).sum().backward();
  EXPECT_TRUE(torch::allclose(xs.grad(), xb.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(sync->weight.grad(), bn->weight.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(sync->bias.grad(), bn->bias.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(sync->running_mean, bn->running_mean, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(sync->running_var, bn->running_var, 1e-5, 1e-6));
  EXPECT_EQ(sync->num_batches_tracked.item<int64_t>(), 1);
  sync->eval();
  bn->eval();
  EXPECT_TRUE(torch::allclose(sync->forward(x), bn->forward(x), 1e-5, 1e-5));
}

TEST(SyncBatchNormTest, TwoRanksNormaliseByTheGlobalBatch) {
  torch::manual_seed(1);
  const torch::Tensor a = torch::randn({2, 3, 4, 4}), b = torch::randn({3, 3, 4, 4}) + 1;
  WithFixedPeer reducer(b);
  SyncBatchNorm2d sync(3, &reducer);
  torch::nn::BatchNorm2d bn(3);
  const torch::Tensor a_whole = a.clone().requires_grad_(true);
  const torch::Tensor whole = bn->forward(torch::cat({a_whole, b}));
  const torch::Tensor a_sync = a.clone().requires_grad_(true);
  const torch::Tensor y = sync->forward(a_sync);
  EXPECT_TRUE(torch::allclose(y, whole.narrow(0, 0, 2), 1e-5, 1e-5));
  // The gradient through the shared statistics: only rank A's rows in the loss.
  const torch::Tensor w = torch::randn({2, 3, 4, 4});
  (whole.narrow(0, 0, 2) * w).sum().backward();
  (y * w).sum().backward();
  EXPECT_TRUE(torch::allclose(a_sync.grad(), a_whole.grad(), 1e-4, 1e-5));
  EXPECT_TRUE(torch::allclose(sync->running_mean, bn->running_mean, 1e-6, 1e-6));
  EXPECT_TRUE(torch::allclose(sync->running_var, bn->running_var, 1e-5, 1e-6));
}

}  // namespace
}  // namespace gcl::core
