#include "worker/gcl/gradients/pcgrad.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace gcl::core {
namespace {

constexpr double kMinNorm = 1e-12;

void CheckGrads(const std::vector<torch::Tensor>& grads, const GradLayout& layout,
                const char* who) {
  TORCH_CHECK(!grads.empty(), who, ": no gradient buffers");
  for (const auto& g : grads) {
    TORCH_CHECK(g.defined() && g.dim() == 1 && g.numel() == layout.numel(), who,
                ": every buffer must be flat [", layout.numel(), "]");
  }
}

}  // namespace

std::vector<std::vector<int>> PartnerOrders(int64_t num_labels, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::vector<int>> orders(num_labels);
  for (int64_t m = 0; m < num_labels; ++m) {
    auto& o = orders[m];
    for (int64_t j = 0; j < num_labels; ++j)
      if (j != m) o.push_back(static_cast<int>(j));
    // Own Fisher-Yates: std::shuffle's draws differ between standard libraries.
    for (size_t i = o.size(); i > 1; --i) std::swap(o[i - 1], o[rng() % i]);
  }
  return orders;
}

torch::Tensor PCGradCombine(const std::vector<torch::Tensor>& grads, const GradLayout& layout,
                            bool per_tensor, uint64_t permutation_seed, ConflictStats* stats) {
  CheckGrads(grads, layout, "PCGradCombine");
  const int64_t nm = static_cast<int64_t>(grads.size()), nq = layout.num_tensors();
  std::vector<torch::Tensor> g(nm);
  for (int64_t a = 0; a < nm; ++a) g[a] = grads[a].to(torch::kFloat32);
  const std::vector<int64_t> offsets = per_tensor ? layout.offsets() : std::vector<int64_t>{0};
  const std::vector<int64_t> sizes =
      per_tensor ? layout.sizes() : std::vector<int64_t>{layout.numel()};
  const int64_t nb = static_cast<int64_t>(sizes.size());

  // As in GradMitigator, g'_m is tracked as coefficients over the original
  // buffers, g'_m[b] = Σ_a coef[m, a, b] g_a[b], and every dot comes from the
  // block Gram matrices: one pass over the buffers for the dots, one for ĝ.
  const torch::Tensor gram = TensorGram(layout, g);  // [Q, M, M]
  const torch::Tensor bgram = per_tensor ? gram : gram.sum(0, true);
  const double* gr = bgram.data_ptr<double>();
  auto G = [&](int64_t b, int64_t i, int64_t j) { return gr[(b * nm + i) * nm + j]; };
  std::vector<double> coef(nm * nm * nb, 0.0);
  auto C = [&](int64_t m, int64_t a, int64_t b) -> double& { return coef[(m * nm + a) * nb + b]; };

  std::vector<PairStats> pairs(nm * (nm - 1));
  std::vector<double> w_sum(pairs.size(), 0.0), w_abs(pairs.size(), 0.0);
  const auto orders = PartnerOrders(nm, permutation_seed);
  for (int64_t m = 0; m < nm; ++m) {
    for (int64_t b = 0; b < nb; ++b) C(m, m, b) = 1.0;
    for (int o : orders[m]) {
      const size_t pi = PairIndex(nm, m, o);
      PairStats& ps = pairs[pi];
      for (int64_t b = 0; b < nb; ++b) {
        double dot = 0, gp2 = 0;  // g'_m[b] · g_o[b], ‖g'_m[b]‖²
        for (int64_t a = 0; a < nm; ++a) {
          const double ca = C(m, a, b);
          if (ca == 0) continue;
          dot += ca * G(b, a, o);
          for (int64_t a2 = 0; a2 < nm; ++a2) gp2 += ca * C(m, a2, b) * G(b, a, a2);
        }
        const double no2 = G(b, o, o);
        const double n1 = std::sqrt(std::max(gp2, 0.0)), n2 = std::sqrt(std::max(no2, 0.0));
        if (n1 < kMinNorm || n2 < kMinNorm) continue;
        if (dot >= 0) {
          ++ps.n_none;  // φ̂ ≡ 0: nothing is "slight"
          continue;
        }
        // Projection onto the normal plane of the original g_o[b].
        const double w = -dot / no2;
        C(m, o, b) += w;
        ++ps.n_conflict;
        ++ps.n_modified;
        w_sum[pi] += w;
        ps.w_max = ps.n_modified == 1 ? w : std::max(ps.w_max, w);
        w_abs[pi] += std::abs(w) * n2;
      }
    }
  }
  torch::Tensor out =
      CombineFromCoefficients(g, offsets, sizes, coef, nq, gram, pairs, w_sum, w_abs, stats);
  if (stats != nullptr) {
    for (PairStats& dst : stats->pairs) {
      dst.n_slight = 0;  // PCGrad's target is 0: a pair conflicts or it does not
      dst.target_mean = dst.target_min = dst.target_max = 0;
    }
  }
  return out;
}

torch::Tensor MeanCombine(const std::vector<torch::Tensor>& grads, const GradLayout& layout,
                          ConflictStats* stats) {
  CheckGrads(grads, layout, "MeanCombine");
  const int64_t nm = static_cast<int64_t>(grads.size()), nq = layout.num_tensors();
  torch::Tensor out = grads[0].to(torch::kFloat32).clone();
  for (int64_t a = 1; a < nm; ++a) out.add_(grads[a]);
  out.div_(static_cast<double>(nm));
  if (stats != nullptr) {
    std::vector<torch::Tensor> g32;
    for (const auto& g : grads) g32.push_back(g.to(torch::kFloat32));
    const torch::Tensor gram = TensorGram(layout, g32);
    const torch::Tensor coef =
        torch::eye(nm, torch::kFloat64).unsqueeze(2).expand({nm, nm, nq}).contiguous();
    FillGramStats(gram, coef, stats);
    // Categories against φ̂ = 0 per tensor; nothing is modified.
    const double* G = gram.data_ptr<double>();
    for (PairStats& ps : stats->pairs) {
      ps.n_none = ps.n_slight = ps.n_conflict = ps.n_modified = 0;
      ps.w_mean = ps.w_max = ps.w_rel = 0;
      ps.target_mean = ps.target_min = ps.target_max = 0;
      for (int64_t q = 0; q < nq; ++q) {
        const double* gq = G + q * nm * nm;
        const double n1 = std::sqrt(std::max(gq[ps.m * nm + ps.m], 0.0));
        const double n2 = std::sqrt(std::max(gq[ps.other * nm + ps.other], 0.0));
        if (n1 < kMinNorm || n2 < kMinNorm) continue;
        if (gq[ps.m * nm + ps.other] < 0) {
          ++ps.n_conflict;
        } else {
          ++ps.n_none;
        }
      }
    }
  }
  return out;
}

}  // namespace gcl::core
