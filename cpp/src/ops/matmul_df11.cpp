#include "ops/matmul_df11.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

bool fuses_df11(Device& device) { return device.backend() == Backend::kCpu; }

void matmul_df11(Device& device, const MatmulInput& x, const Df11View& w, int64_t n,
                 const float* bias, float* out, void* scratch) {
  SLIMRT_CHECK(x.rows >= 0 && x.k > 0 && n >= 0,
               "matmul_df11: " << x.rows << " rows of " << x.k << " by " << n << " outputs");
  SLIMRT_CHECK(w.numel == n * x.k, "matmul_df11: the DF11 tensor holds "
                                       << w.numel << " elements, not " << n << " x " << x.k);
  SLIMRT_CHECK(x.rows * n == 0 || (x.data != nullptr && out != nullptr && scratch != nullptr &&
                                   w.lengths != nullptr && w.bitstream != nullptr &&
                                   w.index != nullptr && w.signmant != nullptr),
               "matmul_df11: a null pointer");
  SLIMRT_CHECK_AS(ErrorCategory::kInternal, fuses_df11(device),
                  "matmul_df11: the " << device.name() << " backend has no fused DF11 matmul");
  CpuDevice& cpu = cpu_device(device);
  cpu::matmul_df11(static_cast<const float*>(x.data), x.rows, x.k, w, cpu.df11_table(w.lengths), n,
                   bias, out, static_cast<uint16_t*>(scratch), cpu.pool());
}

int64_t matmul_df11_scratch_bytes(Device& device, int64_t k) {
  SLIMRT_CHECK(k > 0, "matmul_df11: k " << k);
  return fuses_df11(device) ? cpu::matmul_df11_scratch_elements(k, cpu_device(device).pool()) * 2
                            : 0;
}

}  // namespace slimrt::ops
