// Tests for ResolveSpecPaths: the paths a travelling spec carries.
#include "gcl/spec/job_spec_paths.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace gcl::spec {
namespace {

using ::gcl::testing::IsOk;
using ::gcl::testing::StatusIs;

TEST(ResolveSpecPathsTest, RelativePathsBecomeAbsoluteAgainstTheSpecFolder) {
  v1::JobSpec spec;
  spec.mutable_dataset()->set_path("../data/ACDC");
  spec.mutable_dataset()->set_cache_dir("cache");
  spec.mutable_init()->set_checkpoint("runs/pre/step-00000010.ckpt");
  ASSERT_THAT(ResolveSpecPaths("/home/lab/specs", &spec), IsOk());
  EXPECT_EQ(spec.dataset().path(), "/home/lab/data/ACDC");
  EXPECT_EQ(spec.dataset().cache_dir(), "/home/lab/specs/cache");
  EXPECT_EQ(spec.init().checkpoint(), "/home/lab/specs/runs/pre/step-00000010.ckpt");
}

TEST(ResolveSpecPathsTest, AbsolutePathsAndCheckpointIdsStay) {
  v1::JobSpec spec;
  spec.mutable_dataset()->set_path("/data/ACDC");
  spec.mutable_init()->set_checkpoint("c-00000000002a");
  ASSERT_THAT(ResolveSpecPaths("", &spec), IsOk());
  EXPECT_EQ(spec.dataset().path(), "/data/ACDC");
  EXPECT_EQ(spec.dataset().cache_dir(), "");
  EXPECT_EQ(spec.init().checkpoint(), "c-00000000002a");
}

TEST(ResolveSpecPathsTest, RelativePathWithoutAnAbsoluteFolderIsRefusedNamingTheKey) {
  v1::JobSpec spec;
  spec.mutable_dataset()->set_path("data");
  EXPECT_THAT(ResolveSpecPaths("", &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, "dataset.path: relative path 'data'"));
  EXPECT_THAT(ResolveSpecPaths("specs", &spec), StatusIs(absl::StatusCode::kInvalidArgument, "needs the spec file"));
}

}  // namespace
}  // namespace gcl::spec
