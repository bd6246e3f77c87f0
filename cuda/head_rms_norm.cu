// The CUDA kernel of ops::head_rms_norm: one warp per (token, head) row, in place.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

constexpr int kWarpsPerBlock = kThreads / 32;

__global__ void head_rms_norm_kernel(float* x, int64_t rows, int64_t stride, int64_t heads,
                                     int64_t head_dim, const float* weight, float eps) {
  const int lane = threadIdx.x % 32;
  for (int64_t r = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32; r < rows;
       r += int64_t{gridDim.x} * kWarpsPerBlock) {
    float* row = x + (r / heads) * stride + (r % heads) * head_dim;
    float sum = 0.0f;
    for (int64_t i = lane; i < head_dim; i += 32) sum += row[i] * row[i];
    for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
    const float inv = 1.0f / sqrtf(sum / static_cast<float>(head_dim) + eps);
    for (int64_t i = lane; i < head_dim; i += 32) row[i] = row[i] * inv * weight[i];
  }
}

}  // namespace

void head_rms_norm(CudaDevice& device, float* x, int64_t tokens, int64_t stride, int64_t heads,
                   int64_t head_dim, const float* weight, float eps) {
  const int64_t rows = tokens * heads;
  const int64_t blocks =
      std::min<int64_t>(kMaxBlocks, (rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  head_rms_norm_kernel<<<static_cast<unsigned>(blocks), kThreads, 0, device.stream()>>>(
      x, rows, stride, heads, head_dim, weight, eps);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace slimrt::cuda
