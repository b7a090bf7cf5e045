#include "worker/gcl/gradients/grad_layout.h"

#include <c10/util/Exception.h>

namespace gcl::core {

GradLayout::GradLayout(const std::vector<torch::Tensor>& params) {
  offsets_.reserve(params.size());
  sizes_.reserve(params.size());
  shapes_.reserve(params.size());
  for (const auto& p : params) {
    offsets_.push_back(numel_);
    sizes_.push_back(p.numel());
    shapes_.push_back(p.sizes().vec());
    numel_ += p.numel();
  }
  if (!params.empty()) device_ = params.front().device();
  sizes_cpu_ = torch::tensor(sizes_, torch::kInt64);
}

torch::Tensor GradLayout::SizesTensor(torch::Device device) const {
  return sizes_cpu_.to(device);
}

torch::Tensor GradLayout::Expand(const torch::Tensor& coef) const {
  TORCH_CHECK(coef.size(-1) == num_tensors(), "GradLayout::Expand: last dim ", coef.size(-1),
              " != num_tensors ", num_tensors());
  // output_size avoids a device sync on the repeats' sum.
  return at::repeat_interleave(coef, SizesTensor(coef.device()), coef.dim() - 1, numel_);
}

torch::Tensor GradLayout::Flatten(const std::vector<torch::Tensor>& grads) const {
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == num_tensors(), "GradLayout::Flatten: got ",
              grads.size(), " grads for ", num_tensors(), " tensors");
  const auto opts = torch::TensorOptions().dtype(torch::kFloat32).device(device_);
  if (grads.empty()) return torch::zeros({0}, opts);
  std::vector<torch::Tensor> parts;
  parts.reserve(grads.size());
  for (int64_t q = 0; q < num_tensors(); ++q) {
    const auto& g = grads[q];
    if (!g.defined()) {
      parts.push_back(torch::zeros({sizes_[q]}, opts));
      continue;
    }
    TORCH_CHECK(g.numel() == sizes_[q], "GradLayout::Flatten: grad ", q, " has ", g.numel(),
                " elements, layout expects ", sizes_[q]);
    parts.push_back(g.reshape({-1}).to(opts));
  }
  return torch::cat(parts);
}

void GradLayout::Unflatten(const torch::Tensor& flat, std::vector<torch::Tensor>* out) const {
  TORCH_CHECK(flat.numel() == numel_, "GradLayout::Unflatten: buffer has ", flat.numel(),
              " elements, layout expects ", numel_);
  const torch::Tensor f = flat.reshape({-1});
  out->resize(sizes_.size());
  for (size_t q = 0; q < sizes_.size(); ++q) {
    (*out)[q] = f.narrow(0, offsets_[q], sizes_[q]).view(shapes_[q]);
  }
}

}  // namespace gcl::core
