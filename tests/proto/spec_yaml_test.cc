// Tests for the YAML job spec reader, defaults, presets and validation
// (proto/gcl/spec). Line/column numbers below are counted by hand from the
// YAML literals (1-based).
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gcl/spec/job_spec_validate.h"
#include "gcl/spec/job_spec_yaml.h"
#include "gcl/spec/variants.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::spec {
namespace {

namespace fs = std::filesystem;
using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using v1::JobSpec;

constexpr absl::StatusCode kInvalid = absl::StatusCode::kInvalidArgument;

absl::StatusOr<JobSpec> Parse(const std::string& yaml) { return ParseJobSpecYaml(yaml, "t.yaml"); }

std::string ErrorOf(const std::string& yaml) {
  absl::StatusOr<JobSpec> r = Parse(yaml);
  EXPECT_FALSE(r.ok()) << "parsed unexpectedly:\n" << yaml;
  EXPECT_EQ(r.status().code(), kInvalid) << r.status();
  return std::string(r.status().message());
}

// A minimal valid pre-training spec to which tests append or replace keys.
const char kMinimalPretrain[] =
    "kind: pretrain\n"
    "dataset: {format: synthetic, image_size: 64}\n";

TEST(SpecYamlTest, ArchitectureExampleParsesVerbatim) {
  const std::string yaml =
      "name: acdc-gcl\n"
      "kind: pretrain            # pretrain | finetune | experiment\n"
      "dataset: {format: acdc-h5, path: /data/ACDC, image_size: 128, split: {test: test.list, "
      "val: val.list}}\n"
      "meta_labels: [patient, position, phase]\n"
      "method: {image: true, pixel: true, combine: grad_mitigator, grad_filter: true, ema_beta: "
      "0.01, pool_k: 10, tau: 0.1}\n"
      "train: {steps: 2000, batch: 32, lr: 0.1, optimizer: sgd, schedule: cosine, seed: 1}\n"
      "resources: {devices: 1, device_type: auto}   # auto | cuda | cpu\n"
      "priority: 0\n"
      "max_attempts: 3\n";
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec spec, Parse(yaml));
  EXPECT_EQ(spec.name(), "acdc-gcl");
  EXPECT_EQ(spec.kind(), v1::KIND_PRETRAIN);
  EXPECT_EQ(spec.dataset().format(), v1::FORMAT_ACDC_H5);
  EXPECT_EQ(spec.dataset().path(), "/data/ACDC");
  EXPECT_EQ(spec.dataset().image_size(), 128);
  EXPECT_EQ(spec.dataset().split().test(), "test.list");
  EXPECT_EQ(spec.dataset().split().val(), "val.list");
  EXPECT_EQ(spec.dataset().split().train(), "");
  EXPECT_THAT(spec.meta_labels(),
              ElementsAre(v1::META_LABEL_PATIENT, v1::META_LABEL_POSITION, v1::META_LABEL_PHASE));
  EXPECT_TRUE(spec.method().image());
  EXPECT_TRUE(spec.method().pixel());
  EXPECT_EQ(spec.method().combine(), v1::COMBINE_GRAD_MITIGATOR);
  EXPECT_TRUE(spec.method().grad_filter());
  EXPECT_DOUBLE_EQ(spec.method().ema_beta(), 0.01);
  EXPECT_EQ(spec.method().pool_k(), 10);
  EXPECT_DOUBLE_EQ(spec.method().tau(), 0.1);
  EXPECT_EQ(spec.train().steps(), 2000);
  EXPECT_EQ(spec.train().batch(), 32);
  EXPECT_DOUBLE_EQ(spec.train().lr(), 0.1);
  EXPECT_EQ(spec.train().optimizer(), v1::OPTIMIZER_SGD);
  EXPECT_EQ(spec.train().schedule(), v1::SCHEDULE_COSINE);
  EXPECT_EQ(spec.train().seed(), 1u);
  EXPECT_EQ(spec.resources().devices(), 1);
  EXPECT_EQ(spec.resources().device_type(), v1::DEVICE_TYPE_AUTO);
  EXPECT_EQ(spec.priority(), 0);
  EXPECT_EQ(spec.max_attempts(), 3);
  // Defaults (algorithm spec sections 8, 13).
  EXPECT_EQ(spec.method().variant(), v1::VARIANT_FULL);
  EXPECT_EQ(spec.method().partners(), 4);
  EXPECT_DOUBLE_EQ(spec.method().pixel_weight(), 1.0);
  EXPECT_EQ(spec.method().pace(), v1::PACE_LINEAR);
  EXPECT_DOUBLE_EQ(spec.method().pace_lambda0(), 0.2);
  EXPECT_DOUBLE_EQ(spec.method().pace_gamma(), 1.0);
  EXPECT_EQ(spec.method().granularity(), v1::GRANULARITY_PER_TENSOR);
  EXPECT_EQ(spec.model().base_width(), 16);
  EXPECT_EQ(spec.model().depth(), 5);
  EXPECT_EQ(spec.model().proj_dim(), 128);
  EXPECT_DOUBLE_EQ(spec.train().momentum(), 0.9);
  EXPECT_DOUBLE_EQ(spec.train().weight_decay(), 1e-5);
  EXPECT_DOUBLE_EQ(spec.train().lr_min(), 0.0);
  EXPECT_EQ(spec.train().checkpoint_every(), 100);
  EXPECT_EQ(spec.train().log_every(), 10);
  EXPECT_EQ(spec.train().threads(), 0);
}

