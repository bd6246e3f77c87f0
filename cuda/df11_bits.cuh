// One lane's DF11 bit reader (docs/FORMAT.md, version 1), shared by the kernels that decode
// DF11 on the GPU: the decoder into BF16 (df11_decode.cu) and the matmul that multiplies as it
// decodes (matmul_df11.cu). Device code: include from .cu files only.
//
//   LaneBits bits = start_lane(bitstream, first_word, lane_offset(offset_pair, lane));
//   uint32_t a, b;
//   decode_two(bits, table_s, 32 - table_bits, a, b);   // two shared-memory entries
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "slimrt/df11.h"

namespace slimrt {

// Sign/mantissa bytes are read exactly once: keep them out of L1, where the bitstream lives.
__device__ __forceinline__ uint2 load_once(const uint2* p) {
  uint2 v;
  asm("ld.global.nc.L1::no_allocate.v2.u32 {%0, %1}, [%2];" : "=r"(v.x), "=r"(v.y) : "l"(p));
  return v;
}

// Bitstream words: cached in L1, where a lane's later refills find them. On an L2 miss the whole
// 128-byte line comes from DRAM, since L1 misses are per 32-byte sector and the neighbouring
// sectors are the same lane's next words.
__device__ __forceinline__ uint32_t load_bits(const uint32_t* p) {
  uint32_t v;
  asm("ld.global.nc.L2::128B.u32 %0, [%1];" : "=r"(v) : "l"(p));
  return v;
}

__device__ __forceinline__ void prefetch_l2(const void* p) {
  asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
}

// A 64-bit window hi:lo holds the lane's next bits, left-aligned (the next code starts at bit 31
// of hi; the bits below the valid ones are 0). Refills happen before each pair of codes and keep
// at least 32 bits valid, enough for two codes of at most 12 bits. The word after the window is
// loaded one refill ahead, so a refill never waits on memory. The lane reads at most two words
// past the one it stands in, which FORMAT.md's tail padding makes safe without bound checks.
//
// `avail`, the number of valid bits, is only exact modulo 128: decode_pair() subtracts whole
// shared-memory entries (symbol << 7 | length) instead of masking out their lengths first, and
// every use of avail looks at its low 7 bits only.
struct LaneBits {
  uint32_t hi;
  uint32_t lo;
  uint32_t avail;
  uint32_t next;         // the word after the window
  const uint32_t* word;  // the word after `next`
};

__device__ __forceinline__ uint32_t lane_offset(uint32_t offset_pair, uint32_t lane) {
  return (offset_pair >> ((lane & 1) * 16)) & 0xFFFFu;
}

__device__ __forceinline__ LaneBits start_lane(const uint32_t* bitstream, uint32_t first_word,
                                               uint32_t offset) {
  const uint32_t* p = bitstream + first_word + (offset >> 5);
  const uint32_t skip = offset & 31;
  const uint32_t a = load_bits(p);
  const uint32_t b = load_bits(p + 1);
  LaneBits s;
  s.hi = __funnelshift_l(b, a, skip);
  s.lo = b << skip;
  s.avail = 64 - skip;
  s.next = load_bits(p + 2);
  s.word = p + 3;
  return s;
}

__device__ __forceinline__ void refill(LaneBits& s) {
  // avail is in 8..64 here (the previous refill left >= 32, two codes took <= 24), so bits 5-6 of
  // avail are both 0 exactly when fewer than 32 bits are valid; funnel shifts use avail & 31.
  if ((s.avail & 0x60u) == 0) {
    s.hi |= __funnelshift_r(s.next, 0u, s.avail);  // next >> avail
    s.lo |= __funnelshift_r(0u, s.next, s.avail);  // next << (32 - avail)
    s.avail += 32;
    s.next = load_bits(s.word);
    ++s.word;
  }
}

// Consumes the next code and returns its shared-memory entry: the symbol shifted to where its
// user wants it (bit 7 or higher) | the length. The funnel shifts take the entry itself as their
// amount: they use its low 5 bits, which are the length.
template <class Entry>
__device__ __forceinline__ uint32_t decode_code(LaneBits& s, const Entry* table_s, uint32_t shift) {
  const uint32_t entry = table_s[s.hi >> shift];
  s.hi = __funnelshift_l(s.lo, s.hi, entry);
  s.lo = __funnelshift_l(0u, s.lo, entry);
  return entry;
}

// Two codes, refilling first.
template <class Entry>
__device__ __forceinline__ void decode_two(LaneBits& s, const Entry* table_s, uint32_t shift,
                                           uint32_t& first, uint32_t& second) {
  refill(s);
  first = decode_code(s, table_s, shift);
  second = decode_code(s, table_s, shift);
  // The symbols are multiples of 128 in the entries, so avail stays exact modulo 128.
  s.avail = s.avail - first - second;
}

// The length of a table entry (length << 8 | symbol), clamped to the format's maximum so that even
// a corrupt table cannot move a lane past the bitstream's over-read margin.
__device__ __forceinline__ uint32_t df11_code_length(uint32_t entry) {
  return min(entry >> 8, uint32_t{df11::kMaxCodeLength});
}

}  // namespace slimrt
