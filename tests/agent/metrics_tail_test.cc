#include "worker/agent/metrics_tail.h"

#include <cmath>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::agent {
namespace {

void Append(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::app | std::ios::binary) << text;
}

TEST(ParseMetricsLineTest, ParsesTheTrainerFormat) {
  GCL_ASSERT_OK_AND_ASSIGN(
      auto p, ParseMetricsLine(R"({"step":120,"time":3.25,"samples":[)"
                               R"({"name":"gcl_train_loss","labels":{"term":"total"},"value":0.75},)"
                               R"({"name":"gcl_gradfilter_selected","value":5},)"
                               R"({"name":"gcl_grad_norm","labels":{"meta_label":"patient"},"value":null}]})"));
  EXPECT_EQ(p.step(), 120);
  EXPECT_DOUBLE_EQ(p.time_seconds(), 3.25);
  ASSERT_EQ(p.samples_size(), 3);
  EXPECT_EQ(p.samples(0).name(), "gcl_train_loss");
  EXPECT_EQ(p.samples(0).labels().at("term"), "total");
  EXPECT_DOUBLE_EQ(p.samples(0).value(), 0.75);
  EXPECT_TRUE(p.samples(1).labels().empty());
  EXPECT_DOUBLE_EQ(p.samples(1).value(), 5);
  EXPECT_TRUE(std::isnan(p.samples(2).value()));
}

TEST(ParseMetricsLineTest, RejectsGarbage) {
  EXPECT_THAT(ParseMetricsLine("{\"step\":1,\"ti"),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "JSON"));
  EXPECT_THAT(ParseMetricsLine("{\"time\":1}"),
              testing::StatusIs(absl::StatusCode::kInvalidArgument, "step"));
}

TEST(MetricsTailTest, FollowsAFileWrittenInPieces) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "metrics.jsonl").string();
  MetricsTail tail(path);
  GCL_ASSERT_OK_AND_ASSIGN(auto none, tail.Poll());  // not created yet
  EXPECT_TRUE(none.empty());

  Append(path, R"({"step":1,"time":0.5,"samples":[{"name":"a","value":1}]})" "\n"
               R"({"step":2,"time":1.0,"sam)");
  GCL_ASSERT_OK_AND_ASSIGN(auto first, tail.Poll());
  ASSERT_EQ(first.size(), 1u);  // the torn second line waits
  EXPECT_EQ(first[0].step(), 1);

  GCL_ASSERT_OK_AND_ASSIGN(auto nothing, tail.Poll());
  EXPECT_TRUE(nothing.empty());

  Append(path, R"(ples":[{"name":"a","value":2}]})" "\n" "not json\n\n"
               R"({"step":3,"time":1.5,"samples":[]})" "\n" R"({"step":4,"time":2)");
  GCL_ASSERT_OK_AND_ASSIGN(auto second, tail.Poll());
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(second[0].step(), 2);
  EXPECT_DOUBLE_EQ(second[0].samples(0).value(), 2);
  EXPECT_EQ(second[1].step(), 3);
  EXPECT_EQ(tail.bad_lines(), 1);

  // The writer exited: the last line is complete JSON without '\n'.
  Append(path, ",\"samples\":[]}");
  GCL_ASSERT_OK_AND_ASSIGN(auto last, tail.Flush());
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(last[0].step(), 4);
  EXPECT_DOUBLE_EQ(last[0].time_seconds(), 2);
}

TEST(MetricsTailTest, RereadsATruncatedFile) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "m.jsonl").string();
  MetricsTail tail(path);
  Append(path, "{\"step\":1,\"time\":0,\"samples\":[]}\n{\"step\":2,\"time\":0,\"samples\":[]}\n");
  GCL_ASSERT_OK_AND_ASSIGN(auto a, tail.Poll());
  EXPECT_EQ(a.size(), 2u);
  const absl::Time grew = tail.last_growth();
  std::ofstream(path, std::ios::trunc) << "{\"step\":7,\"time\":0,\"samples\":[]}\n";
  GCL_ASSERT_OK_AND_ASSIGN(auto b, tail.Poll());
  ASSERT_EQ(b.size(), 1u);
  EXPECT_EQ(b[0].step(), 7);
  EXPECT_GE(tail.last_growth(), grew);
}

TEST(MetricsTailTest, FlushCountsATornLastLine) {
  testing::TempDir dir;
  const std::string path = (dir.path() / "m.jsonl").string();
  MetricsTail tail(path);
  Append(path, "{\"step\":1,\"time\":0,\"samples\":[]}\n{\"step\":2,\"ti");
  GCL_ASSERT_OK_AND_ASSIGN(auto a, tail.Flush());
  EXPECT_EQ(a.size(), 1u);
  EXPECT_EQ(tail.bad_lines(), 1);
}

}  // namespace
}  // namespace gcl::agent