fs::path ExamplesDir() {
  if (const char* src = std::getenv("GCL_SOURCE_DIR")) return fs::path(src) / "examples";
  // build-dir/tests/proto/<binary> -> the source tree is next to the build dir.
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  return exe.parent_path().parent_path().parent_path().parent_path() / "examples";
}

TEST(SpecYamlTest, EveryExampleFileParses) {
  const fs::path dir = ExamplesDir();
  if (!fs::is_directory(dir)) GTEST_SKIP() << "no examples folder at " << dir;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() == ".yaml" || entry.path().extension() == ".yml") {
      files.push_back(entry.path());
    }
  }
  EXPECT_GE(files.size(), 4u);
  for (const fs::path& f : files) {
    EXPECT_THAT(ReadJobSpecFile(f.string()), IsOk()) << f;
  }
  // The named examples of the brief exist and say what they promise.
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec pre, ReadJobSpecFile((dir / "pretrain-synthetic.yaml").string()));
  EXPECT_EQ(pre.kind(), v1::KIND_PRETRAIN);
  EXPECT_EQ(pre.dataset().format(), v1::FORMAT_SYNTHETIC);
  EXPECT_EQ(pre.dataset().image_size(), 64);
  EXPECT_EQ(pre.model().base_width(), 8);
  EXPECT_EQ(pre.train().steps(), 200);
  EXPECT_EQ(pre.train().batch(), 16);
  EXPECT_EQ(pre.method().variant(), v1::VARIANT_FULL);
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec ft, ReadJobSpecFile((dir / "finetune-synthetic.yaml").string()));
  EXPECT_EQ(ft.kind(), v1::KIND_FINETUNE);
  EXPECT_TRUE(ft.init().random());
  EXPECT_THAT(ft.labeled_volumes(), ElementsAre(1, 2));
  EXPECT_EQ(ft.repeats(), 2);
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec acdc, ReadJobSpecFile((dir / "acdc-pretrain.yaml").string()));
  EXPECT_EQ(acdc.dataset().format(), v1::FORMAT_ACDC_H5);
  EXPECT_EQ(acdc.dataset().image_size(), 96);
  EXPECT_EQ(acdc.train().steps(), 2000);
  EXPECT_EQ(acdc.train().batch(), 32);
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec acdc_ft, ReadJobSpecFile((dir / "acdc-finetune.yaml").string()));
  EXPECT_EQ(acdc_ft.kind(), v1::KIND_FINETUNE);
  EXPECT_TRUE(acdc_ft.init().has_checkpoint());
}

