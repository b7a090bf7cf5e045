// MetricsExporter: trainer samples -> Prometheus series with a job label,
// types by name, counter semantics for running totals, gcl_dice at the end
// of an attempt, series dropped after the grace period, a real endpoint.
#include "worker/agent/metrics_exporter.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_get.h"
#include "tests/testing/prometheus_text.h"
#include "tests/testing/status_matchers.h"

namespace gcl::agent {
namespace {

using ::gcl::testing::FindSample;
using ::gcl::testing::ParsePrometheusText;
using ::gcl::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

gcl::v1::MetricsPoint Point(
    int64_t step,
    std::vector<std::tuple<std::string, std::map<std::string, std::string>, double>> samples) {
  gcl::v1::MetricsPoint p;
  p.set_step(step);
  for (auto& [name, labels, value] : samples) {
    auto* s = p.add_samples();
    s->set_name(name);
    for (auto& [k, v] : labels) (*s->mutable_labels())[k] = v;
    s->set_value(value);
  }
  return p;
}

struct FakeClock {
  absl::Time now = absl::FromUnixSeconds(1000);
};

TEST(MetricsExporterTest, SamplesBecomeSeriesWithTheJobLabel) {
  auto e = MetricsExporter::Create({}).value();
  EXPECT_EQ(e->address(), "");
  e->Observe("j-1", Point(10, {{"gcl_train_loss", {{"term", "total"}}, 1.5},
                               {"gcl_train_steps_total", {}, 10},
                               {"gcl_train_step_seconds", {}, 0.2},
                               {"gcl_grad_cosine", {{"pair", "a|b"}, {"stage", "pre"}}, -0.25},
                               {"gcl_gradfilter_selected", {}, 4}}));
  e->Observe("j-1", Point(20, {{"gcl_train_loss", {{"term", "total"}}, 1.0},
                               {"gcl_train_steps_total", {}, 20},
                               {"gcl_train_step_seconds", {}, 3.0}}));
  const std::string text = e->Scrape();
  const auto s = ParsePrometheusText(text);
  EXPECT_EQ(FindSample(s, "gcl_train_loss", {{"job", "j-1"}, {"term", "total"}}),
            1.0);  // last value
  EXPECT_EQ(FindSample(s, "gcl_train_steps_total", {{"job", "j-1"}}), 20.0);
  EXPECT_THAT(text, HasSubstr("# TYPE gcl_train_steps_total counter"));
  EXPECT_THAT(text, HasSubstr("# TYPE gcl_train_step_seconds histogram"));
  EXPECT_EQ(FindSample(s, "gcl_train_step_seconds_count", {{"job", "j-1"}}), 2.0);
  EXPECT_NEAR(*FindSample(s, "gcl_train_step_seconds_sum", {{"job", "j-1"}}), 3.2, 1e-9);
  EXPECT_EQ(FindSample(s, "gcl_train_step_seconds_bucket", {{"job", "j-1"}, {"le", "0.25"}}), 1.0);
  EXPECT_EQ(FindSample(s, "gcl_grad_cosine", {{"job", "j-1"}, {"pair", "a|b"}, {"stage", "pre"}}),
            -0.25);
  // The cosine also lands in its distribution (bucket -0.2 holds -0.25).
  EXPECT_EQ(FindSample(s, "gcl_grad_cosine_distribution_bucket",
                       {{"job", "j-1"}, {"pair", "a|b"}, {"stage", "pre"}, {"le", "-0.3"}}),
            0.0);
  EXPECT_EQ(FindSample(s, "gcl_grad_cosine_distribution_bucket",
                       {{"job", "j-1"}, {"pair", "a|b"}, {"stage", "pre"}, {"le", "-0.2"}}),
            1.0);
  EXPECT_THAT(text, HasSubstr("# HELP gcl_gradfilter_selected GradFilter pace"));
}

TEST(MetricsExporterTest, RunningTotalsNeverGoBackwards) {
  auto e = MetricsExporter::Create({}).value();
  const std::map<std::string, std::string> l = {{"pair", "a|b"}, {"kind", "conflict"}};
  e->Observe("j-1", Point(1, {{"gcl_grad_conflicts_total", l, 5}}));
  e->Observe("j-1", Point(2, {{"gcl_grad_conflicts_total", l, 8}}));
  // A resumed attempt re-reports a lower running total: the counter holds, then advances.
  e->Observe("j-1", Point(1, {{"gcl_grad_conflicts_total", l, 6}}));
  e->Observe("j-1", Point(2, {{"gcl_grad_conflicts_total", l, 7}}));
  const auto s = ParsePrometheusText(e->Scrape());
  EXPECT_EQ(FindSample(s, "gcl_grad_conflicts_total",
                       {{"job", "j-1"}, {"pair", "a|b"}, {"kind", "conflict"}}),
            9.0);
}

TEST(MetricsExporterTest, InvalidNamesAreDroppedAndCounted) {
  auto e = MetricsExporter::Create({}).value();
  e->Observe("j-1", Point(1, {{"bad name", {}, 1},
                              {"gcl_ok", {{"bad-label", "x"}}, 2},
                              {"gcl_ok", {{"job", "spoofed"}, {"term", "t"}}, 3}}));
  const std::string text = e->Scrape();
  const auto s = ParsePrometheusText(text);
  EXPECT_EQ(FindSample(s, "gcl_agent_metrics_dropped_total", {}), 2.0);
  // A sample's own "job" label cannot override the job id.
  EXPECT_EQ(FindSample(s, "gcl_ok", {{"job", "j-1"}, {"term", "t"}}), 3.0);
  EXPECT_THAT(text, Not(HasSubstr("spoofed")));
}

TEST(MetricsExporterTest, DiceAtAttemptEndAndSeriesDroppedAfterGrace) {
  FakeClock clock;
  MetricsExporterOptions o;
  o.grace = absl::Minutes(5);
  o.now = [&clock] { return clock.now; };
  auto e = MetricsExporter::Create(o).value();
  e->Observe("j-old", Point(1, {{"gcl_train_loss", {{"term", "total"}}, 1}}));
  e->Observe("j-new", Point(1, {{"gcl_train_loss", {{"term", "total"}}, 2}}));
  google::protobuf::RepeatedPtrField<gcl::v1::CaseResult> cases;
  for (auto [cls, dice] :
       std::vector<std::pair<std::string, double>>{{"LV", 0.8}, {"LV", 0.6}, {"RV", 0.5}}) {
    auto* c = cases.Add();
    c->set_class_name(cls);
    c->set_dice(dice);
  }
  e->EndAttempt("j-old", cases);
  auto s = ParsePrometheusText(e->Scrape());
  EXPECT_NEAR(*FindSample(s, "gcl_dice", {{"job", "j-old"}, {"class", "LV"}}), 0.7, 1e-12);
  EXPECT_EQ(FindSample(s, "gcl_dice", {{"job", "j-old"}, {"class", "RV"}}), 0.5);

  clock.now += absl::Minutes(4);  // within the grace period: still there
  EXPECT_EQ(e->Jobs(), (std::vector<std::string>{"j-new", "j-old"}));
  clock.now += absl::Minutes(2);
  const std::string text = e->Scrape();
  EXPECT_THAT(text, Not(HasSubstr("j-old")));
  s = ParsePrometheusText(text);
  EXPECT_EQ(FindSample(s, "gcl_train_loss", {{"job", "j-new"}, {"term", "total"}}), 2.0);
  EXPECT_EQ(e->Jobs(), (std::vector<std::string>{"j-new"}));

  // A job that comes back (next attempt) gets fresh series.
  e->Observe("j-old", Point(1, {{"gcl_train_loss", {{"term", "total"}}, 4}}));
  s = ParsePrometheusText(e->Scrape());
  EXPECT_EQ(FindSample(s, "gcl_train_loss", {{"job", "j-old"}, {"term", "total"}}), 4.0);
}

TEST(MetricsExporterTest, ANewPointCancelsThePendingRemoval) {
  FakeClock clock;
  MetricsExporterOptions o;
  o.grace = absl::Minutes(1);
  o.now = [&clock] { return clock.now; };
  auto e = MetricsExporter::Create(o).value();
  e->Observe("j-1", Point(1, {{"gcl_train_loss", {{"term", "total"}}, 1}}));
  e->EndAttempt("j-1", {});
  e->Observe("j-1", Point(2, {{"gcl_train_loss", {{"term", "total"}}, 1}}));  // next attempt
  clock.now += absl::Minutes(10);
  EXPECT_EQ(e->Jobs(), (std::vector<std::string>{"j-1"}));
}

TEST(MetricsExporterTest, ServesMetricsOnLoopback) {
  MetricsExporterOptions o;
  o.listen = "127.0.0.1:0";
  auto e = MetricsExporter::Create(o).value();
  ASSERT_THAT(e->address(), HasSubstr("127.0.0.1:"));
  const int port = std::stoi(e->address().substr(e->address().rfind(':') + 1));
  e->Observe("j-7", Point(1, {{"gcl_train_samples_per_second", {}, 42}}));
  const auto s = ParsePrometheusText(gcl::testing::HttpGet(port, "/metrics"));
  EXPECT_EQ(FindSample(s, "gcl_train_samples_per_second", {{"job", "j-7"}}), 42.0);
}

TEST(MetricsExporterTest, AnAddressInUseIsAClearError) {
  MetricsExporterOptions o;
  o.listen = "127.0.0.1:0";
  auto first = MetricsExporter::Create(o).value();
  o.listen = first->address();
  EXPECT_THAT(MetricsExporter::Create(o).status(),
              StatusIs(absl::StatusCode::kUnavailable, first->address()));
}

}  // namespace
}  // namespace gcl::agent
