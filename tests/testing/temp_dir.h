// A scratch directory removed at scope exit, and the shared data location.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace gcl::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "gcl_test_XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// ../shared/data as seen from the source tree; empty when absent (tests skip).
inline std::filesystem::path SharedDataDir() {
  const char* env = std::getenv("GCL_SHARED_DATA");
  if (env == nullptr) return {};
  std::filesystem::path p(env);
  std::error_code ec;
  return std::filesystem::is_directory(p, ec) ? std::filesystem::weakly_canonical(p) : std::filesystem::path();
}

}  // namespace gcl::testing
