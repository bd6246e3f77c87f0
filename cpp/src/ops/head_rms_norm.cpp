#include "ops/head_rms_norm.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

void head_rms_norm(Device& device, float* x, int64_t tokens, int64_t stride, int64_t heads,
                   int64_t head_dim, const float* weight, float eps) {
  SLIMRT_CHECK(tokens >= 0 && heads > 0 && head_dim > 0 && stride >= heads * head_dim,
               "head_rms_norm: " << tokens << " tokens of " << heads << " heads of " << head_dim
                                 << ", rows " << stride << " apart");
  if (tokens == 0) return;
  SLIMRT_CHECK(x != nullptr && weight != nullptr, "head_rms_norm: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::head_rms_norm(x, tokens, stride, heads, head_dim, weight, eps,
                                cpu_device(device).pool());
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::head_rms_norm(cuda_device(device), x, tokens, stride, heads,
                                             head_dim, weight, eps));
  }
}

}  // namespace slimrt::ops
