// WriteFileReplacing: whole replacements, the mode of a new file, errors
// naming the file.
#include "gcl/base/write_file.h"

#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/temp_dir.h"

namespace gcl {
namespace {

using ::gcl::testing::StatusIs;

std::string Read(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(WriteFileReplacingTest, ReplacesTheWholeFileWithTheModeAsked) {
  gcl::testing::TempDir dir;
  const std::filesystem::path path = dir.path() / "key.pem";
  ASSERT_TRUE(WriteFileReplacing(path.string(), "first, longer content\n", 0600).ok());
  EXPECT_EQ(Read(path), "first, longer content\n");
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_TRUE(WriteFileReplacing(path.string(), "second\n", 0600).ok());
  EXPECT_EQ(Read(path), "second\n");
  EXPECT_FALSE(std::filesystem::exists(path.string() + ".tmp"));
}

TEST(WriteFileReplacingTest, ErrorsNameTheFile) {
  gcl::testing::TempDir dir;
  const std::string path = (dir.path() / "missing" / "out.json").string();
  EXPECT_THAT(WriteFileReplacing(path, "x"),
              StatusIs(absl::StatusCode::kUnavailable,
                       "cannot write " + path + ".tmp: No such file or directory"));
  // A folder where the file should go: written, but cannot replace it.
  const std::filesystem::path folder = dir.path() / "taken";
  std::filesystem::create_directory(folder);
  std::filesystem::create_directory(folder / "sub");
  EXPECT_THAT(WriteFileReplacing(folder.string(), "x"),
              StatusIs(absl::StatusCode::kUnavailable, "cannot rename " + folder.string() + ".tmp to"));
}

}  // namespace
}  // namespace gcl
