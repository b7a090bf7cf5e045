// BatchNorm2d whose training-mode batch statistics cover the global batch of
// all data-parallel ranks (SyncBN), so a W-rank job normalises exactly like
// one process holding the whole batch.
#pragma once

#include <torch/nn/cloneable.h>
#include <torch/nn/pimpl.h>
#include <torch/types.h>

namespace gcl::core {

// Sums a tensor over the ranks of a data-parallel job, in place.
class BatchStatReducer {
 public:
  virtual ~BatchStatReducer() = default;
  // Every rank calls this in the same order with the same shape.
  virtual void AllReduceSumInPlace(torch::Tensor& t) = 0;
};

// The parameters and buffers of torch::nn::BatchNorm2d under the same names
// (weight, bias, running_mean, running_var, num_batches_tracked; eps 1e-5,
// momentum 0.1), so checkpoints are interchangeable. In training mode the
// per-channel sum, sum of squares and element count of the input are
// reduced over the ranks and give the biased variance used for normalising
// and the unbiased one for the running estimate, as BatchNorm2d does; the
// backward reduces Σdy and Σdy·x̂. One collective forward, one backward.
// Eval mode uses the running estimates.
// (Not derived from BatchNorm2dImpl: Debian's LibTorch does not export the
// base template's vtable entries.)
class SyncBatchNorm2dImpl : public torch::nn::Cloneable<SyncBatchNorm2dImpl> {
 public:
  static constexpr double kEps = 1e-5;
  static constexpr double kMomentum = 0.1;

  // `reducer` must outlive the module.
  SyncBatchNorm2dImpl(int64_t channels, BatchStatReducer* reducer);
  void reset() override;
  torch::Tensor forward(const torch::Tensor& x);
  // The running-estimate update of one training forward (global statistics).
  void UpdateRunningStats(const torch::Tensor& mean, const torch::Tensor& var, double count);

  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;

 private:
  int64_t channels_;
  BatchStatReducer* reducer_;
};
TORCH_MODULE(SyncBatchNorm2d);

}  // namespace gcl::core