TEST(SpecYamlTest, UnknownKeyNamesDottedPathAndLine) {
  const std::string msg = ErrorOf(
      "kind: pretrain\n"                          // 1
      "dataset: {format: synthetic}\n"            // 2
      "method:\n"                                 // 3
      "  variant: full\n"                         // 4
      "  pool_kk: 3\n");                          // 5
  EXPECT_THAT(msg, StartsWith("t.yaml:5:3: method.pool_kk: unknown key (allowed: variant, "));
  EXPECT_THAT(msg, HasSubstr("pool_k"));
  EXPECT_THAT(ErrorOf(std::string(kMinimalPretrain) + "foo: 1\n"),
              StartsWith("t.yaml:3:1: foo: unknown key"));
  EXPECT_THAT(ErrorOf("kind: pretrain\ndataset: {format: synthetic, synthetic: {sed: 3}}\n"),
              StartsWith("t.yaml:2:42: dataset.synthetic.sed: unknown key"));
}

TEST(SpecYamlTest, WrongTypesAreRejectedWithLine) {
  const std::string head = kMinimalPretrain;  // 2 lines
  EXPECT_THAT(ErrorOf(head + "train:\n  steps: \"100\"\n"),
              StartsWith("t.yaml:4:10: train.steps: expected an integer, got the string \"100\""));
  EXPECT_THAT(ErrorOf(head + "train: {steps: many}\n"),
              StartsWith("t.yaml:3:16: train.steps: expected an integer, got 'many'"));
  EXPECT_THAT(ErrorOf(head + "train:\n  steps:\nname: x\n"),
              StartsWith("t.yaml:4:3: train.steps: expected an integer, got nothing"));
  EXPECT_THAT(ErrorOf(head + "train: {steps: 1.5}\n"), HasSubstr("train.steps: expected an integer"));
  EXPECT_THAT(ErrorOf(head + "train: {lr: fast}\n"), HasSubstr("train.lr: expected a number"));
  EXPECT_THAT(ErrorOf(head + "train: {seed: -1}\n"),
              HasSubstr("train.seed: expected a non-negative integer"));
  EXPECT_THAT(ErrorOf(head + "method: {image: 5}\n"),
              HasSubstr("method.image: expected true or false, got '5'"));
  // A scalar where a list is expected is not coerced.
  EXPECT_THAT(ErrorOf(head + "meta_labels: patient\n"),
              StartsWith("t.yaml:3:14: meta_labels: expected a list of (patient, position, phase), "
                         "got 'patient'"));
  EXPECT_THAT(ErrorOf(head + "model: [8, 4]\n"),
              StartsWith("t.yaml:3:8: model: expected a map (keys: base_width, depth, proj_dim), got "
                         "a list"));
  EXPECT_THAT(ErrorOf(head + "name: {a: 1}\n"), HasSubstr("name: expected a string, got a map"));
  EXPECT_THAT(ErrorOf(head + "meta_labels: [[patient]]\n"),
              HasSubstr("meta_labels[0]: expected one of: patient, position, phase, got a list"));
  EXPECT_THAT(ErrorOf(head + "priority: 3000000000\n"), HasSubstr("priority: expected an integer"));
  EXPECT_THAT(ErrorOf("- kind\n- pretrain\n"), StartsWith("t.yaml:1:1: expected a map"));
}

