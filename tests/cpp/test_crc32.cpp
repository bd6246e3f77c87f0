#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "crc32.h"

namespace {

uint32_t bitwise_crc32(const std::vector<uint8_t>& data) {
  uint32_t c = 0xFFFFFFFFu;
  for (uint8_t byte : data) {
    c ^= byte;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
  }
  return ~c;
}

TEST(Crc32, MatchesTheStandardCheckValue) {
  const std::string check = "123456789";
  EXPECT_EQ(slimrt::crc32(check.data(), check.size()), 0xCBF43926u);
  EXPECT_EQ(slimrt::crc32(nullptr, 0), 0u);
}

TEST(Crc32, SlicedAndThreadedAgreeWithBitwiseReference) {
  std::mt19937 rng(7);
  for (size_t size : {1u, 7u, 8u, 9u, 1000u, (1u << 22) + 3, (3u << 22) + 17}) {
    std::vector<uint8_t> data(size);
    for (auto& b : data) b = static_cast<uint8_t>(rng());
    const uint32_t expected = bitwise_crc32(data);
    EXPECT_EQ(slimrt::crc32_update(0, data.data(), size), expected) << size;
    EXPECT_EQ(slimrt::crc32(data.data(), size, 2), expected) << size;
    EXPECT_EQ(slimrt::crc32(data.data(), size, 4), expected) << size;
  }
}

TEST(Crc32, CombineEqualsCrcOfConcatenation) {
  std::vector<uint8_t> a(1234), b(98765);
  std::mt19937 rng(3);
  for (auto& x : a) x = static_cast<uint8_t>(rng());
  for (auto& x : b) x = static_cast<uint8_t>(rng());
  std::vector<uint8_t> ab(a);
  ab.insert(ab.end(), b.begin(), b.end());
  const uint32_t ca = slimrt::crc32(a.data(), a.size()), cb = slimrt::crc32(b.data(), b.size());
  EXPECT_EQ(slimrt::crc32_combine(ca, cb, b.size()), bitwise_crc32(ab));
  EXPECT_EQ(slimrt::crc32_combine(ca, 0, 0), ca);
}

}  // namespace
