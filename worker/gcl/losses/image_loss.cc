#include "worker/gcl/losses/image_loss.h"

#include <limits>

#include <torch/torch.h>

namespace gcl::core {

torch::Tensor ImageContrastiveLoss(const torch::Tensor& z, const torch::Tensor& labels,
                                   double tau) {
  TORCH_CHECK(z.dim() == 2, "ImageContrastiveLoss: z must be [N, d], got ", z.sizes());
  const int64_t n = z.size(0);
  TORCH_CHECK(n >= 2 && n % 2 == 0, "ImageContrastiveLoss: N must be even and >= 2, got ", n);
  TORCH_CHECK(tau > 0, "ImageContrastiveLoss: tau must be > 0");
  const auto bool_opts = torch::TensorOptions().dtype(torch::kBool).device(z.device());
  const torch::Tensor eye = torch::eye(n, bool_opts);

  // A(a) = all c != a: the diagonal is excluded from the denominator with -inf.
  torch::Tensor sim = torch::matmul(z, z.t()) / tau;
  sim = sim.masked_fill(eye, -std::numeric_limits<double>::infinity());
  const torch::Tensor log_prob = sim - torch::logsumexp(sim, /*dim=*/1, /*keepdim=*/true);

  const torch::Tensor idx = torch::arange(n, torch::TensorOptions().dtype(torch::kLong).device(z.device()));
  torch::Tensor pos = torch::zeros({n, n}, bool_opts);
  pos.index_put_({idx, torch::bitwise_xor(idx, 1)}, true);
  if (labels.defined()) {
    TORCH_CHECK(labels.dim() == 1 && labels.size(0) == n,
                "ImageContrastiveLoss: labels must be [N], got ", labels.sizes());
    const torch::Tensor l = labels.to(z.device());
    pos = pos.logical_or(l.unsqueeze(1) == l.unsqueeze(0));
  }
  pos = pos.logical_and(eye.logical_not());
  // masked_fill (not multiply) so the -inf diagonal never meets a 0 weight.
  const torch::Tensor pos_sum = log_prob.masked_fill(pos.logical_not(), 0.0).sum(1);
  const torch::Tensor pos_count = pos.sum(1).to(z.scalar_type());
  return -(pos_sum / pos_count).mean();
}

}  // namespace gcl::core