TEST(SpecYamlTest, BadEnumValueListsAllowedValues) {
  EXPECT_THAT(ErrorOf(std::string(kMinimalPretrain) + "method: {combine: grad_mitigatr}\n"),
              StartsWith("t.yaml:3:19: method.combine: bad value 'grad_mitigatr' (allowed: mean, "
                         "grad_mitigator, pcgrad)"));
  EXPECT_THAT(ErrorOf("kind: pretrain\ndataset: {format: hdf5}\n"),
              HasSubstr("dataset.format: bad value 'hdf5' (allowed: acdc-h5, acdc, msd, nifti, "
                        "synthetic)"));
  EXPECT_THAT(ErrorOf("kind: unspecified\n"), HasSubstr("kind: bad value 'unspecified'"));
  EXPECT_THAT(ErrorOf(std::string(kMinimalPretrain) + "meta_labels: [patient, age]\n"),
              StartsWith("t.yaml:3:24: meta_labels[1]: bad value 'age'"));
}

TEST(SpecYamlTest, EnumSpellingsMapOntoValueNames) {
  // '-' and '_' and case are interchangeable: "acdc_h5" == "acdc-h5".
  GCL_ASSERT_OK_AND_ASSIGN(
      JobSpec spec, Parse("kind: PRETRAIN\ndataset: {format: acdc_h5, path: x}\n"
                          "method: {combine: grad-mitigator, ema_update: on-modify}\n"));
  EXPECT_EQ(spec.kind(), v1::KIND_PRETRAIN);
  EXPECT_EQ(spec.dataset().format(), v1::FORMAT_ACDC_H5);
  EXPECT_EQ(spec.method().combine(), v1::COMBINE_GRAD_MITIGATOR);
  EXPECT_EQ(spec.method().ema_update(), v1::EMA_UPDATE_ON_MODIFY);
  EXPECT_EQ(YamlEnumName(*v1::Format_descriptor()->FindValueByNumber(v1::FORMAT_ACDC_H5)),
            "acdc-h5");
  EXPECT_EQ(YamlEnumName(*v1::MetaLabel_descriptor()->FindValueByNumber(v1::META_LABEL_PHASE)),
            "phase");
}

TEST(SpecYamlTest, PrecisionAndDeviceType) {
  // docs/gpu.md: train.precision (fp32 when unset) and resources.device_type (auto when unset).
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec plain, Parse(kMinimalPretrain));
  EXPECT_EQ(plain.train().precision(), v1::PRECISION_UNSPECIFIED);
  EXPECT_EQ(plain.resources().device_type(), v1::DEVICE_TYPE_AUTO);
  GCL_ASSERT_OK_AND_ASSIGN(
      JobSpec spec, Parse(std::string(kMinimalPretrain) +
                          "train: {precision: bf16}\nresources: {device_type: cuda}\n"));
  EXPECT_EQ(spec.train().precision(), v1::PRECISION_BF16);
  EXPECT_EQ(spec.resources().device_type(), v1::DEVICE_TYPE_CUDA);
  EXPECT_THAT(ErrorOf(std::string(kMinimalPretrain) + "train: {precision: fp16}\n"),
              HasSubstr("fp32, bf16"));
}

