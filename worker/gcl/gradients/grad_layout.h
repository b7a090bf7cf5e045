// GradLayout: a list of parameter tensors (the encoder's, in a fixed order)
// laid out back to back in one flat float32 buffer, so that gradient
// combination (spec 7.5) runs on a few fused ops instead of one op per tensor.
#pragma once

#include <ATen/ATen.h>
#include <torch/types.h>

#include <cstdint>
#include <vector>

#include "worker/gcl/gradients/conflict_stats.h"

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

// Block algebra shared by the combiners. Every combiner's g'_m is a per-tensor
// linear combination of the original buffers, g'_m[q] = Σ_a coef[m,a,q] g_a[q],
// so all cosines and norms of spec 11 follow from the per-tensor Gram matrices
// without touching the [numel] buffers again.

// G[q, a, b] = g_a[q] · g_b[q] for M flat buffers [numel] (one device).
// Returns float64 CPU [Q, M, M]. M(M+1)/2 · Q dots on views of the buffers and
// one device-to-host copy: measured faster on CPU than stacking the buffers
// for a Gram matmul (the stack alone costs more than all the dots).
// On a GPU it runs TensorGramFused instead.
torch::Tensor TensorGram(const GradLayout& layout, const std::vector<torch::Tensor>& grads);

// TensorGram in a handful of kernels: the products of the stacked buffers
// for each pair (a, b), summed per tensor by one segmented sum, then one
// copy to the host. On a GPU the Q · M(M+1)/2 dots cost more in launches (~10 µs
// each) than in arithmetic: GradMitigator was 9-12% of an H200 step at
// 128 px (docs/gpu.md). Any device, but slow on the CPU, whose segmented
// sum is serial: 130 ms against 4.0 ms for the dots on the idle 2-core VM (30
// tensors, 4.7 M floats). Equal to TensorGram up to float32 summation
// order. Uses (M + M(M+1)/2) x numel floats of scratch memory.
torch::Tensor TensorGramFused(const GradLayout& layout, const std::vector<torch::Tensor>& grads);

// Σ_a coef[a, b] · g_a restricted to block b = [offsets[b], offsets[b] +
// sizes[b]), for all blocks (which must tile [0, numel)); coef is row-major
// [M, B] on the host. Adjacent blocks with equal coefficients are merged, so
// the op count is M per distinct run (M ops in total when nothing changed).
// Returns float32 [numel] on the grads' device.
torch::Tensor BlockLinearCombination(const std::vector<torch::Tensor>& grads,
                                     const std::vector<int64_t>& offsets,
                                     const std::vector<int64_t>& sizes,
                                     const std::vector<double>& coef);

// Fills cos_pre, cos_post, cos_pre_tensor_{mean,min} of every pair and
// norm_pre, norm_post, update_cos, update_dot, update_norm, naive_norm of
// *stats from `gram` (TensorGram) and `coef` (float64 CPU [M, M, Q]); the
// update is ĝ = (1/M) Σ_m g'_m. stats->pairs is resized to the M(M-1) pairs
// (m-major, m' ascending) and their m/other set; other pair fields are kept.
void FillGramStats(const torch::Tensor& gram, const torch::Tensor& coef, ConflictStats* stats);

// Shared last step of GradMitigator and PCGrad. coef is row-major [M, M, B]
// with g'_m[b] = Σ_a coef[m, a, b] · g_a[b]; returns ĝ = (1/M) Σ_m g'_m.
// When stats is non-null, fills FillGramStats' fields (block b's
// coefficients broadcast to the Q layout tensors when B = 1) and, per pair,
// the counts n_none/n_slight/n_conflict/n_modified and w_max from `pairs`,
// w_mean = w_sum / n_modified and w_rel = w_abs_norm / ||g_m||.
torch::Tensor CombineFromCoefficients(const std::vector<torch::Tensor>& grads,
                                      const std::vector<int64_t>& offsets,
                                      const std::vector<int64_t>& sizes,
                                      const std::vector<double>& coef, int64_t num_tensors,
                                      const torch::Tensor& gram,
                                      const std::vector<PairStats>& pairs,
                                      const std::vector<double>& w_sum,
                                      const std::vector<double>& w_abs_norm, ConflictStats* stats);

// Index of pair (m, other) in ConflictStats::pairs (m-major, other ascending).
inline int64_t PairIndex(int64_t num_labels, int64_t m, int64_t other) {
  return m * (num_labels - 1) + (other < m ? other : other - 1);
}

}  // namespace gcl::core
