// JobSpec -> core::DeviceOptions: resources.device_type (auto, the spec
// default, picks CUDA when this process sees a GPU) and train.precision.
#pragma once

#include "gcl/v1/spec.pb.h"
#include "worker/gcl/train/device_placement.h"

namespace gcl::trainer {

core::DeviceOptions DeviceOptionsFromSpec(const gcl::v1::JobSpec& spec);

}  // namespace gcl::trainer
