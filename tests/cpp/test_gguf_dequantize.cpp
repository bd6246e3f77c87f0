#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "gguf.h"
#include "gguf_dequantize.h"
#include "model_file_builders.h"

namespace {

using slimrt::ErrorCategory;
constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ4_1 = 3, kQ5_0 = 6, kQ5_1 = 7, kQ8_0 = 8,
                   kQ6_K = 14, kBF16 = 30;

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// IEEE half -> float from the definition (2^(e-15) * 1.m), not from bit tricks.
float half(uint16_t h) {
  const int e = (h >> 10) & 0x1F, m = h & 0x3FF;
  const float sign = (h & 0x8000) ? -1.0f : 1.0f;
  if (e == 0x1F) {
    const uint32_t bits = (uint32_t{h & 0x8000u} << 16) | 0x7F800000u | uint32_t(m) << 13;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
  }
  if (e == 0) return sign * std::ldexp(static_cast<float>(m), -24);
  return sign * std::ldexp(1.0f + m / 1024.0f, e - 15);
}

template <class T>
T load(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// The reference decoder: one element from its block by ggml-quants.c's formulas.
float reference(uint32_t type, const uint8_t* b, int j) {
  const float d = half(load<uint16_t>(b));
  if (type == kQ8_0) return static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
  const bool has_min = type == kQ4_1 || type == kQ5_1;
  const bool five_bits = type == kQ5_0 || type == kQ5_1;
  const int qh_at = has_min ? 4 : 2;
  const int qs_at = qh_at + (five_bits ? 4 : 0);
  int q = j < 16 ? b[qs_at + j] & 15 : b[qs_at + j - 16] >> 4;
  if (five_bits) q |= ((load<uint32_t>(b + qh_at) >> j) & 1) << 4;
  if (has_min) return d * static_cast<float>(q) + half(load<uint16_t>(b + 2));
  return d * static_cast<float>(q - (five_bits ? 16 : 8));
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

void expect_same_bits(const std::vector<float>& got, const std::vector<float>& want) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(bits_of(got[i]), bits_of(want[i])) << "element " << i;
  }
}

TEST(GgufDequantize, QuantizedBlocksMatchTheirFormulaBitForBit) {
  for (const uint32_t type : {kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ8_0}) {
    const int64_t bytes = slimrt::ggml_type_info(type)->type_size;
    const int64_t blocks = 300;  // random scales: NaNs, infinities and subnormals among them
    auto src = random_bytes(blocks * bytes, type);
    if (type == kQ4_1 || type == kQ5_1) {
      // A finite minimum: NaN + NaN gives either payload, as the compiler orders the operands.
      for (int64_t i = 0; i < blocks; ++i) src[i * bytes + 3] &= 0xBF;
    }
    std::vector<float> want(blocks * 32);
    for (int64_t i = 0; i < blocks; ++i) {
      for (int j = 0; j < 32; ++j) want[i * 32 + j] = reference(type, src.data() + i * bytes, j);
    }
    std::vector<float> got(want.size());
    slimrt::gguf_dequantize_f32(type, src.data(), blocks * 32, got.data());
    SCOPED_TRACE(slimrt::ggml_type_name(type));
    expect_same_bits(got, want);
  }
}

TEST(GgufDequantize, F16WidensEveryPatternExactlyKeepingNanPayloads) {
  std::vector<uint16_t> src(65536);
  for (int i = 0; i < 65536; ++i) src[i] = static_cast<uint16_t>(i);
  std::vector<float> want(65536), got(65536);
  for (int i = 0; i < 65536; ++i) want[i] = half(src[i]);
  slimrt::gguf_dequantize_f32(kF16, reinterpret_cast<const uint8_t*>(src.data()), 65536,
                              got.data());
  expect_same_bits(got, want);
  EXPECT_EQ(bits_of(got[0x7C01]), 0x7F802000u);  // a signalling NaN stays signalling
}

TEST(GgufDequantize, F32AndBf16AreCopiedAndWidened) {
  const auto src = random_bytes(4 * 100, 7);
  std::vector<float> got(100), want(100);
  std::memcpy(want.data(), src.data(), 400);
  slimrt::gguf_dequantize_f32(kF32, src.data(), 100, got.data());
  expect_same_bits(got, want);
  for (int i = 0; i < 100; ++i) {
    const uint32_t bits = uint32_t{src[2 * i]} << 16 | uint32_t{src[2 * i + 1]} << 24;
    std::memcpy(&want[i], &bits, 4);
  }
  slimrt::gguf_dequantize_f32(kBF16, src.data(), 100, got.data());
  expect_same_bits(got, want);
}

TEST(GgufDequantize, Bf16IsTheF32ResultRoundedToNearestEven) {
  for (const uint32_t type : {kF32, kF16, kBF16, kQ4_0, kQ4_1, kQ5_0, kQ5_1, kQ8_0}) {
    const auto* info = slimrt::ggml_type_info(type);
    // Over two of the converter's chunks, with a partial last one.
    const int64_t count = 2048 * 2 + 32 * 5;
    const auto src = random_bytes(count / info->block_size * info->type_size, 100 + type);
    std::vector<float> f32(count);
    std::vector<uint16_t> bf16(count);
    slimrt::gguf_dequantize_f32(type, src.data(), count, f32.data());
    slimrt::gguf_dequantize_bf16(type, src.data(), count, bf16.data());
    for (int64_t i = 0; i < count; ++i) {
      const uint32_t u = bits_of(f32[i]);
      const uint16_t want = std::isnan(f32[i])
                                ? static_cast<uint16_t>(u >> 16 | 0x40)
                                : static_cast<uint16_t>((u + 0x7FFF + ((u >> 16) & 1)) >> 16);
      ASSERT_EQ(bf16[i], want) << info->name << " element " << i;
    }
  }
}

TEST(GgufDequantize, RefusesUnsupportedTypesAndPartialBlocks) {
  EXPECT_TRUE(slimrt::gguf_dequantize_supported(kQ4_1));
  EXPECT_FALSE(slimrt::gguf_dequantize_supported(kQ6_K));
  EXPECT_FALSE(slimrt::gguf_dequantize_supported(99));
  float out[256];
  const uint8_t src[256] = {};
  slimrt::test::expect_error(
      [&] { slimrt::gguf_dequantize_f32(kQ6_K, src, 256, out); }, ErrorCategory::kUnsupported,
      "dequantizing GGUF tensor type Q6_K is not supported (slimrt dequantizes F32, F16, BF16, "
      "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)");
  slimrt::test::expect_error(
      [&] { slimrt::gguf_dequantize_f32(99, src, 1, out); }, ErrorCategory::kUnsupported,
      "dequantizing GGUF tensor type type 99 is not supported (slimrt dequantizes F32, F16, BF16, "
      "Q4_0, Q4_1, Q5_0, Q5_1, Q8_0)");
  slimrt::test::expect_error([&] { slimrt::gguf_dequantize_f32(kQ8_0, src, 33, out); },
                             ErrorCategory::kInvalidArgument,
                             "GGUF Q8_0: element count 33 is not a multiple of the block size 32");
}

}  // namespace
