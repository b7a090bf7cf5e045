#include "worker/trainer/device_spec.h"

namespace gcl::trainer {

core::DeviceOptions DeviceOptionsFromSpec(const gcl::v1::JobSpec& spec) {
  core::DeviceOptions o;
  switch (spec.resources().device_type()) {
    case gcl::v1::DEVICE_TYPE_CPU: o.device = core::TrainDevice::kCpu; break;
    case gcl::v1::DEVICE_TYPE_CUDA: o.device = core::TrainDevice::kCuda; break;
    default: o.device = core::TrainDevice::kAuto; break;  // unspecified = auto (spec default)
  }
  o.precision = spec.train().precision() == gcl::v1::PRECISION_BF16 ? core::Precision::kBf16
                                                                     : core::Precision::kFp32;
  return o;
}

}  // namespace gcl::trainer
