// A matmul whose weights are a DF11 tensor, multiplied as they are decoded (cpu/matmul_df11.cpp):
// the BF16 weights never reach memory. A backend that has no such kernel yet (CUDA: the fused
// GPU kernel is still to come) decodes into scratch ahead of use and calls ops::matmul_bf16; the
// executor asks which with fuses_df11().
//
//   if (ops::fuses_df11(device)) ops::matmul_df11(device, in, matrix.df11, n, bias, out, scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"
#include "slimrt/df11.h"

namespace slimrt::ops {

bool fuses_df11(Device& device);

// out[r][j] = sum_k x[r][k] * w[j][k] (+ bias[j]), w [n][x.k] DF11 (validated, in the device's
// memory, its table prepared): what decoding w and ops::matmul_bf16 give, bit for bit. scratch:
// matmul_df11_scratch_bytes(k) bytes.
void matmul_df11(Device& device, const MatmulInput& x, const Df11View& w, int64_t n,
                 const float* bias, float* out, void* scratch);
int64_t matmul_df11_scratch_bytes(Device& device, int64_t k);

}  // namespace slimrt::ops
