// Image-wise contrastive loss per meta label (spec 4, Eq. 1).
#pragma once

#include <torch/types.h>  // torch::Tensor (ATen + the torch namespace alias)

namespace gcl::core {

// Eq. 1 in the SupCon "L_out" form:
//   L = (1/N) sum_a -(1/|P(a)|) sum_{p in P(a)} log( exp(z_a.z_p/tau) / sum_{c != a} exp(z_a.z_c/tau) )
// with P(a) = {a^+} U {c != a : labels[c] == labels[a]}, a^+ = a ^ 1 (views 2i and
// 2i+1 are the two views of slice i).
// z: [N, d] float/double, L2-normalised rows, N even >= 2 (gradients flow to z).
// labels: [N] int64 meta-label classes, or an undefined tensor for NT-Xent
// (P(a) = {a^+}, the SimCLR "Base").
// tau > 0. Returns a scalar. Stable (log-sum-exp). Throws c10::Error on shape misuse.
torch::Tensor ImageContrastiveLoss(const torch::Tensor& z, const torch::Tensor& labels, double tau);

}  // namespace gcl::core
