// gclctl's formatting helpers, the table renderer and the watch progress
// line, on hand-made values.
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "client/format.h"
#include "client/progress.h"
#include "client/table.h"

namespace gcl::client {
namespace {

TEST(FormatTest, SizesDurationsAndDiceCells) {
  EXPECT_EQ(HumanBytes(0), "0 B");
  EXPECT_EQ(HumanBytes(1023), "1023 B");
  EXPECT_EQ(HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(HumanBytes(int64_t{3} << 20), "3.0 MiB");
  EXPECT_EQ(HumanBytes(int64_t{5} << 40), "5.0 TiB");
  EXPECT_EQ(HumanDuration(-3), "0s");
  EXPECT_EQ(HumanDuration(42.4), "42s");
  EXPECT_EQ(HumanDuration(185), "3m05s");
  EXPECT_EQ(HumanDuration(3725), "1h02m");
  EXPECT_EQ(DiceCell(0.8123, 0.0129, 3), "0.812 \u00b1 0.013 (n=3)");
  EXPECT_EQ(DiceCell(0.5, 0, 0), "0.500 \u00b1 0.000");
  EXPECT_EQ(ShortSha(std::string(64, 'a')), std::string(12, 'a'));
  EXPECT_EQ(StateName(gcl::v1::JOB_STATE_CANCELLING), "CANCELLING");
}

TEST(TableTest, PadsByCodePointsAlignsRightAndTrimsTrailingBlanks) {
  EXPECT_EQ(DisplayWidth("0.8 \u00b1 0.1"), 9u);
  Table t({"NAME", "N", "CELL"});
  t.AlignRight(1);
  t.AddRow({"a", "7", "1 \u00b1 2"});
  t.AddRow({"long-name", "123"});
  EXPECT_EQ(t.ToString(),
            "NAME         N  CELL\n"
            "a            7  1 \u00b1 2\n"
            "long-name  123\n");
}

gcl::v1::MetricsPoint Point() {
  gcl::v1::MetricsPoint m;
  auto add = [&](const std::string& name, double v, const std::string& pair, const std::string& key,
                 const std::string& val) {
    auto* s = m.add_samples();
    s->set_name(name);
    s->set_value(v);
    (*s->mutable_labels())["pair"] = pair;
    (*s->mutable_labels())[key] = val;
  };
  add("gcl_grad_cosine", 0.3, "a|b", "stage", "pre");
  add("gcl_grad_cosine", -0.4, "a|c", "stage", "pre");
  add("gcl_grad_cosine", -0.1, "b|c", "stage", "pre");
  add("gcl_grad_cosine", 0.05, "a|c", "stage", "post");
  add("gcl_grad_conflicts_total", 3, "a|c", "kind", "conflict");
  add("gcl_grad_conflicts_total", 1, "a|c", "kind", "slight");
  add("gcl_grad_conflicts_total", 6, "a|b", "kind", "none");
  add("gcl_train_loss", 2.0, "", "term", "total");
  return m;
}

TEST(ProgressTest, ConflictFiguresFromTheTrainersMetricNames) {
  ConflictFigures f = ConflictsOf(Point());
  EXPECT_TRUE(f.has_cosine);
  EXPECT_EQ(f.worst_pair, "a|c");
  EXPECT_DOUBLE_EQ(f.worst_pre, -0.4);
  EXPECT_TRUE(f.has_post);
  EXPECT_DOUBLE_EQ(f.worst_post, 0.05);
  EXPECT_EQ(f.pairs, 3);
  EXPECT_EQ(f.conflicting_pairs, 2);
  EXPECT_DOUBLE_EQ(f.conflict_share, 0.3);
  EXPECT_EQ(ConflictText(f),
            "conflicts 30.0% of checks, 2/3 pairs opposed, worst a|c cos -0.40 -> 0.05");
  EXPECT_EQ(ConflictText(ConflictsOf(gcl::v1::MetricsPoint())), "");
}

TEST(ProgressTest, EtaFromStepTimeElseTheTrainersEstimate) {
  gcl::v1::Progress p;
  p.set_step(25);
  p.set_total_steps(100);
  p.set_step_seconds(2.0);
  p.set_eta_seconds(999);
  EXPECT_DOUBLE_EQ(EtaSeconds(p), 150.0);
  p.set_step_seconds(0);
  EXPECT_DOUBLE_EQ(EtaSeconds(p), 999.0);
  p.set_eta_seconds(0);
  EXPECT_LT(EtaSeconds(p), 0);
  p.set_loss(0.25);
  EXPECT_EQ(ProgressLine("RUNNING", p, ConflictFigures(), 4),
            "RUNNING [#---]  25% step 25/100  loss 0.2500");
  gcl::v1::Progress open;
  open.set_step(7);
  open.set_phase("finetune m1-r0");
  EXPECT_EQ(ProgressLine("RUNNING", open, ConflictFigures()),
            "RUNNING finetune m1-r0 step 7  loss 0.0000");
}

}  // namespace
}  // namespace gcl::client
