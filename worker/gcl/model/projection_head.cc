#include "worker/gcl/model/projection_head.h"

#include <torch/torch.h>

namespace gcl::core {

ProjectionHeadImpl::ProjectionHeadImpl(int64_t in_channels, int64_t out_dim) : out_dim_(out_dim) {
  TORCH_CHECK(in_channels > 0 && out_dim > 0, "ProjectionHead: channels must be > 0");
  namespace nn = torch::nn;
  fc1_ = register_module("fc1", nn::Conv2d(nn::Conv2dOptions(in_channels, in_channels, 1)));
  fc2_ = register_module("fc2", nn::Conv2d(nn::Conv2dOptions(in_channels, out_dim, 1)));
}

torch::Tensor ProjectionHeadImpl::forward(const torch::Tensor& f) {
  return fc2_->forward(torch::relu(fc1_->forward(f)));
}

}  // namespace gcl::core
