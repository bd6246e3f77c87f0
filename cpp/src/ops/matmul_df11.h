// Matmuls whose weights are DF11 tensors, multiplied as they are decoded: the BF16 weights never
// reach memory. The CPU does it for every shape and row count (cpu/matmul_df11.cpp); the CUDA
// kernel (cuda/matmul_df11.cu) for the few rows of a decode step, where reading the compressed
// bytes once beats decoding ahead into scratch and cuBLAS; beyond that the caller decodes
// (ops::decode_df11) and calls ops::matmul_bf16. matmul_df11_max_rows() says how far a device can
// go, tune_matmul_df11() how far it pays, measured on the model's own matrices.
//
//   const Df11Product qkv[] = {{q.df11, Q, q_bias, q_out}, {k.df11, KV, k_bias, k_out}, ...};
//   if (x.rows <= fused_rows) ops::matmul_df11(device, x, qkv, 3, scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"
#include "slimrt/df11.h"

namespace slimrt::ops {

// out[r][j] = sum_k x[r][k] * w[j][k] (+ bias[j] unless bias is null), w [n][x.k] DF11 (validated,
// in the device's memory, its table prepared).
struct Df11Product {
  Df11View w;
  int64_t n = 0;
  const float* bias = nullptr;
  float* out = nullptr;
};

// Products one call takes: q, k and v share their input.
constexpr int kMaxDf11Products = 3;

// The most input rows `device` multiplies `count` products of width k for as they decode (0: it
// cannot, for that k); any number on the CPU.
int64_t matmul_df11_max_rows(Device& device, int64_t k, int count);

// Every product on input x (x.rows <= matmul_df11_max_rows): the products decoding w and
// ops::matmul_bf16 would give, up to the order of the sums (on the CPU, bit for bit). scratch:
// matmul_df11_scratch_bytes() bytes for these products at x.rows rows or more.
void matmul_df11(Device& device, const MatmulInput& x, const Df11Product* products, int count,
                 void* scratch);
int64_t matmul_df11_scratch_bytes(Device& device, const Df11Product* products, int count, int64_t k,
                                  int64_t rows);

// The most input rows, up to x.rows and matmul_df11_max_rows, for which matmul_df11 of `products`
// is as fast as decoding them into `decoded` (room for all of them back to back) and one
// ops::matmul_bf16 into `combined_out` (room for x.rows rows of all their outputs side by side),
// measured on `device` at every row count up to the first that loses; x and `scratch`
// (matmul_df11_scratch_bytes at x.rows) as for matmul_df11. A device that multiplies as it decodes
// everywhere (the CPU) has nothing to compare with: x.rows. Leaves every output buffer undefined.
int64_t tune_matmul_df11(Device& device, const MatmulInput& x, const Df11Product* products,
                         int count, uint16_t* decoded, float* combined_out, void* scratch);

}  // namespace slimrt::ops
