// The CUDA kernel of ops::matmul_bf16: one cuBLAS GEMM, then the bias.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "cublas_library.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

__global__ void add_bias_kernel(float* out, const float* bias, int64_t rows, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] += bias[i % n];
  }
}

}  // namespace

// Row-major out[rows][n] = x[rows][k] . w[n][k]^T is, column-major, out^T = w^T(T) . x^T: one
// cublasGemmEx with A = w transposed, B = x, both BF16, FP32 compute and output.
void matmul_bf16(CudaDevice& device, const MatmulInput& x, const uint16_t* w, int64_t n,
                 const float* bias, float* out) {
  if (x.rows <= 0 || n <= 0) return;
  SLIMRT_CHECK(x.rows <= INT32_MAX && n <= INT32_MAX && x.k <= INT32_MAX,
               "matmul_bf16: shape " << x.rows << " x " << x.k << " x " << n << " out of range");
  const int m = static_cast<int>(n), cols = static_cast<int>(x.rows), k = static_cast<int>(x.k);
  const float alpha = 1.0f, beta = 0.0f;
  SLIMRT_CUBLAS_CHECK(cublas_library().gemm_ex(device.cublas(), CUBLAS_OP_T, CUBLAS_OP_N, m, cols,
                                               k, &alpha, w, CUDA_R_16BF, std::max(k, 1), x.data,
                                               CUDA_R_16BF, std::max(k, 1), &beta, out, CUDA_R_32F,
                                               m, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  if (bias != nullptr) {
    add_bias_kernel<<<grid_for(x.rows * n), kThreads, 0, device.stream()>>>(out, bias, x.rows, n);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace slimrt::cuda
