#include "ops/rms_norm.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "ops/matmul_bf16.h"

namespace slimrt::ops {

MatmulInput add_rms_norm_input(Device& device, float* x, const float* residual, const float* weight,
                               int64_t rows, int64_t cols, float eps, float* out, void* scratch) {
  SLIMRT_CHECK(rows >= 0 && cols > 0, "add_rms_norm_input: " << rows << " rows of " << cols);
  SLIMRT_CHECK(rows == 0 || (x != nullptr && weight != nullptr && out != nullptr &&
                             (scratch != nullptr || matmul_input_bytes(device, rows, cols) == 0)),
               "add_rms_norm_input: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu: {
      ThreadPool& pool = cpu_device(device).pool();
      if (residual != nullptr) cpu::add_inplace(x, residual, rows * cols, pool);
      cpu::rms_norm(x, weight, rows, cols, eps, out, pool);
      break;
    }
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::add_rms_norm_input(cuda_device(device), x, residual, weight, rows,
                                                  cols, eps, scratch));
  }
  return {out, rows, cols};  // the CPU's matmul reads the FP32 output itself
}

}  // namespace slimrt::ops
