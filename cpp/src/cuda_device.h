// The CUDA backend of Device (cuda/cuda_device.cu): one CUDA stream and one cuBLAS handle on the
// current GPU; kernels are enqueued on the stream in call order. This header needs no CUDA
// headers, so device.cpp stays plain C++.
//
//   std::unique_ptr<Device> device = make_cuda_device();
#pragma once

#include <memory>

#include "device.h"

namespace slimrt {

// Throws slimrt::Error when no CUDA device is usable.
std::unique_ptr<Device> make_cuda_device();

}  // namespace slimrt
