#include "gguf_dequantize.h"

#include <cstring>

#include "check.h"
#include "cpu/bf16.h"
#include "gguf.h"

// Bit-identity with numpy needs each product rounded before the sum: no fused multiply-add
// (CMakeLists.txt compiles this file with -ffp-contract=off).

namespace slimrt {
namespace {

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8,
                   kBF16 = 30;

inline float bits_to_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// IEEE half -> float, exact. NaN payloads are shifted up unchanged and signalling NaNs stay
// signalling, as numpy's float16 -> float32 cast does (a hardware vcvtph2ps would quiet them).
// Masks, not branches, so that loops over it vectorize.
inline float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000) << 16;
  const uint32_t rest = h & 0x7FFF;
  const uint32_t special = 0u - static_cast<uint32_t>(rest >= 0x7C00);  // infinities and NaNs
  const uint32_t normal = 0u - static_cast<uint32_t>(rest >= 0x0400);
  // Rebias the exponent from 15 to 127 (from 31 to 255 for the special values).
  const uint32_t widened = (rest << 13) + 0x38000000u + (special & 0x38000000u);
  // Zero or subnormal: rest * 2^-24, exact in float.
  const float small = static_cast<float>(rest) * 0x1p-24f;
  uint32_t small_bits;
  std::memcpy(&small_bits, &small, sizeof small_bits);
  return bits_to_f32(sign | (widened & normal) | (small_bits & ~normal));
}

inline uint16_t load_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

inline uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// One block of 32 elements each; the nibble layout is ggml's: byte j holds element j in its low
// half and element j + 16 in its high half. __restrict: the output could otherwise alias the
// bytes (uint8_t aliases anything), and the compiler would keep the loops scalar.
void q4_0_block(const uint8_t* __restrict b, float* __restrict out) {
  const float d = f16_to_f32(load_u16(b));
  const uint8_t* qs = b + 2;
  for (int j = 0; j < 16; ++j) out[j] = d * static_cast<float>((qs[j] & 0x0F) - 8);
  for (int j = 0; j < 16; ++j) out[j + 16] = d * static_cast<float>((qs[j] >> 4) - 8);
}

void q4_1_block(const uint8_t* __restrict b, float* __restrict out) {
  const float d = f16_to_f32(load_u16(b));
  const float m = f16_to_f32(load_u16(b + 2));
  const uint8_t* qs = b + 4;
  for (int j = 0; j < 16; ++j) out[j] = d * static_cast<float>(qs[j] & 0x0F) + m;
  for (int j = 0; j < 16; ++j) out[j + 16] = d * static_cast<float>(qs[j] >> 4) + m;
}

// Q5: the fifth bit of element j is bit j of a 32-bit word before the nibbles.
inline int high_bit(uint32_t qh, int j) { return static_cast<int>((qh >> j) & 1) << 4; }

void q5_0_block(const uint8_t* __restrict b, float* __restrict out) {
  const float d = f16_to_f32(load_u16(b));
  const uint32_t qh = load_u32(b + 2);
  const uint8_t* qs = b + 6;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>(((qs[j] & 0x0F) | high_bit(qh, j)) - 16);
  }
  for (int j = 0; j < 16; ++j) {
    out[j + 16] = d * static_cast<float>(((qs[j] >> 4) | high_bit(qh, j + 16)) - 16);
  }
}

void q5_1_block(const uint8_t* __restrict b, float* __restrict out) {
  const float d = f16_to_f32(load_u16(b));
  const float m = f16_to_f32(load_u16(b + 2));
  const uint32_t qh = load_u32(b + 4);
  const uint8_t* qs = b + 8;
  for (int j = 0; j < 16; ++j) {
    out[j] = d * static_cast<float>((qs[j] & 0x0F) | high_bit(qh, j)) + m;
  }
  for (int j = 0; j < 16; ++j) {
    out[j + 16] = d * static_cast<float>((qs[j] >> 4) | high_bit(qh, j + 16)) + m;
  }
}

void q8_0_block(const uint8_t* __restrict b, float* __restrict out) {
  const float d = f16_to_f32(load_u16(b));
  const auto* qs = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < 32; ++j) out[j] = static_cast<float>(qs[j]) * d;
}

template <void (*Block)(const uint8_t*, float*), int kBlockBytes>
void blocks(const uint8_t* src, int64_t count, float* out) {
  for (int64_t i = 0; i < count / 32; ++i) Block(src + i * kBlockBytes, out + i * 32);
}

void check_arguments(uint32_t type, int64_t count) {
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, gguf_dequantize_supported(type),
                  "dequantizing GGUF tensor type " << ggml_type_name(type)
                                                   << " is not supported (slimrt dequantizes F32, "
                                                      "F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)");
  const int64_t block = ggml_type_info(type)->block_size;
  SLIMRT_CHECK(count >= 0 && count % block == 0,
               "GGUF " << ggml_type_name(type) << ": element count " << count
                       << " is not a multiple of the block size " << block);
}

void dequantize(uint32_t type, const uint8_t* src, int64_t count, float* out) {
  switch (type) {
    case kF32:
      std::memcpy(out, src, static_cast<size_t>(count) * 4);
      return;
    case kF16:
      for (int64_t i = 0; i < count; ++i) out[i] = f16_to_f32(load_u16(src + 2 * i));
      return;
    case kBF16:
      for (int64_t i = 0; i < count; ++i) out[i] = cpu::bf16_to_f32(load_u16(src + 2 * i));
      return;
    case kQ4_0:
      return blocks<q4_0_block, 18>(src, count, out);
    case kQ4_1:
      return blocks<q4_1_block, 20>(src, count, out);
    case kQ5_0:
      return blocks<q5_0_block, 22>(src, count, out);
    case kQ5_1:
      return blocks<q5_1_block, 24>(src, count, out);
    case kQ8_0:
      return blocks<q8_0_block, 34>(src, count, out);
  }
}

}  // namespace

bool gguf_dequantize_supported(uint32_t type) {
  switch (type) {
    case kF32:
    case kF16:
    case kBF16:
    case kQ4_0:
    case kQ4_1:
    case kQ5_0:
    case kQ5_1:
    case kQ8_0:
      return true;
  }
  return false;
}

void gguf_dequantize_f32(uint32_t type, const uint8_t* src, int64_t count, float* out) {
  check_arguments(type, count);
  dequantize(type, src, count, out);
}

void gguf_dequantize_bf16(uint32_t type, const uint8_t* src, int64_t count, uint16_t* out) {
  check_arguments(type, count);
  // Through float32 in chunks that stay in L1, a whole number of blocks each (32 divides 2048).
  constexpr int64_t kChunk = 2048;
  float chunk[kChunk];
  const int64_t bytes_per_chunk =
      kChunk / ggml_type_info(type)->block_size * ggml_type_info(type)->type_size;
  for (int64_t start = 0; start < count; start += kChunk) {
    const int64_t n = count - start < kChunk ? count - start : kChunk;
    dequantize(type, src + start / kChunk * bytes_per_chunk, n, chunk);
    for (int64_t i = 0; i < n; ++i) out[start + i] = cpu::f32_to_bf16(chunk[i]);
  }
}

}  // namespace slimrt
