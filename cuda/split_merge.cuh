// The merge of split-K decode attention (FlashDecoding), shared by the dense and the
// compressed-page decode kernels: one warp combines the partial outputs of one (sequence, query
// head) row, in a kernel launched right behind the attention kernel (programmatic dependent
// launch, so that its launch overlaps the attention kernel's tail).
//
//   launch_split_merge({partial_o, partial_lse, context_lens, out, rows, heads, chunk, splits},
//                      head_dim, stream);
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "tensor_core_ptx.cuh"

namespace slimrt::split_merge {

// dst[0, HD) = sum_s o_s 2^(lse_s - M) / sum_s 2^(lse_s - M) over the first n partials (lse in
// log2 units, po [n][HD] normalised outputs); zeros for n = 0. Called by all 32 lanes of a warp.
template <int HD>
__device__ __forceinline__ void merge_row(const float* lse, const float* po, int n, uint16_t* dst,
                                          int lane) {
  constexpr int kVec = HD / 32;  // dims per lane
  po += lane * kVec;
  float mx = -INFINITY;
  for (int s = lane; s < n; s += 32) mx = fmaxf(mx, lse[s]);
#pragma unroll
  for (int mask = 16; mask >= 1; mask /= 2) mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, mask));

  float sum = 0.0f;
  float o[kVec] = {};
#pragma unroll 4
  for (int s = 0; s < n; ++s) {
    const float w = ptx::exp2_approx(lse[s] - mx);
    sum += w;
    float a[kVec];
    if constexpr (kVec == 4) {
      const float4 v = *reinterpret_cast<const float4*>(po + s * HD);
      a[0] = v.x, a[1] = v.y, a[2] = v.z, a[3] = v.w;
    } else {
      const float2 v = *reinterpret_cast<const float2*>(po + s * HD);
      a[0] = v.x, a[1] = v.y;
    }
#pragma unroll
    for (int i = 0; i < kVec; ++i) o[i] = fmaf(a[i], w, o[i]);
  }
  const float inv = n > 0 ? 1.0f / sum : 0.0f;
  dst += lane * kVec;
  if constexpr (kVec == 4) {
    *reinterpret_cast<uint2*>(dst) = make_uint2(ptx::pack_bf16x2(o[0] * inv, o[1] * inv),
                                                ptx::pack_bf16x2(o[2] * inv, o[3] * inv));
  } else {
    *reinterpret_cast<uint32_t*>(dst) = ptx::pack_bf16x2(o[0] * inv, o[1] * inv);
  }
}

// Partials of `splits` splits of `chunk` positions per row of a decode batch (one token per
// sequence, row = sequence * heads + head), laid out as split_workspace_bytes (decode_splits.h)
// says; a sequence's splits past its context hold nothing and are left out. With a sliding
// window the splits cover the window's positions only, ctx - window on.
struct SplitMergeArgs {
  const float* partial_o = nullptr;    // [rows][splits][head_dim]
  const float* partial_lse = nullptr;  // [rows][splits], log2 units
  const int32_t* context_lens = nullptr;
  uint16_t* out = nullptr;  // [rows][head_dim] BF16 bits
  int rows = 0;
  int heads = 0;
  int chunk = 0;
  int splits = 0;
  int window = 0;  // 0: full causal attention
};

template <int HD>
__global__ void __launch_bounds__(128) split_merge_kernel(const SplitMergeArgs a) {
  asm volatile("griddepcontrol.wait;" ::: "memory");
  const int row = blockIdx.x * 4 + threadIdx.x / 32;
  if (row >= a.rows) return;
  const int ctx = a.context_lens[row / a.heads];
  const int span = a.window > 0 ? min(ctx, a.window) : ctx;
  const int n = span <= 0 ? 0 : min(a.splits, (span + a.chunk - 1) / a.chunk);
  merge_row<HD>(a.partial_lse + static_cast<int64_t>(row) * a.splits,
                a.partial_o + static_cast<int64_t>(row) * a.splits * HD, n,
                a.out + static_cast<int64_t>(row) * HD, threadIdx.x % 32);
}

// head_dim 64 or 128.
inline void launch_split_merge(const SplitMergeArgs& a, int64_t head_dim, cudaStream_t stream) {
  cudaLaunchConfig_t config{};
  config.gridDim = dim3(static_cast<unsigned>((a.rows + 3) / 4));
  config.blockDim = dim3(128);
  config.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  config.attrs = &attr;
  config.numAttrs = 1;
  if (head_dim == 128) {
    SLIMRT_CUDA_CHECK(cudaLaunchKernelEx(&config, split_merge_kernel<128>, a));
  } else {
    SLIMRT_CUDA_CHECK(cudaLaunchKernelEx(&config, split_merge_kernel<64>, a));
  }
}

}  // namespace slimrt::split_merge
