// Dataset loading: one entry point for every on-disk format (architecture.md
// section 4), returning preprocessed train / val / test volumes (spec 2.1, 2.2).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/gcl/data/volume.h"

namespace gcl::core {

// Consumed by GenerateSyntheticVolumes (synthetic.h).
struct SyntheticOptions {
  int64_t patients = 12;
  int64_t slices = 8;
  int64_t size = 96;
  uint64_t seed = 1;
};

struct DatasetOptions {
  // "acdc-h5" | "nifti" | "msd" | "synthetic".
  std::string format;
  // Dataset root (unused for "synthetic").
  std::string path;
  // Output slices are image_size x image_size (PreprocessVolume).
  int64_t image_size = 96;
  // Split lists, relative to `path`; one volume id per line ("patient099_frame01";
  // a trailing ".h5" / ".nii.gz" is ignored, blank lines and '#' comments too).
  // acdc-h5: all three are required.
  // nifti / msd: optional. When val_list or test_list exists under `path`, the
  // lists define the split (train = train_list if it exists, else every volume
  // not in val/test); otherwise the last cases go to val/test (see below).
  std::string train_list = "train.list";
  std::string val_list = "val.list";
  std::string test_list = "test.list";
  // Slice cache folder (slice_cache.h); empty: no cache. Not used for "synthetic"
  // (generating is as cheap as reading a cache).
  std::string cache_dir;
  SyntheticOptions synthetic;
  // synthetic / nifti / msd without lists: the last test_cases cases (sorted by
  // case id) are test, the val_cases before them are val; all volumes of a case
  // (ED and ES) stay in the same split.
  int64_t val_cases = 2;
  int64_t test_cases = 2;
};

struct Dataset {
  std::vector<Volume> train, val, test;  // preprocessed (preprocess.h)
  // [0] = "background". acdc-h5 / synthetic: background, RV, Myo, LV.
  // msd: from dataset.json "labels". nifti: "background", "label_<v>" per
  // label value v found (values are remapped to 0..K-1 only when they are not
  // already contiguous; see nifti_io.h).
  std::vector<std::string> class_names;
  bool has_phase = false;  // every volume has phase 0 or 1

  int64_t num_classes() const { return static_cast<int64_t>(class_names.size()); }
};

// Reads, splits and preprocesses a dataset. Errors (never a crash): kNotFound
// for missing folders, lists or files; kInvalidArgument for unknown formats,
// malformed files and shape mismatches; kDataLoss for truncated or corrupt
// data. Every message names the offending file.
absl::StatusOr<Dataset> LoadDataset(const DatasetOptions& options);

}  // namespace gcl::core
