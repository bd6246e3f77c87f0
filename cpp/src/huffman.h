// Length-limited canonical Huffman codes over byte symbols, as DF11 uses for exponents.
#pragma once

#include <array>
#include <cstdint>

namespace slimrt {

using SymbolCounts = std::array<uint64_t, 256>;
using CodeLengths = std::array<uint8_t, 256>;

// Optimal code lengths (package-merge) with no code longer than max_length. max_length is
// raised to ceil(log2(distinct symbols)) when smaller, since no shorter complete code exists.
// One distinct symbol gets length 1; no symbols, all lengths 0.
CodeLengths build_code_lengths(const SymbolCounts& counts, int max_length);

// Canonical codes (DEFLATE's rule) for the given lengths; codes[s] is meaningful where
// lengths[s] > 0, right-aligned in the low lengths[s] bits.
std::array<uint16_t, 256> canonical_codes(const CodeLengths& lengths);

}  // namespace slimrt
