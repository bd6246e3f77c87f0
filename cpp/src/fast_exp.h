// exp and exp2 written so that compilers vectorise the loops that call them (no branches, no
// library calls), accurate to about 2 ulp, denormal results included. -inf gives exactly 0
// (softmax masks with -inf); NaN stays NaN. Host and device code (host_device.h): files compiled
// without contraction into FMAs (-ffp-contract=off, nvcc --fmad=false) get the same bits from
// both, which the samplers rely on (sample_rules.h).
#pragma once

#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace slimrt {
namespace fast_exp_detail {

// c ? a : b through integer bit operations. A floating-point conditional would be turned into
// a branch (GCC pushes the constant through the arithmetic that follows into one arm, and does
// not if-convert floating-point code that could trap), and a branch stops vectorisation.
SLIMRT_HOST_DEVICE inline float select(bool c, float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, sizeof ia);
  std::memcpy(&ib, &b, sizeof ib);
  const int32_t m = -static_cast<int32_t>(c);
  const int32_t r = (ia & m) | (ib & ~m);
  float f;
  std::memcpy(&f, &r, sizeof f);
  return f;
}

// 2^n for integral n in [-126, 127]. (A NaN input reaches here with n out of range: the shift is
// unsigned so that it wraps instead of being undefined; the NaN carries through p anyway.)
SLIMRT_HOST_DEVICE inline float pow2i(int32_t n) {
  const uint32_t bits = static_cast<uint32_t>(n + 127) << 23;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// e^r for |r| <= ln(2)/2: Taylor to degree 7, truncation error 6e-9 relative.
SLIMRT_HOST_DEVICE inline float exp_reduced(float r) {
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  return p * r + 1.0f;
}

constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: x + it - it rounds x to an integer

// p * 2^n for n in [-151, 127], from t = n + kRoundMagic. Two factors keep each in the normal
// range, so results underflow gradually to denormals and 0 like a correctly rounded exp.
SLIMRT_HOST_DEVICE inline float scale_by_pow2(float p, float t) {
  int32_t bits;
  std::memcpy(&bits, &t, sizeof bits);
  const int32_t n = bits - 0x4B400000;  // the magic constant leaves n in the low bits
  const int32_t half = n >> 1;
  return p * pow2i(half) * pow2i(n - half);
}

}  // namespace fast_exp_detail

SLIMRT_HOST_DEVICE inline float exp2_fast(float x) {
  using namespace fast_exp_detail;
  float xc = select(x < -151.0f, -151.0f, x);
  xc = select(xc > 127.0f, 127.0f, xc);
  const float t = xc + kRoundMagic;
  const float r = (xc - (t - kRoundMagic)) * 0.693147180559945f;
  return scale_by_pow2(exp_reduced(r), t);
}

SLIMRT_HOST_DEVICE inline float exp_fast(float x) {
  using namespace fast_exp_detail;
  float xc = select(x < -104.0f, -104.0f, x);  // e^-104 rounds to 0
  xc = select(xc > 88.0f, 88.0f, xc);
  const float t = xc * 1.44269504088896f + kRoundMagic;
  const float n = t - kRoundMagic;
  // Cody-Waite: n * ln2 in two parts, so that xc - n * ln2 loses nothing to rounding.
  const float r = (xc - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  return scale_by_pow2(exp_reduced(r), t);
}

}  // namespace slimrt
