#include "worker/gcl/train/device_placement.h"

#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include "absl/strings/str_cat.h"
#include "worker/gcl/model/memory_format.h"

// LibTorch 2.4 replaced the per-backend autocast calls (set_enabled,
// set_cpu_enabled, set_autocast_gpu_dtype, ...) by ones taking the device
// type; 2.x still has the old ones deprecated, later releases may not.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define GCL_AUTOCAST_BY_DEVICE_TYPE 1
#else
#define GCL_AUTOCAST_BY_DEVICE_TYPE 0
#endif

namespace gcl::core {
namespace {

bool AutocastEnabled(c10::DeviceType type) {
#if GCL_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled()
                                       : at::autocast::is_cpu_enabled();
#endif
}

void SetAutocastEnabled(c10::DeviceType type, bool enabled) {
#if GCL_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_enabled(type, enabled);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_cpu_enabled(enabled);
  }
#endif
}

at::ScalarType AutocastDtype(c10::DeviceType type) {
#if GCL_AUTOCAST_BY_DEVICE_TYPE
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype()
                                       : at::autocast::get_autocast_cpu_dtype();
#endif
}

void SetAutocastDtype(c10::DeviceType type, at::ScalarType dtype) {
#if GCL_AUTOCAST_BY_DEVICE_TYPE
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

}  // namespace

absl::StatusOr<TrainDevice> ParseTrainDevice(std::string_view name) {
  if (name == "cpu") return TrainDevice::kCpu;
  if (name == "cuda") return TrainDevice::kCuda;
  if (name == "auto") return TrainDevice::kAuto;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown device \"", std::string(name), "\" (cpu | cuda | auto)"));
}

absl::StatusOr<Precision> ParsePrecision(std::string_view name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown precision \"", std::string(name), "\" (fp32 | bf16)"));
}

std::string TrainDeviceName(TrainDevice device) {
  switch (device) {
    case TrainDevice::kCpu: return "cpu";
    case TrainDevice::kCuda: return "cuda";
    case TrainDevice::kAuto: return "auto";
  }
  return "?";
}

std::string PrecisionName(Precision precision) {
  return precision == Precision::kBf16 ? "bf16" : "fp32";
}

bool CudaAvailable() { return torch::cuda::is_available(); }

absl::StatusOr<DevicePlacement> DevicePlacement::Create(const DeviceOptions& options) {
  DevicePlacement p;
  p.precision_ = options.precision;
  p.channels_last_ = options.channels_last;
  const bool want_cuda =
      options.device == TrainDevice::kCuda || (options.device == TrainDevice::kAuto && CudaAvailable());
  if (!want_cuda) return p;
  if (!CudaAvailable()) {
    return absl::FailedPreconditionError(
        "device cuda: no CUDA device is visible (a CPU-only LibTorch, no driver, or "
        "CUDA_VISIBLE_DEVICES empty); use resources.device_type: cpu or auto");
  }
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (options.cuda_index < 0 || options.cuda_index >= count) {
    return absl::FailedPreconditionError(absl::StrCat("device cuda:", options.cuda_index, ": only ",
                                                      count, " CUDA device(s) visible"));
  }
  p.device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(options.cuda_index));
  // Training shapes are fixed, so the autotuner's first-step search pays off.
  at::globalContext().setBenchmarkCuDNN(true);
  return p;
}

DevicePlacement DevicePlacement::WithChannelsLast(bool on) const {
  DevicePlacement p = *this;
  p.channels_last_ = on;
  return p;
}

void DevicePlacement::PlaceModule(torch::nn::Module& module) const {
  if (!device_.is_cpu()) module.to(device_);
  if (channels_last_) ModuleToChannelsLast(module);
}

torch::Tensor DevicePlacement::ToDevice(const torch::Tensor& t) const {
  if (!t.defined() || t.device() == device_) return t;
  if (device_.is_cuda() && t.is_cpu()) {
    // Pinned source: the copy is a DMA that overlaps with queued kernels.
    return t.contiguous().pin_memory().to(device_, t.scalar_type(), /*non_blocking=*/true);
  }
  return t.to(device_);
}

torch::Tensor DevicePlacement::Input(const torch::Tensor& batch) const {
  torch::Tensor x = ToDevice(batch);
  return channels_last_ ? ToChannelsLast(x) : x;
}

void DevicePlacement::Synchronize() const {
  if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
}

DevicePlacement::AutocastScope DevicePlacement::Autocast() const {
  if (precision_ != Precision::kBf16) return AutocastScope();
  return AutocastScope(device_.type());
}

DevicePlacement::AutocastScope::AutocastScope(c10::DeviceType type) : active_(true), type_(type) {
  prev_enabled_ = AutocastEnabled(type_);
  prev_dtype_ = AutocastDtype(type_);
  SetAutocastEnabled(type_, true);
  SetAutocastDtype(type_, at::kBFloat16);
  at::autocast::increment_nesting();
}

DevicePlacement::AutocastScope::AutocastScope(AutocastScope&& other) noexcept
    : active_(other.active_),
      type_(other.type_),
      prev_enabled_(other.prev_enabled_),
      prev_dtype_(other.prev_dtype_) {
  other.active_ = false;
}

DevicePlacement::AutocastScope::~AutocastScope() { Exit(); }

void DevicePlacement::AutocastScope::Exit() {
  if (!active_) return;
  active_ = false;
  // The weight casts are cached for the scope; drop them at the outermost exit.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  SetAutocastEnabled(type_, prev_enabled_);
  SetAutocastDtype(type_, prev_dtype_);
}

void DevicePlacement::AutocastScope::End(std::initializer_list<torch::Tensor*> outputs) {
  const bool was_active = active_;
  Exit();
  if (!was_active) return;
  for (torch::Tensor* t : outputs) {
    if (t != nullptr && t->defined() && t->is_floating_point() && t->scalar_type() != at::kFloat) {
      *t = t->to(at::kFloat);
    }
  }
}

}  // namespace gcl::core
