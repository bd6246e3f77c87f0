#include "ops/matmul_bf16.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

void matmul_bf16(Device& device, const MatmulInput& x, const uint16_t* w, int64_t n,
                 const float* bias, float* out) {
  SLIMRT_CHECK(x.rows >= 0 && x.k >= 0 && n >= 0,
               "matmul_bf16: negative size rows=" << x.rows << " k=" << x.k << " n=" << n);
  SLIMRT_CHECK(
      x.rows * n == 0 || (out != nullptr && (x.k == 0 || (x.data != nullptr && w != nullptr))),
      "matmul_bf16: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::matmul_bf16(static_cast<const float*>(x.data), x.rows, x.k, w, n, bias, out,
                              cpu_device(device).pool());
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::matmul_bf16(cuda_device(device), x, w, n, bias, out));
  }
}

int64_t matmul_input_bytes(Device& device, int64_t rows, int64_t k) {
  // The CPU's GEMM reads the producer's FP32 output; CUDA's reads a BF16 copy.
  return device.backend() == Backend::kCuda ? rows * k * static_cast<int64_t>(sizeof(uint16_t)) : 0;
}

}  // namespace slimrt::ops
