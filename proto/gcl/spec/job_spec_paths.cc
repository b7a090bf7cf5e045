#include "gcl/spec/job_spec_paths.h"

#include <filesystem>

#include "absl/strings/str_cat.h"

namespace gcl::spec {
namespace {

namespace fs = std::filesystem;

absl::Status Resolve(const std::string& spec_dir, const char* key, std::string* path) {
  if (path->empty() || fs::path(*path).is_absolute()) return absl::OkStatus();
  if (spec_dir.empty() || !fs::path(spec_dir).is_absolute()) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": relative path '", *path,
                     "' needs the spec file's folder (spec_dir) as an absolute path"));
  }
  *path = (fs::path(spec_dir) / *path).lexically_normal().string();
  return absl::OkStatus();
}

}  // namespace

absl::Status ResolveSpecPaths(const std::string& spec_dir, gcl::v1::JobSpec* spec) {
  gcl::v1::Dataset* d = spec->mutable_dataset();
  if (absl::Status s = Resolve(spec_dir, "dataset.path", d->mutable_path()); !s.ok()) return s;
  if (absl::Status s = Resolve(spec_dir, "dataset.cache_dir", d->mutable_cache_dir()); !s.ok()) {
    return s;
  }
  if (spec->init().has_checkpoint() && spec->init().checkpoint().rfind("c-", 0) != 0) {
    return Resolve(spec_dir, "init.checkpoint", spec->mutable_init()->mutable_checkpoint());
  }
  return absl::OkStatus();
}

}  // namespace gcl::spec
