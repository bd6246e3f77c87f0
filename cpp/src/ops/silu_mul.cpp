#include "ops/silu_mul.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "ops/matmul_bf16.h"

namespace slimrt::ops {

MatmulInput silu_mul_input(Device& device, const float* gate, const float* up, int64_t row_stride,
                           int64_t tokens, int64_t width, float* out, void* scratch) {
  SLIMRT_CHECK(
      tokens >= 0 && width >= 0 && row_stride >= width,
      "silu_mul_input: " << tokens << " rows of " << width << ", " << row_stride << " apart");
  SLIMRT_CHECK(tokens * width == 0 ||
                   (gate != nullptr && up != nullptr && out != nullptr &&
                    (scratch != nullptr || matmul_input_bytes(device, tokens, width) == 0)),
               "silu_mul_input: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      cpu::silu_mul(gate, up, row_stride, tokens, width, out, cpu_device(device).pool());
      break;
    case Backend::kCuda:
      return SLIMRT_CUDA(
          cuda::silu_mul_input(cuda_device(device), gate, up, row_stride, tokens, width, scratch));
  }
  return {out, tokens, width};  // the CPU's matmul reads the FP32 output itself
}

}  // namespace slimrt::ops
