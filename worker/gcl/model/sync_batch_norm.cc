#include "worker/gcl/model/sync_batch_norm.h"

#include <torch/torch.h>

#include <algorithm>

namespace gcl::core {

SyncBatchNorm2dImpl::SyncBatchNorm2dImpl(int64_t channels, BatchStatReducer* reducer)
    : channels_(channels), reducer_(reducer) {
  TORCH_CHECK(channels > 0 && reducer != nullptr, "SyncBatchNorm2d: channels > 0 and a reducer");
  reset();
}

void SyncBatchNorm2dImpl::reset() {
  weight = register_parameter("weight", torch::ones({channels_}));
  bias = register_parameter("bias", torch::zeros({channels_}));
  running_mean = register_buffer("running_mean", torch::zeros({channels_}));
  running_var = register_buffer("running_var", torch::ones({channels_}));
  num_batches_tracked = register_buffer("num_batches_tracked", torch::zeros({}, torch::kLong));
}

torch::Tensor SyncBatchNorm2dImpl::forward(const torch::Tensor& x) {
  TORCH_CHECK(x.dim() == 4 && x.size(1) == channels_, "SyncBatchNorm2d: input must be [N, ",
              channels_, ", H, W], got ", x.sizes());
  const int64_t c = channels_;
  if (!is_training()) {
    return torch::batch_norm(x, weight, bias, running_mean, running_var, /*training=*/false,
                             kMomentum, kEps, /*cudnn_enabled=*/true);
  }
  // One reduction of [sum, sum of squares, count]: E[x^2] - E[x]^2 loses a
  // little precision against BatchNorm2d's two-pass variance, but BN inputs
  // here are bias-free conv outputs with |mean| << std, and it keeps the
  // forward at one collective per layer.
  const torch::Tensor local =
      torch::cat({x.sum({0, 2, 3}), (x * x).sum({0, 2, 3}),
                  torch::full({1}, static_cast<double>(x.numel() / c), x.options())});
  const torch::Tensor global = reducer_->AllReduceSum(local);
  const torch::Tensor count = global.narrow(0, 2 * c, 1).detach();
  const torch::Tensor mean = global.narrow(0, 0, c) / count;
  const torch::Tensor var = (global.narrow(0, c, c) / count - mean * mean).clamp_min(0);
  const torch::Tensor scale = torch::rsqrt(var + kEps) * weight;
  const torch::Tensor y =
      (x - mean.view({1, c, 1, 1})) * scale.view({1, c, 1, 1}) + bias.view({1, c, 1, 1});
  {
    torch::NoGradGuard no_grad;
    const double n = count.item<double>();
    running_mean.mul_(1 - kMomentum).add_(mean.detach(), kMomentum);
    running_var.mul_(1 - kMomentum).add_(var.detach() * (n / std::max(1.0, n - 1)), kMomentum);
    num_batches_tracked.add_(1);
  }
  return y;
}

}  // namespace gcl::core
