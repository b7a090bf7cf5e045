#include "worker/gcl/gradients/pcgrad.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <c10/util/Exception.h>

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

// Per-tensor sums of a [numel] buffer: [Q] (one fused kernel).
torch::Tensor SegmentSum(const torch::Tensor& x, const GradLayout& layout) {
  return at::segment_reduce(x, "sum", layout.SizesTensor(x.device()));
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
  // Squared norms of the original buffers per block: [Q] or scalar.
  std::vector<torch::Tensor> norm2(nm);
  for (int64_t a = 0; a < nm; ++a) norm2[a] = per_tensor ? SegmentSum(g[a] * g[a], layout) : g[a].dot(g[a]);

  // Per (m, m') visit, on the device (no host sync in the loop): the block
  // dot with g'_m before projecting, ‖g'_m‖², and the projection weight.
  struct Visit { int64_t m, o; torch::Tensor dot, gm2, w; };
  std::vector<Visit> visits;
  torch::Tensor out = torch::zeros_like(g[0]);
  const auto orders = PartnerOrders(nm, permutation_seed);
  const double min2 = kMinNorm * kMinNorm;
  for (int64_t m = 0; m < nm; ++m) {
    torch::Tensor gp = g[m].clone();
    for (int o : orders[m]) {
      torch::Tensor dot, gm2;
      if (per_tensor) {
        dot = SegmentSum(gp * g[o], layout);
        gm2 = SegmentSum(gp * gp, layout);
      } else {
        dot = gp.dot(g[o]);
        gm2 = gp.dot(gp);
      }
      const torch::Tensor project = (dot < 0) & (gm2 >= min2) & (norm2[o] >= min2);
      const torch::Tensor w = torch::where(project, -dot / norm2[o].clamp_min(min2),
                                           torch::zeros_like(dot));
      if (per_tensor) {
        gp.addcmul_(g[o], layout.Expand(w));
      } else {
        gp.add_(g[o] * w);
      }
      if (stats != nullptr) visits.push_back({m, o, dot, gm2, w});
    }
    out.add_(gp);
  }
  out.div_(static_cast<double>(nm));

  if (stats != nullptr) {
    const torch::Tensor gram = TensorGram(layout, at::stack(g));
    torch::Tensor coef = torch::zeros({nm, nm, nq}, torch::kFloat64);
    for (int64_t m = 0; m < nm; ++m) coef[m][m].fill_(1.0);
    std::vector<PairStats> pairs(nm * (nm - 1));
    std::vector<double> w_sum(pairs.size(), 0.0), w_abs(pairs.size(), 0.0);
    for (const Visit& v : visits) {
      const torch::Tensor w = v.w.to(torch::kCPU, torch::kFloat64).reshape({-1});
      const torch::Tensor d = v.dot.to(torch::kCPU, torch::kFloat64).reshape({-1});
      const torch::Tensor n1 = v.gm2.to(torch::kCPU, torch::kFloat64).reshape({-1});
      const torch::Tensor n2 = norm2[v.o].to(torch::kCPU, torch::kFloat64).reshape({-1});
      coef[v.m][v.o].copy_(per_tensor ? w : w.expand({nq}));
      const size_t pi = PairIndex(nm, v.m, v.o);
      PairStats& ps = pairs[pi];
      for (int64_t b = 0; b < w.numel(); ++b) {
        const double nb1 = std::sqrt(n1[b].item<double>()), nb2 = std::sqrt(n2[b].item<double>());
        if (nb1 < kMinNorm || nb2 < kMinNorm) continue;
        const double wb = w[b].item<double>();
        if (d[b].item<double>() < 0) {
          ++ps.n_conflict;
          ++ps.n_modified;
          w_sum[pi] += wb;
          ps.w_max = ps.n_modified == 1 ? wb : std::max(ps.w_max, wb);
          w_abs[pi] += std::abs(wb) * nb2;
        } else {
          ++ps.n_none;  // φ̂ ≡ 0: nothing is "slight"
        }
      }
    }
    FillGramStats(gram, coef, stats);
    for (size_t pi = 0; pi < pairs.size(); ++pi) {
      PairStats& dst = stats->pairs[pi];
      dst.n_none = pairs[pi].n_none;
      dst.n_conflict = pairs[pi].n_conflict;
      dst.n_slight = 0;
      dst.n_modified = pairs[pi].n_modified;
      dst.w_max = pairs[pi].w_max;
      dst.w_mean = dst.n_modified > 0 ? w_sum[pi] / dst.n_modified : 0.0;
      const double norm_m = stats->norm_pre[dst.m];
      dst.w_rel = norm_m > 0 ? w_abs[pi] / norm_m : 0.0;
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
    const torch::Tensor gram = TensorGram(layout, at::stack(grads).to(torch::kFloat32));
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
