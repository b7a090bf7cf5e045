// U-Net encoder/decoder (spec 3.1). The encoder produces the bottleneck
// feature map F that both projection heads read during pre-training; the
// decoder is only used at fine-tuning.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <torch/nn/module.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/pimpl.h>

#include "worker/gcl/model/sync_batch_norm.h"

namespace gcl::core {

struct UNetOptions {
  int64_t in_channels = 1;
  int64_t num_classes = 4;
  int64_t base = 16;   // channels of level 0; level l has base * 2^l
  int64_t depth = 5;   // encoder levels (4 up-steps in the decoder for depth 5)
  // Data-parallel jobs: the encoder's BN layers become SyncBatchNorm2d over
  // this reducer (not owned). Null: plain BatchNorm2d.
  BatchStatReducer* bn_reducer = nullptr;
};

// Kaiming-normal (fan_in, ReLU gain) init of every conv weight in the
// submodules of `module` (not `module` itself),
// zero conv biases, BN (and SyncBN) gamma 1 / beta 0. Draws from the global torch RNG:
// callers seed with torch::manual_seed before constructing a model.
void InitUNetWeights(torch::nn::Module& module);

// Encoder (spec 3.1): `depth` levels of two [3x3 conv (no bias) -> BN -> ReLU],
// 2x2 max-pool between levels, channels base * 2^l.
// Input x: float [N, in_channels, H, W]. Any H, W >= 2^(depth-1) works (the
// pooling floors odd sizes); sizes divisible by 2^(depth-1) are the intended
// use (224 -> 14x14 bottleneck at depth 5).
class UNetEncoderImpl : public torch::nn::Module {
 public:
  explicit UNetEncoderImpl(const UNetOptions& options);

  // One feature map per level, full resolution first. back() is the
  // bottleneck F [N, base*2^(depth-1), floor(H/2^(depth-1)), floor(W/2^(depth-1))].
  std::vector<torch::Tensor> forward(const torch::Tensor& x);

  int64_t out_channels() const;
  const UNetOptions& options() const { return options_; }

  // The final conv of the last level ("last layer of the encoder", used by
  // the GradFilter S2 diagnostic, spec 3.1 / 6.2).
  torch::nn::Conv2d last_conv();

 private:
  UNetOptions options_;
  std::vector<torch::nn::Sequential> levels_;  // registered as "level<l>"
  torch::nn::Conv2d last_conv_{nullptr};
};
TORCH_MODULE(UNetEncoder);

// Decoder (spec 3.1): depth-1 up-steps, each [2x nearest upsample (to the skip's
// exact size) -> 3x3 conv -> BN -> ReLU], concat with the skip, two
// [3x3 conv -> BN -> ReLU]; then a 1x1 conv (with bias) to num_classes.
class UNetDecoderImpl : public torch::nn::Module {
 public:
  explicit UNetDecoderImpl(const UNetOptions& options);

  // features: the encoder output (depth maps). Returns logits
  // [N, num_classes, H, W] at the resolution of features.front().
  torch::Tensor forward(const std::vector<torch::Tensor>& features);

 private:
  UNetOptions options_;
  std::vector<torch::nn::Sequential> up_;     // "up<l>", l = depth-2 .. 0
  std::vector<torch::nn::Sequential> fuse_;   // "fuse<l>"
  torch::nn::Conv2d head_{nullptr};           // "head"
};
TORCH_MODULE(UNetDecoder);

class UNetImpl : public torch::nn::Module {
 public:
  explicit UNetImpl(const UNetOptions& options);

  // x: [N, in_channels, H, W] -> logits [N, num_classes, H, W].
  torch::Tensor forward(const torch::Tensor& x);

  UNetEncoder encoder{nullptr};  // registered as "encoder"
  UNetDecoder decoder{nullptr};  // registered as "decoder"
};
TORCH_MODULE(UNet);

}  // namespace gcl::core
