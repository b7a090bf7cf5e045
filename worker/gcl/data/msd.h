// Medical Segmentation Decathlon layout (format "msd", architecture.md section 4):
// path/dataset.json with
//   "labels":   {"0": "background", "1": "PZ", ...}
//   "modality": {"0": "T2", "1": "ADC"}
//   "training": [{"image": "./imagesTr/x.nii.gz", "label": "./labelsTr/x.nii.gz"}, ...]
// Other keys ("test", "name", ...) are ignored. Multi-channel 4D images (e.g.
// Prostate: T2 + ADC) are read as channel 0 only, i.e. modality "0" (T2 for
// Prostate, which is what spec 2.1 asks for).
// JSON is parsed by a small built-in parser (objects, arrays, strings with
// escapes, numbers, true / false / null); nlohmann-json is not required.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace gcl::core {

struct MsdCase {
  std::string id;     // image file name without .nii.gz, e.g. "prostate_00"
  std::string image;  // absolute or root-joined path
  std::string label;  // "" when the entry has no label
};

struct MsdIndex {
  std::vector<std::string> class_names;  // by label value 0..K-1
  std::vector<std::string> modalities;   // by channel index
  std::vector<MsdCase> cases;            // "training" entries, sorted by id
};

// Parses root/dataset.json. kNotFound when it is missing; kInvalidArgument
// (naming the file) for malformed JSON, missing "labels" / "training", label
// keys that are not 0..K-1, or training entries without "image".
absl::StatusOr<MsdIndex> ReadMsdIndex(const std::string& root);

}  // namespace gcl::core