TEST(SpecYamlTest, OutOfRangeValueNamesKeyAndLine) {
  const std::string head = kMinimalPretrain;
  EXPECT_THAT(ErrorOf(head + "method:\n  tau: 0\n"),
              StartsWith("t.yaml:4:3: method.tau: must be in (0, 10], got 0"));
  EXPECT_THAT(ErrorOf(head + "train: {batch: 12}\n"),
              StartsWith("t.yaml:3:9: train.batch: must be divisible by 8"));
  // Without phase a pre-training batch need only be a multiple of 4.
  EXPECT_THAT(Parse(head + "meta_labels: [patient, position]\ntrain: {batch: 12}\n"), IsOk());
  EXPECT_THAT(ErrorOf(head + "model: {depth: 9}\n"),
              StartsWith("t.yaml:3:9: model.depth: must be in [2, 7], got 9"));
  EXPECT_THAT(ErrorOf("kind: pretrain\ndataset: {format: synthetic, image_size: 100}\n"),
              StartsWith("t.yaml:2:30: dataset.image_size: must be divisible by 2^(depth-1) = 16"));
  EXPECT_THAT(ErrorOf(head + "method: {pool_k: 5000}\n"), HasSubstr("method.pool_k: must be in [1, 4096]"));
  EXPECT_THAT(ErrorOf(head + "method: {ema_beta: 1.5}\n"), HasSubstr("method.ema_beta: must be in [0, 1]"));
  EXPECT_THAT(ErrorOf(head + "method: {pace_lambda0: 0}\n"), HasSubstr("method.pace_lambda0: must be in (0, 1]"));
  EXPECT_THAT(ErrorOf(head + "train: {lr: 0}\n"), HasSubstr("train.lr: must be > 0"));
  EXPECT_THAT(ErrorOf(head + "train: {threads: -2}\n"), HasSubstr("train.threads: must be >= 0"));
  EXPECT_THAT(ErrorOf(head + "max_attempts: 0\n"), StartsWith("t.yaml:3:1: max_attempts: must be in [1, 100]"));
  EXPECT_THAT(ErrorOf("kind: finetune\n"                             // 1
                      "dataset: {format: synthetic}\n"               // 2
                      "init: random\n"                               // 3
                      "labeled_volumes:\n"                           // 4
                      "  - 1\n"                                      // 5
                      "  - 0\n"),                                    // 6
              StartsWith("t.yaml:6:5: labeled_volumes[1]: must be >= 1, got 0"));
  // A missing key is reported at its parent's line.
  EXPECT_THAT(ErrorOf("kind: pretrain\n\ndataset:\n  format: acdc-h5\n"),
              StartsWith("t.yaml:3:1: dataset.path: required for format acdc-h5"));
  EXPECT_THAT(ErrorOf("kind: pretrain\ndataset: {format: nifti, path: /d}\nmeta_labels: [phase]\n"),
              StartsWith("t.yaml:3:15: meta_labels[0]: phase is only defined for acdc"));
}

TEST(SpecYamlTest, DuplicateKeyIsAnError) {
  EXPECT_THAT(ErrorOf(std::string(kMinimalPretrain) +
                      "train:\n"          // 3
                      "  steps: 10\n"     // 4
                      "  batch: 8\n"      // 5
                      "  steps: 20\n"),   // 6
              StartsWith("t.yaml:6:3: train.steps: duplicate key"));
  EXPECT_THAT(ErrorOf("kind: pretrain\nkind: finetune\n"), StartsWith("t.yaml:2:1: kind: duplicate key"));
}

TEST(SpecYamlTest, SyntaxErrorHasLine) {
  const std::string msg = ErrorOf(
      "kind: pretrain\n"
      "dataset: {format: synthetic\n"
      "train: {steps: 3}\n");
  EXPECT_THAT(msg, HasSubstr("YAML syntax error"));
  EXPECT_THAT(msg, ::testing::ContainsRegex("^t\\.yaml:[23]:[0-9]+: "));
  const std::string tab = ErrorOf("kind: pretrain\ntrain:\n  steps: 3\n lr: [1\n");
  EXPECT_THAT(tab, ::testing::ContainsRegex("^t\\.yaml:[0-9]+:[0-9]+: YAML syntax error"));
  EXPECT_THAT(ErrorOf(""), HasSubstr("t.yaml: empty job spec"));
  EXPECT_THAT(ErrorOf("kind: pretrain\n---\nkind: finetune\n"), HasSubstr("one job spec per file"));
}

