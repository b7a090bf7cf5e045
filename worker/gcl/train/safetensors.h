// The safetensors layout (huggingface/safetensors), readable from Python
// without pickle: 8-byte little-endian header length N, N bytes of JSON
//   {"__metadata__": {"k": "v", ...},
//    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
// padded with spaces to a multiple of 8, then the raw little-endian tensor
// bytes (offsets relative to the end of the header, back to back in the
// order given). Dtypes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL.
// Also the atomic file write used by every artifact of the core.
#pragma once

#include <torch/types.h>

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace gcl::core {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// Writes `bytes` to path.tmp, fsyncs it, renames it over `path` and fsyncs
// the directory, so `path` is either the old or the complete new file. The
// temporary is removed on failure.
absl::Status WriteFileAtomic(const std::string& path, std::string_view bytes);

// Whole file contents; kNotFound when missing, kDataLoss on a read error.
absl::StatusOr<std::string> ReadFileBytes(const std::string& path);

// The file image. Tensors may be on any device and non-contiguous; they are
// copied to host order. kInvalidArgument for duplicate/empty names, the name
// "__metadata__", undefined tensors or an unsupported dtype.
absl::StatusOr<std::string> SerializeSafetensors(
    const NamedTensors& tensors, const std::map<std::string, std::string>& metadata);

struct ParsedSafetensors {
  NamedTensors tensors;  // CPU, in data-offset order (= write order)
  std::map<std::string, std::string> metadata;
};

// Parses and validates a file image: header bounds, JSON, known dtypes,
// byte counts = numel · element size, and data ranges that tile the data
// section exactly (so a truncated or padded file is rejected). Every error is
// kDataLoss naming `source`.
absl::StatusOr<ParsedSafetensors> ParseSafetensors(std::string_view bytes,
                                                   const std::string& source);

// SerializeSafetensors + WriteFileAtomic.
absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata);

// ReadFileBytes + ParseSafetensors (tensors only).
absl::StatusOr<NamedTensors> ReadSafetensors(const std::string& path);

}  // namespace gcl::core
