// The merge of split-K decode attention (FlashDecoding): one warp combines the partial outputs of
// one (token, query head) row, shared by the dense and the compressed-page decode kernels.
#pragma once

#include <cuda_bf16.h>

#include <cstdint>

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

}  // namespace slimrt::split_merge