TEST(SpecYamlTest, VariantPresetsFillUnsetFields) {
  auto parse_variant = [](const std::string& variant, const std::string& extra = "") {
    return Parse("kind: pretrain\ndataset: {format: synthetic}\nmethod: {variant: " + variant +
                 extra + "}\n");
  };
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec simclr, parse_variant("simclr"));
  EXPECT_TRUE(simclr.method().image());
  EXPECT_FALSE(simclr.method().pixel());
  EXPECT_TRUE(simclr.meta_labels().empty());
  EXPECT_EQ(simclr.method().combine(), v1::COMBINE_MEAN);

  GCL_ASSERT_OK_AND_ASSIGN(JobSpec m2, parse_variant("single_m2"));
  EXPECT_THAT(m2.meta_labels(), ElementsAre(v1::META_LABEL_POSITION));
  EXPECT_FALSE(m2.method().pixel());

  GCL_ASSERT_OK_AND_ASSIGN(JobSpec naive, parse_variant("multi_naive"));
  EXPECT_THAT(naive.meta_labels(),
              ElementsAre(v1::META_LABEL_PATIENT, v1::META_LABEL_POSITION, v1::META_LABEL_PHASE));
  EXPECT_EQ(naive.method().combine(), v1::COMBINE_MEAN);
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec pcgrad, parse_variant("multi_pcgrad"));
  EXPECT_EQ(pcgrad.method().combine(), v1::COMBINE_PCGRAD);

  GCL_ASSERT_OK_AND_ASSIGN(JobSpec pixcl, parse_variant("pixcl"));
  EXPECT_TRUE(pixcl.method().image());
  EXPECT_TRUE(pixcl.method().pixel());
  EXPECT_EQ(pixcl.method().partners(), 1);
  EXPECT_FALSE(pixcl.method().grad_filter());
  EXPECT_TRUE(pixcl.meta_labels().empty());
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec pixcl_gf, parse_variant("pixcl_gf"));
  EXPECT_TRUE(pixcl_gf.method().grad_filter());
  EXPECT_EQ(pixcl_gf.method().partners(), 1);

  GCL_ASSERT_OK_AND_ASSIGN(JobSpec full, parse_variant("full"));
  EXPECT_TRUE(full.method().pixel());
  EXPECT_TRUE(full.method().grad_filter());
  EXPECT_EQ(full.method().combine(), v1::COMBINE_GRAD_MITIGATOR);
  EXPECT_EQ(full.method().partners(), 4);
  EXPECT_FALSE(full.frozen_encoder());

  // Without phases (nifti) "all meta labels" is patient and position.
  GCL_ASSERT_OK_AND_ASSIGN(
      JobSpec gm, Parse("kind: pretrain\ndataset: {format: nifti, path: d}\nmethod: {variant: multi_gm}\n"));
  EXPECT_THAT(gm.meta_labels(), ElementsAre(v1::META_LABEL_PATIENT, v1::META_LABEL_POSITION));
  EXPECT_EQ(gm.method().combine(), v1::COMBINE_GRAD_MITIGATOR);

  // Explicit keys override the preset.
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec over,
                           parse_variant("pixcl", ", partners: 3, grad_filter: true, image: false"));
  EXPECT_EQ(over.method().partners(), 3);
  EXPECT_TRUE(over.method().grad_filter());
  EXPECT_FALSE(over.method().image());
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec over2, Parse("kind: pretrain\ndataset: {format: synthetic}\n"
                                                "meta_labels: [patient]\n"
                                                "method: {variant: full, grad_filter: false, "
                                                "combine: mean}\n"));
  EXPECT_THAT(over2.meta_labels(), ElementsAre(v1::META_LABEL_PATIENT));
  EXPECT_FALSE(over2.method().grad_filter());
  EXPECT_EQ(over2.method().combine(), v1::COMBINE_MEAN);
  EXPECT_TRUE(over2.method().pixel());

  // full_frozen freezes the encoder at fine-tuning.
  GCL_ASSERT_OK_AND_ASSIGN(
      JobSpec frozen, Parse("kind: finetune\ndataset: {format: synthetic}\n"
                            "init: {job: j-42}\nmethod: {variant: full_frozen}\nlabeled_volumes: [2]\n"));
  EXPECT_TRUE(frozen.frozen_encoder());
  EXPECT_EQ(frozen.init().job(), "j-42");
  EXPECT_EQ(frozen.train().optimizer(), v1::OPTIMIZER_ADAM);
  EXPECT_DOUBLE_EQ(frozen.train().lr(), 1e-3);
  EXPECT_DOUBLE_EQ(frozen.train().lr_min(), 1e-5);
  EXPECT_EQ(frozen.train().batch(), 10);
  EXPECT_EQ(frozen.train().loss(), v1::LOSS_CE_DICE);
  EXPECT_EQ(frozen.train().val_every(), 500);
  EXPECT_EQ(frozen.repeats(), 1);

  EXPECT_THAT(VariantMetaLabels(v1::VARIANT_SINGLE_M3, v1::FORMAT_ACDC_H5),
              ElementsAre(v1::META_LABEL_PHASE));
  EXPECT_TRUE(VariantMetaLabels(v1::VARIANT_RANDOM_INIT, v1::FORMAT_ACDC_H5).empty());
  EXPECT_THAT(ErrorOf("kind: pretrain\ndataset: {format: synthetic}\nmethod: {variant: random_init}\n"),
              StartsWith("t.yaml:3:10: method.variant: random_init has no pre-training"));
}

