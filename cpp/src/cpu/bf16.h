// BF16 <-> FP32. A BF16 value is the upper half of an FP32, so widening is exact (a shift);
// narrowing rounds to nearest even, keeping NaNs NaN.
#pragma once

#include <cstdint>
#include <cstring>

namespace slimrt::cpu {

inline float bf16_to_f32(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  // Without the quiet bit, rounding could carry a NaN's payload into the exponent (-> Inf).
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace slimrt::cpu
