// How an op (ops/) reaches the backend that runs it: the device's own class (cpu_device(),
// cuda_device()) and SLIMRT_CUDA, which keeps an op's CUDA case compiling in a build without
// CUDA, where no CUDA device can exist, without an #ifdef in every op:
//
//   switch (device.backend()) {
//     case Backend::kCpu:
//       return cpu::embed(ids, tokens, table, hidden, out, cpu_device(device).pool());
//     case Backend::kCuda:
//       return SLIMRT_CUDA(cuda::embed(cuda_device(device), ids, tokens, table, hidden, out));
//   }
#pragma once

#include "check.h"
#include "cpu_device.h"
#include "cuda_backend.h"
#include "device.h"

namespace slimrt {

inline CpuDevice& cpu_device(Device& device) { return static_cast<CpuDevice&>(device); }

// What SLIMRT_CUDA(call) stands for in a build without CUDA: a value of the call's type that is
// never made, since only a CUDA device (which cannot exist there) takes an op's CUDA case.
template <class T>
[[noreturn]] T cuda_not_built() {
  throw_error(ErrorCategory::kInternal, __func__, __FILE__, __LINE__,
              "an op reached its CUDA case in a build without CUDA");
}

}  // namespace slimrt

#ifdef SLIMRT_WITH_CUDA
#define SLIMRT_CUDA(call) (call)
#else
// The call is compiled (as decltype's operand) but never evaluated, so cuda/ needs no
// definitions here.
#define SLIMRT_CUDA(call) (::slimrt::cuda_not_built<decltype(call)>())
#endif
