#include <algorithm>

#include "huffman.h"
#include "slimrt/df11.h"

namespace slimrt {

Df11View Df11Tensor::view() const {
  Df11View v;
  v.lengths = lengths.data();
  v.bitstream = bitstream.data();
  v.bitstream_words = static_cast<int64_t>(bitstream.size());
  v.index = index.data();
  v.signmant = signmant.data();
  v.numel = numel;
  return v;
}

int64_t Df11Tensor::compressed_bytes() const {
  return static_cast<int64_t>(lengths.size() + bitstream.size() * 4 + index.size() * 4 +
                              signmant.size());
}

Df11Table df11_build_table(const uint8_t* lengths) {
  CodeLengths code_lengths{};
  Df11Table table;
  for (int s = 0; s < df11::kSymbols; ++s) {
    code_lengths[s] = lengths[s];
    table.table_bits = std::max<int>(table.table_bits, lengths[s]);
  }
  // Entries no code reaches stay 0 (length 0): a corrupt stream then stalls in place instead
  // of running ahead, and every lane still stops after its element count.
  table.entries.assign(size_t{1} << table.table_bits, 0);
  const auto codes = canonical_codes(code_lengths);
  for (int s = 0; s < df11::kSymbols; ++s) {
    const int len = code_lengths[s];
    if (len == 0) continue;
    const int spare = table.table_bits - len;
    const uint32_t first = static_cast<uint32_t>(codes[s]) << spare;
    const uint16_t entry = static_cast<uint16_t>(len << 8 | s);
    for (uint32_t i = 0; i < (1u << spare); ++i) table.entries[first + i] = entry;
  }
  return table;
}

}  // namespace slimrt
