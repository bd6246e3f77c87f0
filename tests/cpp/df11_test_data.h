// Inputs the DF11 tests share: BF16 bit patterns with the shapes real weights have.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace slimrt::test {

// float -> BF16 with round-to-nearest-even (what torch's .to(torch.bfloat16) does).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7FFF + ((u >> 16) & 1);
  return static_cast<uint16_t>(u >> 16);
}

inline std::vector<uint16_t> normal_bf16(int64_t n, float stddev, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, stddev);
  std::vector<uint16_t> out(n);
  for (auto& x : out) x = to_bf16(dist(rng));
  return out;
}

inline std::vector<uint16_t> every_bf16_pattern(bool shuffled, uint32_t seed) {
  std::vector<uint16_t> out(65536);
  for (int i = 0; i < 65536; ++i) out[i] = static_cast<uint16_t>(i);
  if (shuffled) std::shuffle(out.begin(), out.end(), std::mt19937(seed));
  return out;
}

}  // namespace slimrt::test
