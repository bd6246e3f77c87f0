// What the op kernels of cuda/ share (device code: include from .cu files only): the BF16
// conversions of cpu/bf16.h, bit for bit, and the launch geometry of grid-stride loops.
//
//   kernel<<<grid_for(n), kThreads, 0, device.stream()>>>(...);   // i < n, i += grid * block
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

namespace slimrt::cuda {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // keeps grid-stride grids well inside any limit

inline int grid_for(int64_t n) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
}

__device__ __forceinline__ float bf16_to_f32(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}

// Round to nearest even, NaN kept quiet: the same bits as cpu::f32_to_bf16.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace slimrt::cuda
