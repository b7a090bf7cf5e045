// Relative paths in a job spec are relative to the spec file's folder on the
// machine that read it. A spec that travels (gclctl -> coordinator -> worker)
// gets them made absolute first, against the submitter's folder.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "gcl/v1/spec.pb.h"

namespace gcl::spec {

// Makes dataset.path, dataset.cache_dir and init.checkpoint (unless it is a
// checkpoint id "c-...") absolute against spec_dir and normalises them.
// kInvalidArgument when a relative path is present and spec_dir is not an
// absolute folder.
absl::Status ResolveSpecPaths(const std::string& spec_dir, gcl::v1::JobSpec* spec);

}  // namespace gcl::spec
