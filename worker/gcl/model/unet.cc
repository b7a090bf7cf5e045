#include "worker/gcl/model/unet.h"

#include <string>

#include <torch/torch.h>

namespace gcl::core {
namespace {

namespace nn = torch::nn;

nn::Conv2d Conv3x3(int64_t in, int64_t out) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(false));
}

// Appends conv -> BN -> ReLU to `seq` and returns the conv handle.
nn::Conv2d AppendConvBnRelu(nn::Sequential& seq, int64_t in, int64_t out,
                            BatchStatReducer* bn_reducer = nullptr) {
  nn::Conv2d conv = Conv3x3(in, out);
  seq->push_back(conv);
  if (bn_reducer != nullptr) {
    seq->push_back(SyncBatchNorm2d(out, bn_reducer));
  } else {
    seq->push_back(nn::BatchNorm2d(out));
  }
  seq->push_back(nn::ReLU());
  return conv;
}

int64_t LevelChannels(const UNetOptions& o, int64_t level) { return o.base << level; }

void CheckOptions(const UNetOptions& o) {
  TORCH_CHECK(o.in_channels > 0 && o.num_classes > 0 && o.base > 0 && o.depth >= 1,
              "UNetOptions: in_channels, num_classes, base must be > 0 and depth >= 1");
}

}  // namespace

void InitUNetWeights(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  // include_self=false: callable from a constructor (before the module is
  // owned by a shared_ptr); the top-level U-Net modules own no direct convs.
  for (auto& m : module.modules(/*include_self=*/false)) {
    if (auto* conv = m->as<nn::Conv2dImpl>()) {
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanIn, torch::kReLU);
      if (conv->bias.defined()) conv->bias.zero_();
    } else if (auto* bn = m->as<nn::BatchNorm2dImpl>()) {
      bn->weight.fill_(1.0);
      bn->bias.zero_();
    } else if (auto* sbn = m->as<SyncBatchNorm2dImpl>()) {
      sbn->weight.fill_(1.0);
      sbn->bias.zero_();
    }
  }
}

UNetEncoderImpl::UNetEncoderImpl(const UNetOptions& options) : options_(options) {
  CheckOptions(options_);
  int64_t in = options_.in_channels;
  for (int64_t l = 0; l < options_.depth; ++l) {
    const int64_t c = LevelChannels(options_, l);
    nn::Sequential level;
    AppendConvBnRelu(level, in, c, options_.bn_reducer);
    last_conv_ = AppendConvBnRelu(level, c, c, options_.bn_reducer);
    levels_.push_back(register_module("level" + std::to_string(l), level));
    in = c;
  }
  InitUNetWeights(*this);
}

std::vector<torch::Tensor> UNetEncoderImpl::forward(const torch::Tensor& x) {
  std::vector<torch::Tensor> features;
  features.reserve(levels_.size());
  torch::Tensor h = x;
  for (size_t l = 0; l < levels_.size(); ++l) {
    if (l > 0) h = torch::max_pool2d(h, {2, 2});
    h = levels_[l]->forward(h);
    features.push_back(h);
  }
  return features;
}

int64_t UNetEncoderImpl::out_channels() const {
  return LevelChannels(options_, options_.depth - 1);
}

torch::nn::Conv2d UNetEncoderImpl::last_conv() { return last_conv_; }

UNetDecoderImpl::UNetDecoderImpl(const UNetOptions& options) : options_(options) {
  CheckOptions(options_);
  for (int64_t l = options_.depth - 2; l >= 0; --l) {
    const int64_t c = LevelChannels(options_, l);
    nn::Sequential up;
    AppendConvBnRelu(up, LevelChannels(options_, l + 1), c);
    up_.push_back(register_module("up" + std::to_string(l), up));
    nn::Sequential fuse;
    AppendConvBnRelu(fuse, 2 * c, c);
    AppendConvBnRelu(fuse, c, c);
    fuse_.push_back(register_module("fuse" + std::to_string(l), fuse));
  }
  head_ = register_module(
      "head", nn::Conv2d(nn::Conv2dOptions(LevelChannels(options_, 0), options_.num_classes, 1)));
  InitUNetWeights(*this);
}

torch::Tensor UNetDecoderImpl::forward(const std::vector<torch::Tensor>& features) {
  TORCH_CHECK(static_cast<int64_t>(features.size()) == options_.depth,
              "UNetDecoder: expected ", options_.depth, " feature maps, got ", features.size());
  torch::Tensor h = features.back();
  for (size_t s = 0; s < up_.size(); ++s) {
    const torch::Tensor& skip = features[features.size() - 2 - s];
    // Upsample to the skip's exact size so odd input sizes round-trip.
    h = nn::functional::interpolate(
        h, nn::functional::InterpolateFuncOptions()
               .size(std::vector<int64_t>{skip.size(2), skip.size(3)})
               .mode(torch::kNearest));
    h = up_[s]->forward(h);
    h = fuse_[s]->forward(torch::cat({skip, h}, 1));
  }
  return head_->forward(h);
}

UNetImpl::UNetImpl(const UNetOptions& options) {
  encoder = register_module("encoder", UNetEncoder(options));
  decoder = register_module("decoder", UNetDecoder(options));
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x) {
  return decoder->forward(encoder->forward(x));
}

}  // namespace gcl::core
