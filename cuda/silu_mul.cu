// The CUDA kernel of ops::silu_mul_input.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t row_stride,
                                int64_t tokens, int64_t width, uint16_t* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < tokens * width;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t at = i / width * row_stride + i % width;
    const float g = gate[at];
    out[i] = f32_to_bf16(g / (1.0f + expf(-g)) * up[at]);
  }
}

}  // namespace

MatmulInput silu_mul_input(CudaDevice& device, const float* gate, const float* up,
                           int64_t row_stride, int64_t tokens, int64_t width, void* scratch) {
  const int64_t n = tokens * width;
  if (n > 0) {
    silu_mul_kernel<<<grid_for(n), kThreads, 0, device.stream()>>>(
        gate, up, row_stride, tokens, width, static_cast<uint16_t*>(scratch));
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }
  return {scratch, tokens, width};
}

}  // namespace slimrt::cuda