TEST(SpecYamlTest, FinetuneNeedsInit) {
  EXPECT_THAT(ErrorOf("kind: finetune\ndataset: {format: synthetic}\nlabeled_volumes: [1]\n"),
              HasSubstr("t.yaml: init: required for kind finetune"));
  GCL_ASSERT_OK_AND_ASSIGN(
      JobSpec spec, Parse("kind: finetune\ndataset: {format: synthetic}\ninit: {checkpoint: a/b}\n"
                          "labeled_volumes: [1]\n"));
  EXPECT_EQ(spec.init().checkpoint(), "a/b");
  GCL_ASSERT_OK_AND_ASSIGN(JobSpec rnd, Parse("kind: finetune\ndataset: {format: synthetic}\n"
                                              "init: {random: true}\nlabeled_volumes: [8]\n"));
  EXPECT_TRUE(rnd.init().random());
  EXPECT_THAT(ErrorOf("kind: finetune\ndataset: {format: synthetic}\ninit: {checkpoint: a, job: b}\n"),
              StartsWith("t.yaml:3:23: init.job: give only one of checkpoint, job, random"));
  EXPECT_THAT(ErrorOf("kind: finetune\ndataset: {format: synthetic}\ninit: scratch\n"),
              StartsWith("t.yaml:3:7: init: expected 'random'"));
  EXPECT_THAT(ErrorOf("kind: finetune\ndataset: {format: synthetic}\ninit: {random: false}\n"),
              HasSubstr("init.random: must be true"));
  EXPECT_THAT(ErrorOf(std::string(kMinimalPretrain) + "init: random\n"),
              StartsWith("t.yaml:3:1: init: only for kind finetune"));
  EXPECT_THAT(ErrorOf("dataset: {format: synthetic}\n"), HasSubstr("t.yaml: kind: required"));
  EXPECT_THAT(ErrorOf("kind: finetune\ndataset: {format: synthetic}\ninit: random\n"),
              HasSubstr("t.yaml: labeled_volumes: required for kind finetune"));
}

