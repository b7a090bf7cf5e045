// Gradient-conflict statistics of one combination call (spec 11). Filled by
// GradMitigator::Combine, PCGradCombine and MeanCombine; the trainer exports
// them as metrics. All cosines/norms are over the flattened gradient buffer
// given to the combiner (the encoder part, spec 7.5).
#pragma once

#include <cstdint>
#include <vector>

namespace gcl::core {

// Statistics of one ordered pair (m, m'): label m modified against label m'.
struct PairStats {
  int m = 0, other = 0;
  // cos(g_m, g_m') over the whole buffer, before mitigation.
  double cos_pre = 0;
  // cos(g'_m, g_m') over the whole buffer, with g'_m after ALL injections of m.
  double cos_post = 0;
  // Mean and min over tensors of the per-tensor cos(g_m[q], g_m'[q]) before
  // mitigation (tensors where either norm < 1e-12 are left out).
  double cos_pre_tensor_mean = 0, cos_pre_tensor_min = 0;
  // EMA target φ̂_{mm'}[q] over tensors after this call (Eq. 4); 0 for the
  // frozen-target combiners (PCGrad, mean).
  double target_mean = 0, target_min = 0, target_max = 0;
  // Categories of spec 7.2, counted over tensors visited (not skipped) when m
  // met m': none φ ≥ φ̂, slight 0 ≤ φ < φ̂, conflict φ < 0; n_modified counts
  // injections (φ < φ̂). For whole-model granularity the "tensor" is the whole
  // buffer (counts are 0 or 1).
  int64_t n_none = 0, n_slight = 0, n_conflict = 0, n_modified = 0;
  // Injection weights w (Eq. 3) over the injections performed (0 when none).
  double w_mean = 0, w_max = 0;
  // Σ_q ‖w_q g_m'[q]‖ / ‖g_m‖: relative size of what was injected.
  double w_rel = 0;
};

struct ConflictStats {
  std::vector<PairStats> pairs;    // ordered (m, m') with m != m', m-major
  std::vector<double> norm_pre;    // [M] ‖g_m‖
  std::vector<double> norm_post;   // [M] ‖g'_m‖
  std::vector<double> update_cos;  // [M] cos(ĝ, g_m)
  std::vector<double> update_dot;  // [M] ĝ · g_m
  double update_norm = 0;          // ‖ĝ‖
  double naive_norm = 0;           // ‖(1/M) Σ_m g_m‖
};

}  // namespace gcl::core
