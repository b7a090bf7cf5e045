// Projection heads g_I and g_P (spec 3.2): same design, separate instances.
#pragma once

#include <cstdint>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

namespace gcl::core {

// Conv1x1(C -> C, bias) -> ReLU -> Conv1x1(C -> out_dim, bias). Default
// LibTorch conv init (from the global torch RNG; seed before constructing).
class ProjectionHeadImpl : public torch::nn::Module {
 public:
  explicit ProjectionHeadImpl(int64_t in_channels, int64_t out_dim = 128);

  // f: [N, C, h, w] -> un-normalised embedding map [N, out_dim, h, w].
  torch::Tensor forward(const torch::Tensor& f);

  int64_t out_dim() const { return out_dim_; }

 private:
  int64_t out_dim_;
  torch::nn::Conv2d fc1_{nullptr};  // "fc1"
  torch::nn::Conv2d fc2_{nullptr};  // "fc2"
};
TORCH_MODULE(ProjectionHead);

}  // namespace gcl::core
