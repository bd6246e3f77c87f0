// cuda_unavailable_reason() in a build with CUDA: asks the runtime once per process (the set of
// visible GPUs does not change while it runs).
#include <cuda_runtime.h>

#include <string>

#include "slimrt/version.h"

namespace slimrt {

const char* cuda_unavailable_reason() {
  static const std::string reason = [] {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) {
      cudaGetLastError();  // leave no error behind for the caller's next check
      return std::string("no usable CUDA device: ") + cudaGetErrorString(status);
    }
    return count > 0 ? std::string() : std::string("no CUDA device found");
  }();
  return reason.c_str();
}

}  // namespace slimrt
