// The MLP's gate: silu(gate) * up, producing the down projection's input (cpu/silu_mul.cpp,
// cuda/silu_mul.cu).
//
//   MatmulInput in = ops::silu_mul_input(device, gate_up, gate_up + I, 2 * I, T, I, act, scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// silu(gate) * up elementwise over [tokens][width], gate and up rows `row_stride` (>= width)
// floats apart (a fused gate|up matmul output: 2 * width), as a matmul input (matmul_bf16.h:
// FP32 into `out`, or BF16 into `scratch`).
MatmulInput silu_mul_input(Device& device, const float* gate, const float* up, int64_t row_stride,
                           int64_t tokens, int64_t width, float* out, void* scratch);

}  // namespace slimrt::ops
