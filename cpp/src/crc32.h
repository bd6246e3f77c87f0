// CRC-32 (ISO-HDLC: the polynomial and conventions of zlib, PNG and gzip), so a checksum
// slimrt writes can be checked with zlib.crc32 or any other standard tool.
//
//   uint32_t c = slimrt::crc32(data, size);             // multithreaded for large buffers
//   uint32_t c2 = slimrt::crc32_update(c, more, n);     // continue a running checksum
#pragma once

#include <cstddef>
#include <cstdint>

namespace slimrt {

uint32_t crc32_update(uint32_t crc, const void* data, size_t size);
uint32_t crc32(const void* data, size_t size, int num_threads = 0);
// CRC of A||B from crc(A), crc(B) and the length of B.
uint32_t crc32_combine(uint32_t crc_a, uint32_t crc_b, uint64_t size_b);
// CRC of the concatenation of `count` pieces from their CRCs: every piece `piece` bytes long but
// the last, `last` bytes (a buffer checksummed in parallel, on threads or on a GPU).
uint32_t crc32_of_pieces(const uint32_t* crcs, int64_t count, uint64_t piece, uint64_t last);

}  // namespace slimrt
