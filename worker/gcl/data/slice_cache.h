// On-disk cache of a preprocessed Dataset, so a repeated LoadDataset does not
// decode HDF5 / NIfTI again.
//
// Key: sha256 over (kSliceCacheVersion, format, absolute dataset path,
// image_size, split options, list file contents, and size + mtime of every
// source file) built by the caller with SliceCacheKey. Entry file:
// <cache_dir>/<key>.gclcache =
//   "GCLCACHE <version>\n" "<sha256 hex of payload>\n" payload
// where payload = torch::pickle_save of the dataset (labels stored as uint8
// when they fit). Writes go to a temporary file in cache_dir and are renamed
// into place (atomic). A missing entry is kNotFound; a corrupt or foreign one
// (bad header, checksum, pickle or layout) is kDataLoss, which LoadDataset
// treats as a miss and overwrites.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/gcl/data/dataset.h"

namespace gcl::core {

// Bump when the entry layout or the preprocessing changes.
inline constexpr int kSliceCacheVersion = 1;

// "<absolute path>|<size>|<mtime ns>" of a file; kNotFound when missing.
absl::StatusOr<std::string> FileFingerprint(const std::string& path);

// Hex sha256 of the version and `parts` (length-prefixed, so the split between
// parts matters).
std::string SliceCacheKey(const std::vector<std::string>& parts);

// <cache_dir>/<key>.gclcache
std::string SliceCachePath(const std::string& cache_dir, const std::string& key);

// Writes `dataset` to `path` atomically (creating the folder).
absl::Status SaveDatasetCache(const std::string& path, const Dataset& dataset);

// Reads an entry written by SaveDatasetCache.
absl::StatusOr<Dataset> LoadDatasetCache(const std::string& path);

}  // namespace gcl::core
