// TokenFile: the token read from a file, reloaded, and kept when the file
// goes wrong (unreadable, empty, two lines) -- each error named with the
// flag and the path.
#include "worker/agent/token_file.h"

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl::agent {
namespace {

using ::gcl::testing::StatusIs;

TEST(TokenFileTest, ReadsReloadsAndKeepsTheTokenOnAnError) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "worker.token").string();
  EXPECT_THAT(TokenFile::Open(path),
              StatusIs(absl::StatusCode::kNotFound, "--token-file " + path + ": cannot read"));
  std::ofstream(path) << "  w0rk3r\n";
  GCL_ASSERT_OK_AND_ASSIGN(TokenFile file, TokenFile::Open(path));
  EXPECT_EQ(file.token(), "w0rk3r");
  GCL_ASSERT_OK_AND_ASSIGN(bool changed, file.Reload());
  EXPECT_FALSE(changed);

  std::ofstream(path) << "\n";
  EXPECT_THAT(file.Reload(), StatusIs(absl::StatusCode::kInvalidArgument,
                                      "--token-file " + path + ": empty"));
  std::ofstream(path) << "one\ntwo\n";
  EXPECT_THAT(file.Reload(),
              StatusIs(absl::StatusCode::kInvalidArgument, "more than one line (one token expected)"));
  std::filesystem::remove(path);
  EXPECT_THAT(file.Reload(), StatusIs(absl::StatusCode::kNotFound, "cannot read"));
  EXPECT_EQ(file.token(), "w0rk3r");  // each error kept the token

  std::ofstream(path) << "n3w-w0rk3r\n";
  GCL_ASSERT_OK_AND_ASSIGN(changed, file.Reload());
  EXPECT_TRUE(changed);
  EXPECT_EQ(file.token(), "n3w-w0rk3r");
}

}  // namespace
}  // namespace gcl::agent
