#include "crc32.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "parallel.h"

namespace slimrt {
namespace {

constexpr uint32_t kPoly = 0xEDB88320u;  // reflected 0x04C11DB7

// Slicing-by-8: eight bytes per step through eight 256-entry tables.
struct Tables {
  std::array<std::array<uint32_t, 256>, 8> t{};
  Tables() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPoly : c >> 1;
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; ++i) {
      for (int s = 1; s < 8; ++s) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xFF];
    }
  }
};
const Tables& tables() {
  static const Tables instance;
  return instance;
}

// a * b modulo the polynomial, in the reflected bit order.
uint32_t multiply_mod(uint32_t a, uint32_t b) {
  uint32_t m = 1u << 31;
  uint32_t product = 0;
  for (;;) {
    if (a & m) {
      product ^= b;
      if ((a & (m - 1)) == 0) break;
    }
    m >>= 1;
    b = (b & 1) ? (b >> 1) ^ kPoly : b >> 1;
  }
  return product;
}

// x^(8 * size) modulo the polynomial: what a CRC is multiplied by when `size` bytes follow it.
uint32_t shift_for_bytes(uint64_t size) {
  uint32_t power = 1u << 30;   // x^1
  uint32_t result = 1u << 31;  // x^0
  // x^(2^k) for k = 3.. (one byte is x^8) by repeated squaring.
  for (int k = 0; k < 3; ++k) power = multiply_mod(power, power);
  while (size) {
    if (size & 1) result = multiply_mod(power, result);
    power = multiply_mod(power, power);
    size >>= 1;
  }
  return result;
}

}  // namespace

uint32_t crc32_update(uint32_t crc, const void* data, size_t size) {
  const auto& t = tables().t;
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t c = ~crc;
  while (size >= 8) {
    uint32_t lo, hi;
    std::memcpy(&lo, p, 4);
    std::memcpy(&hi, p + 4, 4);
    lo ^= c;
    c = t[7][lo & 0xFF] ^ t[6][(lo >> 8) & 0xFF] ^ t[5][(lo >> 16) & 0xFF] ^ t[4][lo >> 24] ^
        t[3][hi & 0xFF] ^ t[2][(hi >> 8) & 0xFF] ^ t[1][(hi >> 16) & 0xFF] ^ t[0][hi >> 24];
    p += 8;
    size -= 8;
  }
  while (size--) c = (c >> 8) ^ t[0][(c ^ *p++) & 0xFF];
  return ~c;
}

uint32_t crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t size_b) {
  return multiply_mod(shift_for_bytes(size_b), crc_a) ^ crc_b;
}

uint32_t crc32(const void* data, size_t size, int num_threads) {
  constexpr size_t kPiece = size_t{1} << 22;  // below this, threads cost more than they save
  const int64_t pieces = static_cast<int64_t>((size + kPiece - 1) / kPiece);
  if (pieces <= 1 || resolve_threads(num_threads, pieces) == 1) {
    return crc32_update(0, data, size);
  }
  const auto* bytes = static_cast<const uint8_t*>(data);
  std::vector<uint32_t> crcs(pieces);
  parallel_for(pieces, num_threads, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const size_t offset = static_cast<size_t>(i) * kPiece;
      crcs[i] = crc32_update(0, bytes + offset, std::min(kPiece, size - offset));
    }
  });
  return crc32_of_pieces(crcs.data(), pieces, kPiece,
                         size - static_cast<size_t>(pieces - 1) * kPiece);
}

uint32_t crc32_of_pieces(const uint32_t* crcs, int64_t count, uint64_t piece, uint64_t last) {
  if (count <= 0) return 0;
  // One shift by a whole piece, computed once: folding is then one multiplication per piece.
  const uint32_t shift = shift_for_bytes(piece);
  uint32_t crc = crcs[0];
  for (int64_t i = 1; i + 1 < count; ++i) crc = multiply_mod(shift, crc) ^ crcs[i];
  return count == 1 ? crc : crc32_combine(crc, crcs[count - 1], last);
}

}  // namespace slimrt
