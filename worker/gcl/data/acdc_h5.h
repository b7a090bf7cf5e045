// ACDC in the SSL4MIS HDF5 layout (format "acdc-h5", architecture.md section 4):
//   path/data/patientNNN_frame0F.h5          whole volume: /image float32 (z, H, W), /label uint8
//   path/data/patientNNN_frame0F_slice_K.h5  one slice:    /image (H, W), /label; K = 1..n in z order
//   path/{train,val,test}.list               one volume id per line
// frame01 = ED (phase 0), frame02 = ES (phase 1). No voxel spacing is stored.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/gcl/data/volume.h"

namespace gcl::core {

// ACDC's classes in label order.
std::vector<std::string> AcdcClassNames();  // {"background", "RV", "Myo", "LV"}

// Reads one HDF5 file's /image (any numeric type, as float32) and /label (as
// int64; a file without /label gives an undefined label). `expected_rank` is 3
// for volume files, 2 for slice files. Errors name `path`: kNotFound (missing
// file), kInvalidArgument (not an HDF5 file, no /image dataset, wrong rank,
// label shape != image shape), kDataLoss (read failure, e.g. truncated data).
// HDF5 calls are serialised by a process-wide mutex (libhdf5 serial build is
// not thread-safe); HDF5's automatic error printing is switched off.
absl::Status ReadH5ImageLabel(const std::string& path, int expected_rank, torch::Tensor* image,
                              torch::Tensor* label);

// The files that make up one volume: its volume file, or else its slice
// files ordered by K.
struct AcdcVolumeFiles {
  std::string id;                   // "patient001_frame01"
  std::string volume_file;          // "" when assembled from slices
  std::vector<std::string> slices;  // ordered by K (1-based, contiguous)
};

// Indexes `data_dir` once: volume id -> files. kNotFound when the folder is
// missing; kInvalidArgument when an id's slice numbers are not 1..n.
absl::StatusOr<std::map<std::string, AcdcVolumeFiles>> IndexAcdcDataDir(const std::string& data_dir);

// Reads a list file: one id per line; trims whitespace, skips blank lines and
// '#' comments, drops a trailing ".h5". kNotFound when the file is missing.
absl::StatusOr<std::vector<std::string>> ReadIdList(const std::string& path);

// Reads a volume from its files (volume file, or slices stacked along z).
// id, case_id ("patientNNN"), phase (frame01 -> 0, frame02 -> 1) and source
// are filled in; spacing stays zero.
absl::StatusOr<Volume> ReadAcdcVolume(const AcdcVolumeFiles& files);

}  // namespace gcl::core
