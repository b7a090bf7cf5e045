// NVIDIA GPU discovery for gcl-worker without LibTorch (the agent must not
// link it): runs
//   nvidia-smi --query-gpu=index,uuid,name,memory.total,mig.mode.current
//              --format=csv,noheader,nounits
// and turns its lines into gcl.v1.Device entries "cuda:<index>" (type CUDA,
// the GPU's name, memory.total MiB as bytes). The index is nvidia-smi's,
// i.e. PCI bus order: ranks are pinned with CUDA_VISIBLE_DEVICES=<index>
// and CUDA_DEVICE_ORDER=PCI_BUS_ID so that CUDA counts the same way.
//
// Then `nvidia-smi -L`: a GPU split into MIG instances is offered as its
// instances instead, "cuda:<index>/mig<k>" (k: nvidia-smi's MIG device
// number), each pinned with CUDA_VISIBLE_DEVICES=<its MIG- uuid>, since CUDA
// cannot use a MIG-enabled GPU as a whole. A GPU in MIG mode without
// instances is not offered at all.
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
inline constexpr char kNvidiaSmiQueryArgs[] =
    "--query-gpu=index,uuid,name,memory.total,mig.mode.current";
inline constexpr char kNvidiaSmiQuery[] =
    "nvidia-smi --query-gpu=index,uuid,name,memory.total,mig.mode.current "
    "--format=csv,noheader,nounits";

inline constexpr char kNvidiaSmiList[] = "nvidia-smi -L";

// A whole GPU, or one MIG instance of it (mig_device >= 0).
struct GpuInfo {
  int index = 0;             // nvidia-smi's (PCI bus order); the parent GPU's for MIG
  std::string uuid;          // "GPU-..."; the parent GPU's for MIG
  std::string name;          // e.g. "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB MIG 3g.20gb"
  int64_t memory_bytes = 0;  // 0 when unknown; for MIG, the profile's "<N>gb" as GiB
  int mig_device = -1;       // nvidia-smi's MIG device number, -1 for a whole GPU
  std::string mig_uuid;      // "MIG-..." for MIG
  bool mig_enabled = false;  // the GPU is in MIG mode (mig.mode.current "Enabled")
};

// "cuda:<index>" or "cuda:<index>/mig<k>".
std::string DeviceId(const GpuInfo& gpu);
// The CUDA_VISIBLE_DEVICES value that pins a process to `gpu`: its index or
// its MIG uuid.
std::string CudaPin(const GpuInfo& gpu);

// Parses nvidia-smi's CSV (one GPU a line, "index, uuid, name, memory MiB,
// MIG mode"; a name may itself hold ", "). Blank lines are skipped.
// kInvalidArgument naming the command, the 1-based line and the line itself
// for anything else: too few fields, a non-integer or repeated index, a uuid
// that is not "GPU-...", a memory that is neither an integer nor
// "[N/A]"-like, a MIG mode that is none of Enabled, Disabled, "[N/A]"-like.
absl::StatusOr<std::vector<GpuInfo>> ParseNvidiaSmiOutput(absl::string_view output);

// Applies `nvidia-smi -L` to `gpus`: every GPU with MIG instances listed is
// replaced, in place, by its instances. Only "GPU <index>: ..." lines and the
// "MIG <profile> Device <k>: (UUID: MIG-...)" lines under them count; others
// are ignored. kInvalidArgument naming the command and the line for a MIG
// line outside a GPU, without a device number or uuid, or under a GPU the
// CSV query did not list.
absl::StatusOr<std::vector<GpuInfo>> ApplyMigInstances(std::vector<GpuInfo> gpus,
                                                       absl::string_view list_output);

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
// listed, else kInvalidArgument; an index selects all MIG instances of its
// GPU) and to an inherited CUDA_VISIBLE_DEVICES (`visible`; null = unset =
// no restriction). Its entries are indices (taken as nvidia-smi's) or
// (prefixes of) "GPU-" or "MIG-" uuids, as CUDA accepts them; "" or a
// negative index ends the list (CUDA's rule: no GPU after it). An entry
// naming no listed GPU or MIG instance, or a prefix matching several, is
// kInvalidArgument. A --gpus index hidden by CUDA_VISIBLE_DEVICES is
// kInvalidArgument too.
absl::StatusOr<std::vector<GpuInfo>> SelectGpus(std::vector<GpuInfo> gpus, const GpuRequest& request,
                                                const char* visible);

// DeviceId() devices, in the order given.
std::vector<gcl::v1::Device> ToDevices(const std::vector<GpuInfo>& gpus);

// Finds nvidia-smi on $PATH, runs the query and then `nvidia-smi -L`
// (ApplyMigInstances). `found` (may be null) tells
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
// kAuto (one line to `log`) and kFailedPrecondition for a list. A GPU in
// MIG mode without instances is left out with a line to `log` (kAuto) or is
// kFailedPrecondition (a list naming it). `log` also gets one line naming
// the GPUs offered.
absl::StatusOr<std::vector<GpuInfo>> DiscoverGpus(const GpuRequest& request, const char* visible,
                                                  const std::function<void(const std::string&)>& log);

}  // namespace gcl::agent
