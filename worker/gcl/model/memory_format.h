// Channels-last (NHWC) layout for conv nets on CPU: oneDNN's NHWC kernels run
// the U-Net encoder's forward + backward about 20% faster than the default
// NCHW path on this machine (96 px, 32 views, 2 threads).
#pragma once

#include <torch/nn/module.h>

namespace gcl::core {

// Converts every 4-D parameter and buffer of `module` to channels-last in
// place (values unchanged). Inputs should be converted too (ToChannelsLast).
void ModuleToChannelsLast(torch::nn::Module& module);

// `x` in channels-last layout when it is 4-D, else unchanged.
torch::Tensor ToChannelsLast(const torch::Tensor& x);

}  // namespace gcl::core
