// The CUDA kernel of ops::add_rms_norm_input.
#include <cuda_runtime.h>

#include <cstdint>

#include "check.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

// A row is one block of kRowThreads: at batch 1 a row is all the work there is, and one
// 256-thread block walking a 4096-wide norm serially was latency-bound (ncu, H100: 17 us).
constexpr int kRowThreads = 1024;

// One block of kRowThreads per row: x += residual (when given), then out = bf16(x *
// rsqrt(mean(x^2) + eps) * weight). Each element of x is read and written by the same thread.
__global__ void __launch_bounds__(kRowThreads)
    add_rms_norm_kernel(float* x, const float* residual, const float* weight, int64_t cols,
                        float eps, uint16_t* out) {
  float* row = x + blockIdx.x * cols;
  const float* add = residual != nullptr ? residual + blockIdx.x * cols : nullptr;
  uint16_t* dst = out + blockIdx.x * cols;
  float sum = 0.0f;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = row[i];
    if (add != nullptr) {
      v += add[i];
      row[i] = v;
    }
    sum += v * v;
  }
  __shared__ float partial[kRowThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  __shared__ float inv;
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += partial[w];
    inv = 1.0f / sqrtf(total / static_cast<float>(cols) + eps);
  }
  __syncthreads();
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    dst[i] = f32_to_bf16(row[i] * inv * weight[i]);
  }
}

}  // namespace

MatmulInput add_rms_norm_input(CudaDevice& device, float* x, const float* residual,
                               const float* weight, int64_t rows, int64_t cols, float eps,
                               void* scratch) {
  if (rows > 0 && cols > 0) {
    SLIMRT_CHECK(rows <= 0x7FFFFFFF, "add_rms_norm_input: too many rows " << rows);
    add_rms_norm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, device.stream()>>>(
        x, residual, weight, cols, eps, static_cast<uint16_t*>(scratch));
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }
  return {scratch, rows, cols};
}

}  // namespace slimrt::cuda
