// The CUDA kernels of ops::gather_rows and ops::copy_block.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

__global__ void gather_rows_kernel(const float* src, const int32_t* rows, int64_t count,
                                   int64_t width, float* dst) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count * width;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = src[int64_t{rows[i / width]} * width + i % width];
  }
}

}  // namespace

void gather_rows(CudaDevice& device, const float* src, const int32_t* rows, int64_t count,
                 int64_t width, float* dst) {
  if (count <= 0 || width <= 0) return;
  gather_rows_kernel<<<grid_for(count * width), kThreads, 0, device.stream()>>>(src, rows, count,
                                                                                width, dst);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

void copy_block(CudaDevice& device, const float* src, int64_t src_stride, float* dst,
                int64_t dst_stride, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  SLIMRT_CUDA_CHECK(cudaMemcpy2DAsync(
      dst, static_cast<size_t>(dst_stride) * sizeof(float), src,
      static_cast<size_t>(src_stride) * sizeof(float), static_cast<size_t>(cols) * sizeof(float),
      static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, device.stream()));
}

}  // namespace slimrt::cuda
