#include "worker/agent/spec_yaml_writer.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gcl/spec/job_spec_yaml.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace gcl::agent {
namespace {

using ::testing::HasSubstr;

std::filesystem::path SourceDir() {
  const char* env = std::getenv("GCL_SOURCE_DIR");
  return env != nullptr ? std::filesystem::path(env) : std::filesystem::path(".");
}

void ExpectRoundTrip(const gcl::v1::JobSpec& spec, const std::string& what) {
  const std::string yaml = JobSpecToYaml(spec);
  auto back = spec::ParseJobSpecYaml(yaml, "agent.yaml");
  ASSERT_TRUE(back.ok()) << what << ": " << back.status() << "\n" << yaml;
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(spec, *back)) << what << ":\n" << diff << "\n" << yaml;
}

TEST(SpecYamlWriterTest, RoundTripsEveryExampleSpec) {
  const auto examples = SourceDir() / "examples";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(examples)) {
    if (e.path().extension() != ".yaml") continue;
    std::ifstream in(e.path());
    std::stringstream text;
    text << in.rdbuf();
    auto spec = spec::ParseJobSpecYaml(text.str(), e.path().string());
    if (!spec.ok()) continue;  // not a job spec this parser accepts
    ++n;
    ExpectRoundTrip(*spec, e.path().filename().string());
  }
  EXPECT_GE(n, 3) << "examples in " << examples;
}

TEST(SpecYamlWriterTest, SpellsEnumsStringsAndDoublesAsTheParserExpects) {
  GCL_ASSERT_OK_AND_ASSIGN(auto spec, spec::ParseJobSpecYaml(R"(
name: quoted-path
kind: pretrain
dataset:
  format: acdc-h5
  path: "data/a \"quoted\" path: with colon"
method:
  variant: full
  combine: grad_mitigator
  ema_beta: 0.1
  tau: 0.07
train:
  steps: 20
  lr: 0.30000000000000004
)", "x.yaml"));
  const std::string yaml = JobSpecToYaml(spec);
  EXPECT_THAT(yaml, HasSubstr("format: acdc-h5\n"));
  EXPECT_THAT(yaml, HasSubstr("combine: grad_mitigator\n"));
  EXPECT_THAT(yaml, HasSubstr("kind: pretrain\n"));
  EXPECT_THAT(yaml, HasSubstr("  path: \"data/a \\\"quoted\\\" path: with colon\"\n"));
  EXPECT_THAT(yaml, HasSubstr("  tau: 0.07\n"));
  EXPECT_THAT(yaml, HasSubstr("  lr: 0.30000000000000004\n"));
  EXPECT_THAT(yaml, HasSubstr("meta_labels: [patient, position, phase]\n"));
  ExpectRoundTrip(spec, "inline");
}

TEST(SpecYamlWriterTest, EmptyMessagesAndListsRoundTrip) {
  gcl::v1::JobSpec spec;
  spec.set_kind(gcl::v1::KIND_FINETUNE);
  spec.mutable_dataset()->set_format(gcl::v1::FORMAT_SYNTHETIC);
  spec.mutable_init()->set_random(true);
  spec.add_labeled_volumes(1);
  spec.add_labeled_volumes(4);
  spec.mutable_output();  // present but empty
  const std::string yaml = JobSpecToYaml(spec);
  EXPECT_THAT(yaml, HasSubstr("labeled_volumes: [1, 4]\n"));
  EXPECT_THAT(yaml, HasSubstr("output: {}\n"));
  EXPECT_THAT(yaml, HasSubstr("init:\n  random: true\n"));
  // The parser fills defaults: compare defaulted with defaulted.
  GCL_ASSERT_OK_AND_ASSIGN(auto parsed, spec::ParseJobSpecYaml(yaml, "y.yaml"));
  ExpectRoundTrip(parsed, "defaulted");
  EXPECT_EQ(parsed.labeled_volumes_size(), 2);
  EXPECT_EQ(parsed.dataset().format(), gcl::v1::FORMAT_SYNTHETIC);
}

}  // namespace
}  // namespace gcl::agent
