#include <gtest/gtest.h>

#include <random>

#include "huffman.h"

namespace {

using slimrt::CodeLengths;
using slimrt::SymbolCounts;

uint64_t kraft_sum(const CodeLengths& lengths, int unit_bits) {
  uint64_t sum = 0;
  for (int len : lengths) {
    if (len) sum += uint64_t{1} << (unit_bits - len);
  }
  return sum;
}

uint64_t cost(const SymbolCounts& counts, const CodeLengths& lengths) {
  uint64_t bits = 0;
  for (int s = 0; s < 256; ++s) bits += counts[s] * lengths[s];
  return bits;
}

TEST(Huffman, UnlimitedLengthsMatchTheClassicHuffmanCost) {
  // Frequencies 1, 1, 2, 3, 5, 8: Huffman cost is 45 bits (lengths 5 5 4 3 2 1).
  SymbolCounts counts{};
  const uint64_t f[] = {1, 1, 2, 3, 5, 8};
  for (int i = 0; i < 6; ++i) counts[10 + i] = f[i];
  const CodeLengths lengths = slimrt::build_code_lengths(counts, 16);
  EXPECT_EQ(cost(counts, lengths), 45u);
  EXPECT_EQ(kraft_sum(lengths, 16), uint64_t{1} << 16);
}

TEST(Huffman, LengthLimitIsRespectedAndTheCodeStaysComplete) {
  SymbolCounts counts{};
  for (int s = 0; s < 40; ++s) counts[s] = uint64_t{1} << (s % 40);  // Fibonacci-like skew
  for (int limit = 6; limit <= 12; ++limit) {
    const CodeLengths lengths = slimrt::build_code_lengths(counts, limit);
    for (int s = 0; s < 256; ++s) {
      EXPECT_LE(lengths[s], limit);
      EXPECT_EQ(lengths[s] > 0, counts[s] > 0);
    }
    EXPECT_EQ(kraft_sum(lengths, 16), uint64_t{1} << 16) << limit;
  }
}

TEST(Huffman, LimitBelowWhatTheAlphabetNeedsIsRaised) {
  SymbolCounts counts{};
  for (int s = 0; s < 28; ++s) counts[s] = 100 + s;
  const CodeLengths lengths = slimrt::build_code_lengths(counts, 1);
  for (int s = 0; s < 28; ++s) EXPECT_LE(lengths[s], 5);
  EXPECT_EQ(kraft_sum(lengths, 16), uint64_t{1} << 16);
}

TEST(Huffman, SingleSymbolGetsLengthOneAndNoSymbolsGetNothing) {
  SymbolCounts counts{};
  EXPECT_EQ(kraft_sum(slimrt::build_code_lengths(counts, 12), 16), 0u);
  counts[127] = 5;
  const CodeLengths lengths = slimrt::build_code_lengths(counts, 12);
  EXPECT_EQ(lengths[127], 1);
  EXPECT_EQ(kraft_sum(lengths, 16), uint64_t{1} << 15);
}

TEST(Huffman, CanonicalCodesArePrefixFree) {
  std::mt19937_64 rng(11);
  SymbolCounts counts{};
  for (int s = 0; s < 256; ++s) counts[s] = rng() % 1000 + 1;
  const CodeLengths lengths = slimrt::build_code_lengths(counts, 12);
  const auto codes = slimrt::canonical_codes(lengths);
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      if (a == b || lengths[a] > lengths[b]) continue;
      // a's code must not be a prefix of b's.
      EXPECT_NE(codes[b] >> (lengths[b] - lengths[a]), codes[a]) << a << " " << b;
    }
  }
}

}  // namespace
