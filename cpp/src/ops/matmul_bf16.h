// The matrix product of every projection: out = x · wᵀ with BF16 weights, FP32 accumulation and
// output (cpu/matmul_bf16.cpp, cuda/matmul_bf16.cu).
//
// Its left operand x[rows][k] is a MatmulInput in the form its backend's GEMM takes: FP32 on the
// CPU (the FP32 `out` buffer its producer is given), BF16 on CUDA, whose tensor cores read BF16
// (rounded to nearest even into `scratch`, matmul_input_bytes(rows, k) bytes; `out` is then left
// alone). The producers fuse the step before each matmul: ops::add_rms_norm_input (rms_norm.h),
// ops::silu_mul_input (silu_mul.h), ops::paged_attention (paged_attention.h). One input may serve
// several matmuls (q, k and v).
//
//   MatmulInput in = ops::add_rms_norm_input(device, x, residual, norm, rows, k, eps, h, scratch);
//   ops::matmul_bf16(device, in, w, n, bias, out);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// out[r][j] = sum_k x[r][k] * w[j][k] (+ bias[j] unless bias is null), w [n][k] BF16.
void matmul_bf16(Device& device, const MatmulInput& x, const uint16_t* w, int64_t n,
                 const float* bias, float* out);

// Bytes of `scratch` a producer needs for a matmul input of [rows][k] (0 on the CPU).
int64_t matmul_input_bytes(Device& device, int64_t rows, int64_t k);

}  // namespace slimrt::ops
