#include "worker/gcl/train/conflict_metrics.h"

#include "absl/strings/str_cat.h"

namespace gcl::core {

std::string PairName(const std::vector<std::string>& names, int m, int other) {
  return absl::StrCat(names[m], "|", names[other]);
}

void AccumulateConflictTotals(const ConflictStats& stats, torch::Tensor* totals) {
  for (size_t p = 0; p < stats.pairs.size(); ++p) {
    const auto& ps = stats.pairs[p];
    auto row = (*totals)[static_cast<int64_t>(p)];
    row[0] += ps.n_none;
    row[1] += ps.n_slight;
    row[2] += ps.n_conflict;
    row[3] += ps.n_modified;
  }
}

void AddConflictSamples(const ConflictStats& stats, const std::vector<std::string>& label_names,
                        const torch::Tensor& totals, bool mitigator, MetricsRecord* record) {
  for (size_t p = 0; p < stats.pairs.size(); ++p) {
    const auto& ps = stats.pairs[p];
    const std::string pair = PairName(label_names, ps.m, ps.other);
    record->Add("gcl_grad_cosine", ps.cos_pre, {{"pair", pair}, {"stage", "pre"}});
    record->Add("gcl_grad_cosine", ps.cos_post, {{"pair", pair}, {"stage", "post"}});
    if (mitigator) {
      record->Add("gcl_grad_target_cosine", ps.target_mean, {{"pair", pair}});
      record->Add("gcl_grad_injection_weight", ps.w_mean, {{"pair", pair}});
    }
    auto row = totals[static_cast<int64_t>(p)];
    const char* kinds[] = {"none", "slight", "conflict"};
    for (int k = 0; k < 3; ++k) {
      record->Add("gcl_grad_conflicts_total", static_cast<double>(row[k].item<int64_t>()),
                  {{"pair", pair}, {"kind", kinds[k]}});
    }
    record->Add("gcl_grad_modified_total", static_cast<double>(row[3].item<int64_t>()),
                {{"pair", pair}});
  }
  for (size_t m = 0; m < stats.norm_pre.size(); ++m) {
    record->Add("gcl_grad_norm", stats.norm_pre[m],
                {{"meta_label", label_names[m]}, {"stage", "pre"}});
    if (m < stats.norm_post.size()) {
      record->Add("gcl_grad_norm", stats.norm_post[m],
                  {{"meta_label", label_names[m]}, {"stage", "post"}});
    }
    if (m < stats.update_cos.size()) {
      record->Add("gcl_update_cosine", stats.update_cos[m], {{"meta_label", label_names[m]}});
    }
  }
}

}  // namespace gcl::core
