// GradLayout: a list of parameter tensors (the encoder's, in a fixed order)
// laid out back to back in one flat float32 buffer, so that gradient
// combination (spec 7.5) runs on a few fused ops instead of one op per tensor.
#pragma once

#include <cstdint>
#include <vector>

#include <ATen/ATen.h>
#include <torch/types.h>

namespace gcl::core {

class GradLayout {
 public:
  // Records the shapes of `params`; tensor q occupies [offset(q), offset(q) +
  // size(q)) of the flat buffer. The order of `params` defines the index q.
  // Flat buffers live on the device of params[0] (CPU when `params` is empty).
  explicit GradLayout(const std::vector<torch::Tensor>& params);

  int64_t num_tensors() const { return static_cast<int64_t>(sizes_.size()); }
  int64_t numel() const { return numel_; }
  int64_t offset(int64_t q) const { return offsets_.at(q); }
  int64_t size(int64_t q) const { return sizes_.at(q); }
  const std::vector<int64_t>& shape(int64_t q) const { return shapes_.at(q); }
  const std::vector<int64_t>& sizes() const { return sizes_; }
  const std::vector<int64_t>& offsets() const { return offsets_; }
  torch::Device device() const { return device_; }

  // The segment sizes as an int64 tensor [num_tensors] on `device` (for
  // repeat_interleave of per-tensor coefficients).
  torch::Tensor SizesTensor(torch::Device device) const;

  // Expands per-tensor coefficients `coef` [..., num_tensors] to
  // [..., numel] (each coefficient repeated over its tensor's segment).
  torch::Tensor Expand(const torch::Tensor& coef) const;

  // Concatenates `grads` (one per tensor, any float dtype, shapes as the
  // params) into one float32 [numel] buffer on device(). An undefined grad
  // (unused parameter) contributes zeros.
  // REQUIRES: grads.size() == num_tensors(), grads[q].numel() == size(q)
  // (throws c10::Error otherwise).
  torch::Tensor Flatten(const std::vector<torch::Tensor>& grads) const;

  // out->at(q) = view of `flat` [numel] shaped like param q (no copy when
  // `flat` is contiguous; the views alias `flat`).
  // REQUIRES: flat.numel() == numel() (throws c10::Error otherwise).
  void Unflatten(const torch::Tensor& flat, std::vector<torch::Tensor>* out) const;

 private:
  std::vector<int64_t> offsets_;
  std::vector<int64_t> sizes_;
  std::vector<std::vector<int64_t>> shapes_;
  int64_t numel_ = 0;
  torch::Device device_ = torch::kCPU;
  torch::Tensor sizes_cpu_;  // int64 [num_tensors]
};

}  // namespace gcl::core
