// The conflict counts the agent exports on /metrics are exactly what
// GradMitigator did: a hand-made gradient set (2 meta labels, 3 tensors, 2
// steps) whose categories are known by construction goes through
// GradMitigator -> the trainer's running totals and samples
// (conflict_metrics.h) -> a metrics.jsonl line -> the agent's parser and
// MetricsExporter -> the Prometheus text.
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/prometheus_text.h"
#include "worker/agent/metrics_exporter.h"
#include "worker/agent/metrics_tail.h"
#include "worker/gcl/gradients/grad_layout.h"
#include "worker/gcl/gradients/grad_mitigator.h"
#include "worker/gcl/train/conflict_metrics.h"

namespace gcl::core {
namespace {

using ::gcl::testing::FindSample;
using ::gcl::testing::ParsePrometheusText;

torch::Tensor Flat(std::vector<float> v) { return torch::tensor(v, torch::kFloat32); }

TEST(ConflictExportTest, ExportedCountsEqualWhatGradMitigatorDid) {
  // Three tensors of two elements; beta = 1 makes each target the last cosine.
  GradLayout layout({torch::zeros({2}), torch::zeros({2}), torch::zeros({2})});
  GradMitigatorOptions o;
  o.beta = 1.0;
  GradMitigator gm(2, layout, o);
  const std::vector<std::string> names = {"patient", "phase"};
  torch::Tensor totals = torch::zeros({2, 4}, torch::kInt64);

  // Step 1 (targets 0): tensor 0 opposed (conflict), tensor 1 aligned
  // (none), tensor 2 zero for label 0 (skipped, not counted).
  ConflictStats s1;
  gm.Combine({Flat({1, 0, 1, 0, 0, 0}), Flat({-1, 0.2f, 1, 1, 1, 0})}, 1, &s1);
  ASSERT_EQ(s1.pairs.size(), 2u);
  for (const PairStats& p : s1.pairs) {
    EXPECT_EQ(p.n_none, 1) << p.m << "->" << p.other;
    EXPECT_EQ(p.n_slight, 0);
    EXPECT_EQ(p.n_conflict, 1);
    EXPECT_EQ(p.n_modified, 1);
  }
  AccumulateConflictTotals(s1, &totals);
  MetricsRecord r1;
  r1.step = 1;
  AddConflictSamples(s1, names, totals, true, &r1);

  // Step 2 (targets: tensor 0 ~ -0.98, tensor 1 ~ 0.71, tensor 2 still 0):
  // tensor 0 aligned (none), tensor 1 cos 0.45 < 0.71 (slight), tensor 2
  // cos -0.71 (conflict).
  ConflictStats s2;
  gm.Combine({Flat({1, 0, 1, 0, 1, 0}), Flat({1, 0, 1, 2, -1, 1})}, 2, &s2);
  for (const PairStats& p : s2.pairs) {
    EXPECT_EQ(p.n_none, 1) << p.m << "->" << p.other;
    EXPECT_EQ(p.n_slight, 1);
    EXPECT_EQ(p.n_conflict, 1);
    EXPECT_EQ(p.n_modified, 2);
  }
  AccumulateConflictTotals(s2, &totals);
  MetricsRecord r2;
  r2.step = 2;
  AddConflictSamples(s2, names, totals, true, &r2);

  // What the trainer writes and the agent reads back.
  auto exporter = agent::MetricsExporter::Create({}).value();
  for (const MetricsRecord* r : {&r1, &r2}) {
    absl::StatusOr<gcl::v1::MetricsPoint> point = agent::ParseMetricsLine(r->ToJson());
    ASSERT_TRUE(point.ok()) << point.status();
    exporter->Observe("j-0123456789ab", *point);
  }
  const auto samples = ParsePrometheusText(exporter->Scrape());
  for (const std::string pair : {"patient|phase", "phase|patient"}) {
    auto count = [&](const std::string& kind) {
      return FindSample(samples, "gcl_grad_conflicts_total",
                        {{"job", "j-0123456789ab"}, {"pair", pair}, {"kind", kind}});
    };
    // Running totals over both steps, not the sum of the two exported totals.
    EXPECT_EQ(count("none"), 2.0) << pair;
    EXPECT_EQ(count("slight"), 1.0) << pair;
    EXPECT_EQ(count("conflict"), 2.0) << pair;
    EXPECT_EQ(
        FindSample(samples, "gcl_grad_modified_total", {{"job", "j-0123456789ab"}, {"pair", pair}}),
        3.0)
        << pair;
  }
  // The last step's cosine for the pair (a gauge), as GradMitigator measured it.
  const auto cos =
      FindSample(samples, "gcl_grad_cosine",
                 {{"job", "j-0123456789ab"}, {"pair", "patient|phase"}, {"stage", "pre"}});
  ASSERT_TRUE(cos.has_value());
  EXPECT_NEAR(*cos, s2.pairs[0].cos_pre, 1e-6);
}

}  // namespace
}  // namespace gcl::core
