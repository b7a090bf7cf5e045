#include "worker/gcl/gradients/grad_layout.h"

#include <ATen/ops/segment_reduce.h>

#include <c10/util/Exception.h>

#include <algorithm>
#include <cmath>

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

torch::Tensor GradLayout::SizesTensor(torch::Device device) const { return sizes_cpu_.to(device); }

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

namespace gcl::core {

namespace {

void CheckGramInputs(const GradLayout& layout, const std::vector<torch::Tensor>& grads) {
  for (const auto& g : grads) {
    TORCH_CHECK(g.dim() == 1 && g.numel() == layout.numel(), "TensorGram: expected [",
                layout.numel(), "] buffers, got ", g.sizes());
  }
}

// [Q, M, M] float64 from the upper triangles' values (q-major, a <= b).
torch::Tensor SymmetricGram(const double* d, int64_t nq, int64_t nm) {
  torch::Tensor gram = torch::empty({nq, nm, nm}, torch::kFloat64);
  double* g = gram.data_ptr<double>();
  for (int64_t q = 0; q < nq; ++q) {
    for (int64_t a = 0; a < nm; ++a) {
      for (int64_t b = a; b < nm; ++b) {
        g[(q * nm + a) * nm + b] = g[(q * nm + b) * nm + a] = *d++;
      }
    }
  }
  return gram;
}

}  // namespace

torch::Tensor TensorGram(const GradLayout& layout, const std::vector<torch::Tensor>& grads) {
  const int64_t nm = static_cast<int64_t>(grads.size()), nq = layout.num_tensors();
  CheckGramInputs(layout, grads);
  if (nq == 0 || nm == 0) return torch::zeros({nq, nm, nm}, torch::kFloat64);
  if (grads[0].is_cuda()) return TensorGramFused(layout, grads);
  std::vector<torch::Tensor> dots;
  dots.reserve(nq * nm * (nm + 1) / 2);
  for (int64_t q = 0; q < nq; ++q) {
    for (int64_t a = 0; a < nm; ++a) {
      const torch::Tensor ga = grads[a].narrow(0, layout.offset(q), layout.size(q));
      for (int64_t b = a; b < nm; ++b) {
        dots.push_back(at::dot(ga, grads[b].narrow(0, layout.offset(q), layout.size(q))));
      }
    }
  }
  const torch::Tensor host = at::stack(dots).to(torch::kCPU, torch::kFloat64).contiguous();
  return SymmetricGram(host.data_ptr<double>(), nq, nm);
}

torch::Tensor TensorGramFused(const GradLayout& layout, const std::vector<torch::Tensor>& grads) {
  const int64_t nm = static_cast<int64_t>(grads.size()), nq = layout.num_tensors();
  CheckGramInputs(layout, grads);
  if (nq == 0 || nm == 0) return torch::zeros({nq, nm, nm}, torch::kFloat64);
  const torch::Device device = grads[0].device();
  std::vector<int64_t> first, second, lengths;  // the pairs a <= b; the tensors' sizes
  for (int64_t a = 0; a < nm; ++a) {
    for (int64_t b = a; b < nm; ++b) {
      first.push_back(a);
      second.push_back(b);
    }
  }
  for (int64_t q = 0; q < nq; ++q) lengths.push_back(layout.size(q));
  auto index = [&](const std::vector<int64_t>& v) {
    return torch::tensor(v, torch::kLong).to(device, /*non_blocking=*/false);
  };
  const int64_t np = static_cast<int64_t>(first.size());
  std::vector<int64_t> all_lengths;  // every pair's row cut into the Q tensors
  for (int64_t p = 0; p < np; ++p) all_lengths.insert(all_lengths.end(), lengths.begin(), lengths.end());
  const torch::Tensor g = torch::stack(grads).to(torch::kFloat32);  // [M, numel]
  const torch::Tensor products = g.index_select(0, index(first)) * g.index_select(0, index(second));
  // One 1-D segmented sum over all pairs' rows: on CUDA that is cub's
  // segmented reduce (a block per segment); segment_reduce's kernel for 2-D
  // data loops over a segment in a single thread. unsafe: the lengths are
  // right by construction, and checking them costs two host syncs.
  const torch::Tensor sums =
      at::segment_reduce(products.reshape({-1}), "sum", index(all_lengths), {}, {}, /*axis=*/0,
                         /*unsafe=*/true, /*initial=*/0.0);  // [pairs * Q], pair-major
  const torch::Tensor host = sums.reshape({np, nq}).t().to(torch::kCPU, torch::kFloat64).contiguous();
  return SymmetricGram(host.data_ptr<double>(), nq, nm);
}

torch::Tensor BlockLinearCombination(const std::vector<torch::Tensor>& grads,
                                     const std::vector<int64_t>& offsets,
                                     const std::vector<int64_t>& sizes,
                                     const std::vector<double>& coef) {
  const size_t nm = grads.size(), nb = sizes.size();
  TORCH_CHECK(nm > 0 && coef.size() == nm * nb, "BlockLinearCombination: bad coefficients");
  torch::Tensor out = torch::empty_like(grads[0], grads[0].options().dtype(torch::kFloat32));
  size_t b = 0;
  while (b < nb) {
    // Extend the run while the next block has the same coefficients.
    size_t e = b + 1;
    auto same = [&](size_t x, size_t y) {
      for (size_t a = 0; a < nm; ++a)
        if (coef[a * nb + x] != coef[a * nb + y]) return false;
      return true;
    };
    while (e < nb && same(b, e)) ++e;
    const int64_t off = offsets[b], len = offsets[e - 1] + sizes[e - 1] - off;
    if (len > 0) {
      torch::Tensor o = out.narrow(0, off, len);
      at::mul_out(o, grads[0].narrow(0, off, len), coef[b]);
      for (size_t a = 1; a < nm; ++a) o.add_(grads[a].narrow(0, off, len), coef[a * nb + b]);
    }
    b = e;
  }
  return out;
}

void FillGramStats(const torch::Tensor& gram, const torch::Tensor& coef, ConflictStats* stats) {
  const int64_t nq = gram.size(0), nm = gram.size(1);
  TORCH_CHECK(coef.sizes() == torch::IntArrayRef({nm, nm, nq}), "FillGramStats: coef ",
              coef.sizes(), " does not match gram ", gram.sizes());
  const torch::Tensor gc = gram.contiguous(), cc = coef.to(torch::kFloat64).contiguous();
  const double* g = gc.data_ptr<double>();
  const double* c = cc.data_ptr<double>();
  auto G = [&](int64_t q, int64_t a, int64_t b) { return g[(q * nm + a) * nm + b]; };
  auto C = [&](int64_t m, int64_t a, int64_t q) { return c[(m * nm + a) * nq + q]; };
  auto safe_div = [](double x, double y) { return y > 0 ? x / y : 0.0; };

  // Update coefficients: ĝ[q] = Σ_a u[a, q] g_a[q], u = (1/M) Σ_m coef[m].
  std::vector<double> u(nm * nq, 0.0);
  for (int64_t m = 0; m < nm; ++m)
    for (int64_t a = 0; a < nm; ++a)
      for (int64_t q = 0; q < nq; ++q) u[a * nq + q] += C(m, a, q) / nm;

  stats->norm_pre.assign(nm, 0.0);
  stats->norm_post.assign(nm, 0.0);
  stats->update_dot.assign(nm, 0.0);
  stats->update_cos.assign(nm, 0.0);
  double update2 = 0, naive2 = 0;
  for (int64_t q = 0; q < nq; ++q) {
    for (int64_t a = 0; a < nm; ++a) {
      stats->norm_pre[a] += G(q, a, a);
      for (int64_t b = 0; b < nm; ++b) {
        naive2 += G(q, a, b) / (nm * nm);
        update2 += u[a * nq + q] * u[b * nq + q] * G(q, a, b);
        stats->update_dot[b] += u[a * nq + q] * G(q, a, b);
      }
    }
    for (int64_t m = 0; m < nm; ++m)
      for (int64_t a = 0; a < nm; ++a)
        for (int64_t b = 0; b < nm; ++b)
          stats->norm_post[m] += C(m, a, q) * C(m, b, q) * G(q, a, b);
  }
  // Gram expansions can dip below 0 by rounding.
  for (int64_t m = 0; m < nm; ++m) {
    stats->norm_pre[m] = std::sqrt(std::max(stats->norm_pre[m], 0.0));
    stats->norm_post[m] = std::sqrt(std::max(stats->norm_post[m], 0.0));
  }
  stats->update_norm = std::sqrt(std::max(update2, 0.0));
  stats->naive_norm = std::sqrt(std::max(naive2, 0.0));
  for (int64_t m = 0; m < nm; ++m) {
    stats->update_cos[m] = safe_div(stats->update_dot[m], stats->update_norm * stats->norm_pre[m]);
  }

  stats->pairs.resize(nm * (nm - 1));
  for (int64_t m = 0; m < nm; ++m) {
    for (int64_t o = 0; o < nm; ++o) {
      if (o == m) continue;
      PairStats& ps = stats->pairs[PairIndex(nm, m, o)];
      ps.m = static_cast<int>(m);
      ps.other = static_cast<int>(o);
      double dot_pre = 0, dot_post = 0, tsum = 0, tmin = 0;
      int64_t tcount = 0;
      for (int64_t q = 0; q < nq; ++q) {
        dot_pre += G(q, m, o);
        for (int64_t a = 0; a < nm; ++a) dot_post += C(m, a, q) * G(q, a, o);
        const double n1 = std::sqrt(std::max(G(q, m, m), 0.0));
        const double n2 = std::sqrt(std::max(G(q, o, o), 0.0));
        if (n1 < 1e-12 || n2 < 1e-12) continue;
        const double cq = G(q, m, o) / (n1 * n2);
        tsum += cq;
        tmin = tcount == 0 ? cq : std::min(tmin, cq);
        ++tcount;
      }
      ps.cos_pre = safe_div(dot_pre, stats->norm_pre[m] * stats->norm_pre[o]);
      ps.cos_post = safe_div(dot_post, stats->norm_post[m] * stats->norm_pre[o]);
      ps.cos_pre_tensor_mean = tcount > 0 ? tsum / tcount : 0.0;
      ps.cos_pre_tensor_min = tmin;
    }
  }
}

torch::Tensor CombineFromCoefficients(const std::vector<torch::Tensor>& grads,
                                      const std::vector<int64_t>& offsets,
                                      const std::vector<int64_t>& sizes,
                                      const std::vector<double>& coef, int64_t num_tensors,
                                      const torch::Tensor& gram,
                                      const std::vector<PairStats>& pairs,
                                      const std::vector<double>& w_sum,
                                      const std::vector<double>& w_abs_norm, ConflictStats* stats) {
  const int64_t nm = static_cast<int64_t>(grads.size());
  const int64_t nb = static_cast<int64_t>(sizes.size());
  // ĝ = (1/M) Σ_m g'_m = Σ_a u[a] ∘ g_a with u[a, b] = (1/M) Σ_m coef[m, a, b].
  std::vector<double> u(nm * nb, 0.0);
  for (int64_t m = 0; m < nm; ++m)
    for (int64_t a = 0; a < nm; ++a)
      for (int64_t b = 0; b < nb; ++b) u[a * nb + b] += coef[(m * nm + a) * nb + b] / nm;
  torch::Tensor out = BlockLinearCombination(grads, offsets, sizes, u);
  if (stats == nullptr) return out;

  const torch::Tensor coef_t =
      torch::from_blob(const_cast<double*>(coef.data()), {nm, nm, nb}, torch::kFloat64)
          .expand({nm, nm, num_tensors})
          .clone(at::MemoryFormat::Contiguous);
  FillGramStats(gram, coef_t, stats);
  for (size_t pi = 0; pi < pairs.size(); ++pi) {
    PairStats& dst = stats->pairs[pi];
    const PairStats& src = pairs[pi];
    dst.n_none = src.n_none;
    dst.n_slight = src.n_slight;
    dst.n_conflict = src.n_conflict;
    dst.n_modified = src.n_modified;
    dst.w_max = src.w_max;
    dst.w_mean = src.n_modified > 0 ? w_sum[pi] / src.n_modified : 0.0;
    const double norm_m = stats->norm_pre[dst.m];
    dst.w_rel = norm_m > 0 ? w_abs_norm[pi] / norm_m : 0.0;
  }
  return out;
}

}  // namespace gcl::core
