// NVIDIA GPU discovery for gcl-worker without LibTorch (the agent must not
// link it): runs
//   nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits
// and turns its lines into gcl.v1.Device entries "cuda:<index>" (type CUDA,
// the GPU's name, memory.total MiB as bytes). The index is nvidia-smi's,
// i.e. PCI bus order: ranks are pinned with CUDA_VISIBLE_DEVICES=<index>
// and CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA counts the same way.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "gcl/v1/job.pb.h"

namespace gcl::agent {

// The command line run (for error messages and docs).
inline constexpr char kNvidiaSmiQuery[] =
    "nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits";

struct GpuInfo {
  int index = 0;         // nvidia-smi's (PCI bus order)
  std::string uuid;      // "GPU-..."
  std::string name;      // e.g. "NVIDIA H100 80GB HBM3"
  int64_t memory_bytes = 0;  // 0 when nvidia-smi reports "[N/A]"
};

// Parses nvidia-smi's CSV (one GPU a line, "index, uuid, name, memory MiB";
// a name may itself hold ", "). Blank lines are skipped. kInvalidArgument
// naming the command, the 1-based line and the line itself for anything
// else: too few fields, a non-integer or repeated index, a uuid that is not
// "GPU-...", a memory that is neither an integer nor "[N/A]"-like.
absl::StatusOr<std::vector<GpuInfo>> ParseNvidiaSmiOutput(absl::string_view output);

// What --gpus asks for: "auto" (every GPU nvidia-smi lists), "none" (no
// discovery) or a comma-separated list of nvidia-smi indices ("0,2").
struct GpuRequest {
  enum class Mode { kAuto, kNone, kList };
  Mode mode = Mode::kAuto;
  std::vector<int> indices;  // kList only, as given
};
// kInvalidArgument naming the flag value when it is none of the three forms.
absl::StatusOr<GpuRequest> ParseGpuRequest(absl::string_view flag);

// The GPUs to offer: `gpus` narrowed to `request`'s indices (each must be
// listed, else kInvalidArgument) and to an inherited CUDA_VISIBLE_DEVICES
// (`visible`; null = unset = no restriction). Its entries are indices
// (taken as nvidia-smi's) or (prefixes of) "GPU-" uuids, as CUDA accepts
// them; "" or a negative index ends the list (CUDA's rule: no GPU after
// it). An entry naming no listed GPU (e.g. a "MIG-" id, which cannot be
// pinned by index) is kInvalidArgument. A --gpus index hidden by
// CUDA_VISIBLE_DEVICES is kInvalidArgument too.
absl::StatusOr<std::vector<GpuInfo>> SelectGpus(std::vector<GpuInfo> gpus, const GpuRequest& request,
                                                const char* visible);

// "cuda:<index>" devices, in the order given.
std::vector<gcl::v1::Device> ToDevices(const std::vector<GpuInfo>& gpus);

// Finds nvidia-smi on $PATH and runs the query. `found` (may be null) tells
// whether the binary exists. No binary: an empty list (no GPUs), not an
// error. A binary that cannot run, exits non-zero or prints lines
// ParseNvidiaSmiOutput refuses: kFailedPrecondition / kInvalidArgument
// naming the command (and its first output line or the bad line); one that
// does not answer within timeout_s (a hung driver) is killed and
// kDeadlineExceeded, so the agent's start-up never hangs on it.
absl::StatusOr<std::vector<GpuInfo>> QueryNvidiaSmi(bool* found, int timeout_s = 30);

// The GPUs gcl-worker offers for --gpus `request`: none for kNone (no
// nvidia-smi run); else QueryNvidiaSmi narrowed by SelectGpus with
// `visible` (CUDA_VISIBLE_DEVICES). A missing nvidia-smi is no GPUs for
// kAuto (one line to `log`) and kFailedPrecondition for a list. `log` also
// gets one line naming the GPUs found.
absl::StatusOr<std::vector<GpuInfo>> DiscoverGpus(const GpuRequest& request, const char* visible,
                                                  const std::function<void(const std::string&)>& log);

}  // namespace gcl::agent
