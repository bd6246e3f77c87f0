// The input norm of a layer, fused with the residual update before it, producing the next
// matmul's input (cpu/add_inplace.cpp + cpu/rms_norm.cpp, cuda/rms_norm.cu).
//
//   MatmulInput in = ops::add_rms_norm_input(device, x, h, norm, tokens, hidden, eps, h, scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// x += residual (unless residual is null), then RMSNorm(x) * weight over rows of `cols`, as a
// matmul input (matmul_bf16.h: FP32 into `out`, which may be x, or BF16 into `scratch`).
MatmulInput add_rms_norm_input(Device& device, float* x, const float* residual, const float* weight,
                               int64_t rows, int64_t cols, float eps, float* out, void* scratch);

}  // namespace slimrt::ops
