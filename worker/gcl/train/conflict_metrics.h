// The gradient-conflict samples of a logged pre-training step (architecture
// doc section 5; gcl-algorithm.md section 11), shared by the trainer and the
// tests that follow GradMitigator's counts to the agent's /metrics.
#pragma once

#include <torch/types.h>

#include <string>
#include <vector>

#include "worker/gcl/gradients/conflict_stats.h"
#include "worker/gcl/train/metrics_writer.h"

namespace gcl::core {

// Ordered pair name "patient|phase" (m modified against other).
std::string PairName(const std::vector<std::string>& names, int m, int other);

// Adds the step's per-pair category counts to the running totals:
// totals int64 [P, 4] (none, slight, conflict, modified), row p = stats.pairs[p].
void AccumulateConflictTotals(const ConflictStats& stats, torch::Tensor* totals);

// Appends gcl_grad_cosine{pair,stage}, (with a mitigator) gcl_grad_target_cosine{pair}
// and gcl_grad_injection_weight{pair}, gcl_grad_conflicts_total{pair,kind} and
// gcl_grad_modified_total{pair} (the running totals), gcl_grad_norm{meta_label,stage}
// and gcl_update_cosine{meta_label}.
void AddConflictSamples(const ConflictStats& stats, const std::vector<std::string>& label_names,
                        const torch::Tensor& totals, bool mitigator, MetricsRecord* record);

}  // namespace gcl::core
