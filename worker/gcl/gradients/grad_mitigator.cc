#include "worker/gcl/gradients/grad_mitigator.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "worker/gcl/gradients/pcgrad.h"

namespace gcl::core {
namespace {

// Checks the M buffers and returns them as float32 (no copy when already).
std::vector<torch::Tensor> CheckedGrads(const std::vector<torch::Tensor>& grads, int64_t num_labels,
                                        int64_t numel) {
  TORCH_CHECK(static_cast<int64_t>(grads.size()) == num_labels, "GradMitigator: got ", grads.size(),
              " gradient buffers for ", num_labels, " meta labels");
  std::vector<torch::Tensor> out;
  out.reserve(grads.size());
  for (const auto& g : grads) {
    TORCH_CHECK(g.defined() && g.dim() == 1 && g.numel() == numel,
                "GradMitigator: every buffer must be flat [", numel, "]");
    TORCH_CHECK(g.device() == grads[0].device(), "GradMitigator: buffers on different devices");
    out.push_back(g.to(torch::kFloat32));
  }
  return out;
}

}  // namespace

GradMitigator::GradMitigator(int64_t num_labels, GradLayout layout, GradMitigatorOptions options)
    : num_labels_(num_labels), layout_(std::move(layout)), options_(options) {
  TORCH_CHECK(num_labels_ >= 1, "GradMitigator: num_labels must be >= 1");
  TORCH_CHECK(options_.beta >= 0 && options_.beta <= 1, "GradMitigator: beta must be in [0, 1]");
  if (options_.granularity == Granularity::kPerTensor) {
    block_offsets_ = layout_.offsets();
    block_sizes_ = layout_.sizes();
  } else {
    block_offsets_ = {0};
    block_sizes_ = {layout_.numel()};
  }
  targets_ = torch::zeros({num_labels_, num_labels_, num_blocks()}, torch::kFloat64);
}

absl::Status GradMitigator::SetTargets(const torch::Tensor& targets) {
  if (!targets.defined() ||
      targets.sizes() != torch::IntArrayRef({num_labels_, num_labels_, num_blocks()})) {
    return absl::InvalidArgumentError(
        "GradMitigator::SetTargets: expected shape [" + std::to_string(num_labels_) + ", " +
        std::to_string(num_labels_) + ", " + std::to_string(num_blocks()) + "]");
  }
  torch::Tensor t = targets.to(torch::kCPU, torch::kFloat64).contiguous().clone();
  if (!torch::isfinite(t).all().item<bool>()) {
    return absl::InvalidArgumentError("GradMitigator::SetTargets: non-finite target");
  }
  targets_ = t;
  return absl::OkStatus();
}

torch::Tensor GradMitigator::Combine(const std::vector<torch::Tensor>& grads,
                                     uint64_t permutation_seed, ConflictStats* stats) {
  const int64_t nm = num_labels_, nb = num_blocks(), nq = layout_.num_tensors();
  const std::vector<torch::Tensor> g32 = CheckedGrads(grads, nm, layout_.numel());

  // Per-tensor Gram, summed to blocks for whole-model granularity. g'_m is
  // tracked as coefficients coef[m, a, b] over the ORIGINAL buffers, so every
  // dot and norm below is O(M) scalar work instead of a pass over numel.
  const torch::Tensor gram = TensorGram(layout_, g32);  // [Q, M, M]
  const torch::Tensor bgram =
      options_.granularity == Granularity::kPerTensor ? gram : gram.sum(0, true);
  const double* g = bgram.data_ptr<double>();
  auto G = [&](int64_t b, int64_t i, int64_t j) { return g[(b * nm + i) * nm + j]; };

  std::vector<double> coef(nm * nm * nb, 0.0);
  auto C = [&](int64_t m, int64_t a, int64_t b) -> double& { return coef[(m * nm + a) * nb + b]; };
  for (int64_t m = 0; m < nm; ++m)
    for (int64_t b = 0; b < nb; ++b) C(m, m, b) = 1.0;

  double* tgt = targets_.data_ptr<double>();
  auto T = [&](int64_t m, int64_t o, int64_t b) -> double& { return tgt[(m * nm + o) * nb + b]; };
  const double beta = options_.beta;
  const double lo = -1.0 + kClamp, hi = 1.0 - kClamp;

  std::vector<PairStats> pairs(nm * (nm - 1));
  std::vector<double> w_sum(pairs.size(), 0.0), w_abs_norm(pairs.size(), 0.0);
  const auto orders = PartnerOrders(nm, permutation_seed);
  for (int64_t m = 0; m < nm; ++m) {
    for (int o : orders[m]) {
      const size_t pi = PairIndex(nm, m, o);
      PairStats& ps = pairs[pi];
      for (int64_t b = 0; b < nb; ++b) {
        // g'_m[b] = Σ_a C(m, a, b) g_a[b]: its norm and its dot with g_o[b].
        double norm2 = 0, dot = 0;
        for (int64_t a = 0; a < nm; ++a) {
          const double ca = C(m, a, b);
          if (ca == 0) continue;
          dot += ca * G(b, a, o);
          for (int64_t a2 = 0; a2 < nm; ++a2) norm2 += ca * C(m, a2, b) * G(b, a, a2);
        }
        const double norm_m = std::sqrt(std::max(norm2, 0.0));
        const double norm_o = std::sqrt(std::max(G(b, o, o), 0.0));
        if (norm_m < kMinNorm || norm_o < kMinNorm) continue;  // spec 7.5: no EMA update
        const double phi = std::clamp(dot / (norm_m * norm_o), -1.0, 1.0);
        double& target = T(m, o, b);
        const double t = target;
        if (phi < 0) {
          ++ps.n_conflict;
        } else if (phi < t) {
          ++ps.n_slight;
        } else {
          ++ps.n_none;
        }
        const bool modify = phi < t;
        if (modify) {
          // Eq. 3 (law of sines): afterwards cos(g'_m[b], g_o[b]) = φ̂.
          const double w = norm_m * (t * std::sqrt(1 - phi * phi) - phi * std::sqrt(1 - t * t)) /
                           (norm_o * std::sqrt(1 - t * t) + kEps);
          C(m, o, b) += w;
          ++ps.n_modified;
          w_sum[pi] += w;
          ps.w_max = ps.n_modified == 1 ? w : std::max(ps.w_max, w);
          w_abs_norm[pi] += std::abs(w) * norm_o;
        }
        // Eq. 4 with the φ measured before the injection.
        if (options_.ema_update == EmaUpdate::kAlways || modify) {
          target = std::clamp((1 - beta) * t + beta * phi, lo, hi);
        }
      }
    }
  }

  torch::Tensor out = CombineFromCoefficients(g32, block_offsets_, block_sizes_, coef, nq, gram,
                                              pairs, w_sum, w_abs_norm, stats);
  if (stats != nullptr) {
    for (PairStats& dst : stats->pairs) {
      const torch::Tensor row = targets_[dst.m][dst.other];
      dst.target_mean = nb > 0 ? row.mean().item<double>() : 0.0;
      dst.target_min = nb > 0 ? row.min().item<double>() : 0.0;
      dst.target_max = nb > 0 ? row.max().item<double>() : 0.0;
    }
  }
  return out;
}

}  // namespace gcl::core
