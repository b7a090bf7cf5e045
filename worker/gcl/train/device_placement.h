// Where a trainer runs and in which precision (issue 6, "GPU build"): the
// device (spec resources.device_type), bf16 autocast of the forward pass
// (spec train.precision) and channels-last layout. Pre-training and
// fine-tuning hold one DevicePlacement and route models, batches and the
// forward pass through it.
//
// Contract:
//  - Models are created on the CPU (the U-Net initialiser draws from the
//    global CPU generator, so weights are the same on every device) and then
//    moved once with PlaceModule; the optimizer is built after that, so its
//    state lives on the device too.
//  - Batches are built and augmented on the CPU (the augmentation streams
//    are CPU generators) and copied with Input(): pinned host memory and a
//    non-blocking copy on CUDA.
//  - Autocast covers the forward pass only; AutocastScope::End casts the
//    outputs back to fp32, so the losses, the per-label gradients and
//    GradMitigator stay fp32 (parameters and their gradients are fp32 in
//    either precision).
//  - On the CPU in fp32 nothing changes: results are bit-identical to a
//    build without this class (the tests pin them).
//
// Thread-safety: a DevicePlacement is immutable after Create; autocast state
// is thread-local, so an AutocastScope belongs to the thread that made it.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include <torch/torch.h>

#include "absl/status/statusor.h"

namespace gcl::core {

enum class TrainDevice { kCpu, kCuda, kAuto };  // kAuto: CUDA when available, else CPU
enum class Precision { kFp32, kBf16 };

struct DeviceOptions {
  TrainDevice device = TrainDevice::kCpu;
  // CUDA ordinal among the visible devices: 0 under CUDA_VISIBLE_DEVICES
  // pinning (one process per GPU, docs/gpu.md).
  int cuda_index = 0;
  Precision precision = Precision::kFp32;
  // NHWC for the conv nets (the encoder, heads and their inputs).
  bool channels_last = true;
};

// "cpu" | "cuda" | "auto" and "fp32" | "bf16" (kInvalidArgument otherwise).
absl::StatusOr<TrainDevice> ParseTrainDevice(std::string_view name);
absl::StatusOr<Precision> ParsePrecision(std::string_view name);
std::string TrainDeviceName(TrainDevice device);
std::string PrecisionName(Precision precision);

// True when this LibTorch has CUDA and a CUDA device is visible.
bool CudaAvailable();

class DevicePlacement {
 public:
  // Resolves the device: kAuto picks CUDA when available; kCuda without a
  // visible device (or an index out of range) is kFailedPrecondition. On
  // CUDA turns on cuDNN's autotuner (fixed shapes in training).
  static absl::StatusOr<DevicePlacement> Create(const DeviceOptions& options);

  // CPU, fp32, channels-last: what the trainers did before devices existed.
  DevicePlacement() = default;

  const torch::Device& device() const { return device_; }
  bool is_cuda() const { return device_.is_cuda(); }
  Precision precision() const { return precision_; }
  bool channels_last() const { return channels_last_; }

  // The same placement with channels-last switched on or off (fine-tuning
  // keeps NCHW on the CPU, where its results are pinned).
  DevicePlacement WithChannelsLast(bool on) const;

  // Moves every parameter and buffer of `module` to the device, then (when
  // channels_last) converts the 4-D ones to channels-last. Tensor identities
  // are kept, so parameter lists taken later or earlier stay valid.
  void PlaceModule(torch::nn::Module& module) const;

  // A CPU batch on the device: through pinned memory and a non-blocking copy
  // on CUDA; 4-D tensors in channels-last when enabled. On the CPU only the
  // layout changes.
  torch::Tensor Input(const torch::Tensor& batch) const;

  // Like Input, without the layout change (labels, masks).
  torch::Tensor ToDevice(const torch::Tensor& t) const;

  // Waits for the work queued on the device (CUDA); no-op on the CPU. For
  // timings only: the training step itself never needs it.
  void Synchronize() const;

  // bf16 autocast of the forward pass while alive, until End(); inactive
  // (does nothing) in fp32.
  class AutocastScope {
   public:
    AutocastScope() = default;
    AutocastScope(AutocastScope&& other) noexcept;
    AutocastScope& operator=(AutocastScope&&) = delete;
    AutocastScope(const AutocastScope&) = delete;
    ~AutocastScope();

    // Leaves autocast and casts each defined floating output to fp32.
    void End(std::initializer_list<torch::Tensor*> outputs = {});

   private:
    friend class DevicePlacement;
    explicit AutocastScope(c10::DeviceType type);
    void Exit();

    bool active_ = false;
    c10::DeviceType type_ = c10::DeviceType::CPU;
    bool prev_enabled_ = false;
    at::ScalarType prev_dtype_ = at::kFloat;
  };
  AutocastScope Autocast() const;

 private:
  torch::Device device_{torch::kCPU};
  Precision precision_ = Precision::kFp32;
  bool channels_last_ = true;
};

}  // namespace gcl::core