TEST(SpecYamlTest, ExperimentSpec) {
  GCL_ASSERT_OK_AND_ASSIGN(
      JobSpec spec, Parse("kind: experiment\ndataset: {format: synthetic, image_size: 64}\n"
                          "labeled_volumes: [1, 2, 8]\nrepeats: 5\n"
                          "experiment:\n  variants: [random_init, simclr, full]\n"
                          "  pretrain: {steps: 300}\n  finetune: {steps: 100}\n"));
  EXPECT_THAT(spec.experiment().variants(),
              ElementsAre(v1::VARIANT_RANDOM_INIT, v1::VARIANT_SIMCLR, v1::VARIANT_FULL));
  EXPECT_EQ(spec.experiment().pretrain().steps(), 300);
  EXPECT_EQ(spec.experiment().pretrain().optimizer(), v1::OPTIMIZER_SGD);
  EXPECT_EQ(spec.experiment().pretrain().batch(), 32);
  EXPECT_EQ(spec.experiment().finetune().steps(), 100);
  EXPECT_EQ(spec.experiment().finetune().optimizer(), v1::OPTIMIZER_ADAM);
  EXPECT_EQ(spec.repeats(), 5);
  // Presets are left for the children: nothing variant-specific is filled.
  EXPECT_FALSE(spec.method().has_image());
  EXPECT_FALSE(spec.method().has_partners());
  EXPECT_THAT(ErrorOf("kind: experiment\ndataset: {format: synthetic}\nlabeled_volumes: [1]\n"),
              HasSubstr("experiment.variants: required"));
  EXPECT_THAT(ErrorOf("kind: experiment\ndataset: {format: synthetic}\nlabeled_volumes: [1]\n"
                      "experiment: {variants: [full, full]}\n"),
              StartsWith("t.yaml:4:31: experiment.variants[1]: listed twice"));
}

TEST(SpecValidateTest, ProgrammaticSpecsHaveNoLocation) {
  JobSpec spec;
  spec.set_kind(v1::KIND_PRETRAIN);
  spec.mutable_dataset()->set_format(v1::FORMAT_SYNTHETIC);
  spec.mutable_dataset()->set_image_size(8);
  EXPECT_THAT(ValidateJobSpec(spec),
              StatusIs(kInvalid, "dataset.image_size: must be in [16, 1024], got 8"));
  EXPECT_THAT(std::string(ValidateJobSpec(spec).message()), StartsWith("dataset.image_size"));
  spec.mutable_dataset()->set_image_size(64);
  EXPECT_THAT(ValidateJobSpec(spec), IsOk());  // unset fields are not range-checked
  ASSERT_THAT(ApplyDefaults(&spec), IsOk());
  EXPECT_THAT(ValidateJobSpec(spec), IsOk());
  // ApplyDefaults is idempotent.
  JobSpec again = spec;
  ASSERT_THAT(ApplyDefaults(&again), IsOk());
  EXPECT_EQ(again.SerializeAsString(), spec.SerializeAsString());
}

TEST(SpecValidateTest, ApplyDefaultsNeedsKind) {
  JobSpec empty;
  EXPECT_THAT(ApplyDefaults(&empty), StatusIs(kInvalid, "kind: required"));
}

TEST(VariantsTest, NamesRoundTrip) {
  const auto& type = *v1::Variant_descriptor();
  for (int i = 1; i < type.value_count(); ++i) {
    const auto v = static_cast<v1::Variant>(type.value(i)->number());
    GCL_ASSERT_OK_AND_ASSIGN(v1::Variant parsed, ParseVariant(VariantName(v)));
    EXPECT_EQ(parsed, v);
  }
  EXPECT_EQ(VariantName(v1::VARIANT_MULTI_GM), "multi_gm");
  EXPECT_EQ(VariantName(v1::VARIANT_PIXCL_GF), "pixcl_gf");
  EXPECT_THAT(ParseVariant("gcl"), StatusIs(kInvalid, "allowed: random_init, simclr, single_m1"));
}

TEST(SpecFileTest, ReadJobSpecFile) {
  EXPECT_THAT(ReadJobSpecFile("/nonexistent/job.yaml"),
              StatusIs(absl::StatusCode::kNotFound, "/nonexistent/job.yaml"));
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "job.yaml").string();
  {
    std::ofstream out(path);
    out << "kind: pretrain\ndataset: {format: synthetic}\ntrain: {stepz: 3}\n";
  }
  EXPECT_THAT(ReadJobSpecFile(path), StatusIs(kInvalid, path + ":3:9: train.stepz: unknown key"));
}

}  // namespace
}  // namespace gcl::spec
