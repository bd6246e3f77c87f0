#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>

#include "../fast_exp.h"
#include "../kv_record.h"
#include "bf16.h"
#include "check.h"
#include "kernels.h"
#include "simd.h"

namespace slimrt::cpu {
namespace {

// Work is split into units of (sequence, KV head, tile of query tokens[, piece of context]).
// A unit covers every query head of its KV head's group, so each K/V row is loaded (and, for
// BF16, widened) once for the whole group, and for a prefill tile once for all its tokens.
// Units are handed out dynamically: causal tiles differ in cost, so a static split would leave
// threads idle.
//
// Online softmax runs over blocks of kBlock cache positions: one AVX-512 vector of scores.
constexpr int kBlock = 16;
constexpr int64_t kMaxHeadDim = kMaxAttentionHeadDim;
// Query rows (tokens x heads of a group) per unit: enough to reuse each K/V block, few enough
// that a prefill chunk still makes many units.
constexpr int64_t kTileRows = 64;
constexpr int64_t kMaxGroup = kMaxAttentionGroup;
// Decode has few (sequence, KV head) pairs; when there are fewer units than 2x threads, long
// contexts are cut into pieces of at least kMinPieceTokens, and the pieces' partial softmaxes are
// merged afterwards (FlashDecoding). The partials live on the caller's stack, which bounds them.
constexpr int64_t kMinPieceTokens = 256;
constexpr int64_t kMaxPieces = 16;
constexpr int64_t kPartialFloats = 16384;

// Blocks of K/V rows requested ahead of use (pages are scattered: see run_unit).
constexpr int64_t kPrefetchBlocks = 2;
// Compressed records are a third the size of dense rows: as many bytes ahead take more blocks.
constexpr int64_t kMixedPrefetchBlocks = 6;

alignas(64) const float kZeros[kMaxHeadDim] = {};

// Rows that one block of cache positions updates: row r has query q[r], sees positions
// [beg[r], lim[r]) of the block (0 <= beg < lim <= kBlock: the sliding window's start and the
// causal limit), and carries a running max m[r] and sum l[r] of its softmax and its
// unnormalised output acc[r].
struct BlockRows {
  const float* const* q;
  const int* beg;
  const int* lim;
  float* m;
  float* l;
  float* const* acc;
  int64_t count;
};

// The online-softmax update of `rows` with the block's K and V rows k[t], v[t] (head_dim floats;
// k[t] past the block's end point at zeros). Scores are scaled by scale * log2(e), so that exp
// becomes exp2.
using BlockFn = void (*)(const BlockRows& rows, const float* const* k, const float* const* v,
                         int64_t head_dim, float scale_log2);
// Widens n BF16 rows of head_dim (src[t]) into dst[t * kMaxHeadDim].
using WidenFn = void (*)(const uint16_t* const* src, int n, int64_t head_dim, float* dst);
// Expands n compressed records (kv_record.h) into dst[t * kMaxHeadDim]: the kept values where
// the bitmap is set, zeros elsewhere. It may write zeros up to the next multiple of 32 past
// head_dim, and read up to 16 bytes past a record (kKvRecordTailPad).
using ExpandFn = void (*)(const uint8_t* const* records, int n, int64_t head_dim, float* dst);

inline void block_portable(const BlockRows& rows, const float* const* k, const float* const* v,
                           int64_t hd, float scale_log2) {
  for (int64_t r = 0; r < rows.count; ++r) {
    const float* q = rows.q[r];
    const int beg = rows.beg[r];
    const int lim = rows.lim[r];
    float* acc = rows.acc[r];
    float s[kBlock];
    float block_max = -std::numeric_limits<float>::infinity();
    for (int t = beg; t < lim; ++t) {
      // Independent lanes let the compiler vectorise the dot product without reassociating.
      constexpr int kLanes = 8;
      float lanes[kLanes] = {};
      int64_t d = 0;
      for (; d + kLanes <= hd; d += kLanes) {
        for (int i = 0; i < kLanes; ++i) lanes[i] += q[d + i] * k[t][d + i];
      }
      for (; d < hd; ++d) lanes[0] += q[d] * k[t][d];
      float dot = 0.0f;
      for (float x : lanes) dot += x;
      s[t] = dot * scale_log2;
      block_max = std::max(block_max, s[t]);
    }
    const float m_new = std::max(rows.m[r], block_max);
    const float alpha = exp2_fast(rows.m[r] - m_new);
    float sum = 0.0f;
    for (int t = beg; t < lim; ++t) {
      s[t] = exp2_fast(s[t] - m_new);
      sum += s[t];
    }
    rows.l[r] = rows.l[r] * alpha + sum;
    rows.m[r] = m_new;
    // Output in chunks of kLanes held in registers across all positions of the block, rather
    // than a pass over acc in memory per position.
    constexpr int kLanes = 8;
    int64_t d0 = 0;
    for (; d0 + kLanes <= hd; d0 += kLanes) {
      float o[kLanes];
      for (int i = 0; i < kLanes; ++i) o[i] = acc[d0 + i] * alpha;
      for (int t = beg; t < lim; ++t) {
        for (int i = 0; i < kLanes; ++i) o[i] += s[t] * v[t][d0 + i];
      }
      for (int i = 0; i < kLanes; ++i) acc[d0 + i] = o[i];
    }
    for (; d0 < hd; ++d0) {
      float o = acc[d0] * alpha;
      for (int t = beg; t < lim; ++t) o += s[t] * v[t][d0];
      acc[d0] = o;
    }
  }
}

inline void widen_portable(const uint16_t* const* src, int n, int64_t hd, float* dst) {
  for (int t = 0; t < n; ++t) {
    for (int64_t i = 0; i < hd; ++i) dst[t * kMaxHeadDim + i] = bf16_to_f32(src[t][i]);
  }
}

inline void expand_portable(const uint8_t* const* records, int n, int64_t hd, float* dst) {
  const int64_t bitmap_bytes = kv_bitmap_bytes(hd);
  for (int t = 0; t < n; ++t) {
    const uint8_t* bits = records[t];
    const uint8_t* values = records[t] + bitmap_bytes;
    float* row = dst + t * kMaxHeadDim;
    for (int64_t i = 0; i < hd; ++i) {
      uint16_t x = 0;
      if (bits[i / 8] >> (i % 8) & 1u) {
        std::memcpy(&x, values, 2);
        values += 2;
      }
      row[i] = bf16_to_f32(x);
    }
  }
}

void expand_scalar(const uint8_t* const* records, int n, int64_t hd, float* dst) {
  expand_portable(records, n, hd, dst);
}

void block_scalar(const BlockRows& rows, const float* const* k, const float* const* v, int64_t hd,
                  float scale_log2) {
  block_portable(rows, k, v, hd, scale_log2);
}
void widen_scalar(const uint16_t* const* src, int n, int64_t hd, float* dst) {
  widen_portable(src, n, hd, dst);
}

#if SLIMRT_X86_SIMD

// The portable code, compiled for AVX2 by inlining it here.
SLIMRT_TARGET_AVX2 SLIMRT_FLATTEN void block_avx2(const BlockRows& rows, const float* const* k,
                                                  const float* const* v, int64_t hd,
                                                  float scale_log2) {
  block_portable(rows, k, v, hd, scale_log2);
}
SLIMRT_TARGET_AVX2 SLIMRT_FLATTEN void widen_avx2(const uint16_t* const* src, int n, int64_t hd,
                                                  float* dst) {
  widen_portable(src, n, hd, dst);
}

// For each bitmap byte b, lane j's rank: how many of b's bits below j are set, which is where
// element j's value sits among the byte's kept values.
struct ExpandRanks {
  uint8_t rank[256][8];
  constexpr ExpandRanks() : rank{} {
    for (int b = 0; b < 256; ++b) {
      int seen = 0;
      for (int j = 0; j < 8; ++j) {
        rank[b][j] = static_cast<uint8_t>(seen);
        seen += b >> j & 1;
      }
    }
  }
};
constexpr ExpandRanks kExpandRanks;

// Eight elements per bitmap byte: the next eight values, widened to 32 bits, permuted to their
// elements by the byte's ranks and masked by its bits.
SLIMRT_TARGET_AVX2 void expand_avx2(const uint8_t* const* records, int n, int64_t hd, float* dst) {
  const int64_t bitmap_bytes = kv_bitmap_bytes(hd);
  const __m256i select = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
  for (int t = 0; t < n; ++t) {
    const uint8_t* bits = records[t];
    const uint16_t* values = reinterpret_cast<const uint16_t*>(records[t] + bitmap_bytes);
    float* row = dst + t * kMaxHeadDim;
    for (int64_t i = 0; i < hd; i += 8) {
      const unsigned b = bits[i / 8];
      const __m256i x =
          _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(values)));
      const __m256i rank = _mm256_cvtepu8_epi32(
          _mm_loadl_epi64(reinterpret_cast<const __m128i*>(kExpandRanks.rank[b])));
      const __m256i keep = _mm256_cmpeq_epi32(
          _mm256_and_si256(_mm256_set1_epi32(static_cast<int>(b)), select), select);
      const __m256i y = _mm256_and_si256(_mm256_permutevar8x32_epi32(x, rank), keep);
      _mm256_storeu_ps(row + i, _mm256_castsi256_ps(_mm256_slli_epi32(y, 16)));
      values += __builtin_popcount(b);
    }
  }
}

// 32 elements per step: vpexpandw places the next popcount(mask) values (a masked load reads
// no further) at the mask's set bits, then each half widens to FP32.
SLIMRT_TARGET_AVX512_VBMI2 void expand_vbmi2(const uint8_t* const* records, int n, int64_t hd,
                                             float* dst) {
  const int64_t bitmap_bytes = kv_bitmap_bytes(hd);
  for (int t = 0; t < n; ++t) {
    const uint8_t* bits = records[t];
    const uint16_t* values = reinterpret_cast<const uint16_t*>(records[t] + bitmap_bytes);
    float* row = dst + t * kMaxHeadDim;
    for (int64_t i = 0; i < hd; i += 32) {
      // The bitmap ends on a 16-bit word: the last step may have only one. (Fixed-size copies
      // compile to loads; a copy of a variable size would call memcpy.)
      uint32_t mask;
      if (bitmap_bytes - i / 8 >= 4) {
        std::memcpy(&mask, bits + i / 8, 4);
      } else {
        uint16_t half;
        std::memcpy(&half, bits + i / 8, 2);
        mask = half;
      }
      // The register form: vpexpandw from memory is microcoded on some CPUs (AMD Zen 4).
      const int count = __builtin_popcount(mask);
      const __mmask32 take = static_cast<__mmask32>((uint64_t{1} << count) - 1);
      const __m512i x = _mm512_maskz_expand_epi16(mask, _mm512_maskz_loadu_epi16(take, values));
      values += count;
      _mm512_storeu_ps(row + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                    _mm512_cvtepu16_epi32(_mm512_castsi512_si256(x)), 16)));
      _mm512_storeu_ps(row + i + 16,
                       _mm512_castsi512_ps(_mm512_slli_epi32(
                           _mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(x, 1)), 16)));
    }
  }
}

// Masked loads and stores only for a head_dim tail: a masked store does not forward to the
// load that reads it back a few instructions later.
SLIMRT_TARGET_AVX512 void widen_avx512(const uint16_t* const* src, int n, int64_t hd, float* dst) {
  for (int t = 0; t < n; ++t) {
    int64_t i = 0;
    for (; i + 16 <= hd; i += 16) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src[t] + i));
      _mm512_storeu_ps(dst + t * kMaxHeadDim + i,
                       _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16)));
    }
    if (i < hd) {
      const __m256i x =
          _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << (hd - i)) - 1u), src[t] + i);
      _mm512_storeu_ps(dst + t * kMaxHeadDim + i,
                       _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16)));
    }
  }
}

// 2^x for x <= 0 (softmax arguments), ~2 ulp; below -127 it is denormal or 0, which the caller
// masks anyway.
SLIMRT_TARGET_AVX512 inline __m512 exp2_avx512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-127.0f));
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 r = _mm512_mul_ps(_mm512_sub_ps(x, n), _mm512_set1_ps(0.693147180559945f));
  __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

// Sixteen horizontal sums at once (lane t = sum of part[t]): a transpose-and-add tree of 15
// additions instead of 16 separate reductions.
SLIMRT_TARGET_AVX512 inline __m512 reduce16(const __m512* part) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {  // 256-bit halves: part[i] low, part[i + 8] high
    a[i] = _mm512_add_ps(_mm512_shuffle_f32x4(part[i], part[i + 8], 0x44),
                         _mm512_shuffle_f32x4(part[i], part[i + 8], 0xEE));
  }
  for (int i = 0; i < 4; ++i) {  // 128-bit lanes hold parts [i, i + 8, i + 4, i + 12]
    b[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a[i], a[i + 4], 0x88),
                         _mm512_shuffle_f32x4(a[i], a[i + 4], 0xDD));
  }
  for (int i = 0; i < 2; ++i) {
    c[i] = _mm512_add_ps(_mm512_shuffle_ps(b[i], b[i + 2], 0x44),
                         _mm512_shuffle_ps(b[i], b[i + 2], 0xEE));
  }
  const __m512 s =
      _mm512_add_ps(_mm512_shuffle_ps(c[0], c[1], 0x88), _mm512_shuffle_ps(c[0], c[1], 0xDD));
  // s holds parts in the order 0 2 1 3 8 10 9 11 4 6 5 7 12 14 13 15.
  const __m512i order = _mm512_setr_epi32(0, 2, 1, 3, 8, 10, 9, 11, 4, 6, 5, 7, 12, 14, 13, 15);
  return _mm512_permutexvar_ps(order, s);
}

// Vector c of a row; the last one is masked when head_dim is not a multiple of 16 (reads
// nothing past the row's end).
template <int NC>
SLIMRT_TARGET_AVX512 inline __m512 load_chunk(const float* row, int c, __mmask16 tail) {
  return c < NC - 1 || tail == 0xFFFF ? _mm512_loadu_ps(row + c * 16)
                                      : _mm512_maskz_loadu_ps(tail, row + c * 16);
}

// NC = ceil(head_dim / 16) vectors per row, known at compile time so that q and the output
// accumulator live in registers. Rows run in one loop so that the out-of-order core overlaps
// one row's dependency chain (dot products, reductions, exp, P*V) with the next row's.
template <int NC>
SLIMRT_TARGET_AVX512 void block_avx512(const BlockRows& rows, const float* const* k,
                                       const float* const* v, int64_t hd, float scale_log2) {
  const int tail_len = static_cast<int>(hd - (NC - 1) * 16);
  const __mmask16 tail =
      tail_len >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << tail_len) - 1u);
  const __m512 neg_inf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  for (int64_t r = 0; r < rows.count; ++r) {
    const float* q = rows.q[r];
    float* acc = rows.acc[r];
    __m512 qv[NC];
    for (int c = 0; c < NC; ++c) qv[c] = load_chunk<NC>(q, c, tail);
    __m512 part[kBlock];
    for (int t = 0; t < kBlock; ++t) {
      __m512 d = _mm512_mul_ps(qv[0], load_chunk<NC>(k[t], 0, tail));
      for (int c = 1; c < NC; ++c) d = _mm512_fmadd_ps(qv[c], load_chunk<NC>(k[t], c, tail), d);
      part[t] = d;
    }
    const int beg = rows.beg[r];
    const int lim = rows.lim[r];
    const __mmask16 valid = static_cast<__mmask16>(((1u << lim) - 1u) & ~((1u << beg) - 1u));
    const __m512 s = _mm512_mask_mul_ps(neg_inf, valid, reduce16(part), _mm512_set1_ps(scale_log2));
    const float m_old = rows.m[r];
    const float m_new = std::max(m_old, _mm512_reduce_max_ps(s));
    const __m512 p =
        _mm512_maskz_mov_ps(valid, exp2_avx512(_mm512_sub_ps(s, _mm512_set1_ps(m_new))));
    const float alpha = exp2_fast(m_old - m_new);  // 0 on the first block (m = -inf)
    rows.l[r] = rows.l[r] * alpha + _mm512_reduce_add_ps(p);
    rows.m[r] = m_new;
    alignas(64) float pw[kBlock];
    _mm512_store_ps(pw, p);
    // Two accumulator sets halve the chain of dependent FMAs per output vector.
    constexpr int kSets = NC <= 8 ? 2 : 1;
    __m512 o[kSets][NC];
    const __m512 a = _mm512_set1_ps(alpha);
    for (int c = 0; c < NC; ++c) {
      o[0][c] = _mm512_mul_ps(load_chunk<NC>(acc, c, tail), a);
      if (kSets > 1) o[kSets - 1][c] = _mm512_setzero_ps();
    }
    int t = beg;
    for (; t + kSets <= lim; t += kSets) {
      for (int j = 0; j < kSets; ++j) {
        const __m512 pt = _mm512_set1_ps(pw[t + j]);
        for (int c = 0; c < NC; ++c) {
          o[j][c] = _mm512_fmadd_ps(pt, load_chunk<NC>(v[t + j], c, tail), o[j][c]);
        }
      }
    }
    for (; t < lim; ++t) {
      const __m512 pt = _mm512_set1_ps(pw[t]);
      for (int c = 0; c < NC; ++c) {
        o[0][c] = _mm512_fmadd_ps(pt, load_chunk<NC>(v[t], c, tail), o[0][c]);
      }
    }
    for (int c = 0; c < NC; ++c) {
      const __m512 sum = kSets > 1 ? _mm512_add_ps(o[0][c], o[kSets - 1][c]) : o[0][c];
      if (c < NC - 1 || tail == 0xFFFF) {
        _mm512_storeu_ps(acc + c * 16, sum);
      } else {
        _mm512_mask_storeu_ps(acc + c * 16, tail, sum);
      }
    }
  }
}

template <int... NCs>
BlockFn avx512_block_for(int64_t nc, std::integer_sequence<int, NCs...>) {
  static constexpr BlockFn table[] = {block_avx512<NCs + 1>...};
  return table[nc - 1];
}

#endif  // SLIMRT_X86_SIMD

struct Kernels {
  BlockFn block;
  WidenFn widen;
  ExpandFn expand;
};

Kernels kernels_for(Isa isa, int64_t head_dim) {
  switch (isa) {
#if SLIMRT_X86_SIMD
    case Isa::kAvx512:
      return {avx512_block_for((head_dim + 15) / 16,
                               std::make_integer_sequence<int, kMaxHeadDim / 16>()),
              widen_avx512, vbmi2_active() ? expand_vbmi2 : expand_avx2};
    case Isa::kAvx2:
      return {block_avx2, widen_avx2, expand_avx2};
#endif
    default:
      return {block_scalar, widen_scalar, expand_scalar};
  }
}

// Everything one call shares.
struct Problem {
  const float* q;
  float* out;
  PagedKv kv;
  PagedBatch batch;
  int64_t heads;
  int64_t group;        // query heads per KV head
  int64_t tile_tokens;  // query tokens per unit
  int64_t pieces;       // context pieces per (sequence, KV head, tile); 1 = no split
  int64_t unit_rows;    // most query rows in a unit
  float scale_log2;
  float* partials;  // pieces > 1: per unit, rows x [m, l, acc[head_dim]]
  Kernels kernels;

  int64_t tiles(int64_t s) const {
    const int64_t nq = batch.q_indptr[s + 1] - batch.q_indptr[s];
    return (nq + tile_tokens - 1) / tile_tokens;
  }
  int64_t units(int64_t s) const { return tiles(s) * kv.kv_heads * pieces; }
  int64_t partial_stride() const { return unit_rows * (kv.head_dim + 2); }
};

// The first cache position a query at `pos` sees.
int64_t window_start(const PagedBatch& batch, int64_t pos) {
  return batch.window > 0 ? std::max<int64_t>(0, pos - batch.window + 1) : 0;
}

int64_t first_page(const PagedBatch& batch, int64_t s) {
  return batch.first_pages != nullptr ? batch.first_pages[s] : 0;
}

struct Unit {
  int64_t seq, kv_head, tok_begin, tok_end, kv_begin, kv_end;
  float* partial;  // nullptr: write normalised rows to out
};

// Unit `local` of sequence s, ordered tile-major with the last (costliest causal) tile first.
Unit make_unit(const Problem& p, int64_t s, int64_t local, int64_t global) {
  const int64_t nq = p.batch.q_indptr[s + 1] - p.batch.q_indptr[s];
  const int64_t per_tile = p.kv.kv_heads * p.pieces;
  const int64_t tile = p.tiles(s) - 1 - local / per_tile;
  Unit u;
  u.seq = s;
  u.kv_head = local % per_tile / p.pieces;
  u.tok_begin = tile * p.tile_tokens;
  u.tok_end = std::min(nq, u.tok_begin + p.tile_tokens);
  const int64_t kv_end = p.batch.context_lens[s] - nq + u.tok_end;
  const int64_t kv_begin = window_start(p.batch, p.batch.context_lens[s] - nq + u.tok_begin);
  if (p.pieces == 1) {
    u.kv_begin = kv_begin;
    u.kv_end = kv_end;
    u.partial = nullptr;
  } else {
    const int64_t piece = local % p.pieces;
    const int64_t span = kv_end - kv_begin;
    const int64_t len = ((span + p.pieces - 1) / p.pieces + kBlock - 1) / kBlock * kBlock;
    u.kv_begin = std::min(kv_end, kv_begin + piece * len);
    u.kv_end = std::min(kv_end, u.kv_begin + len);
    u.partial = p.partials + global * p.partial_stride();
  }
  return u;
}

void run_unit(const Problem& p, const Unit& u) {
  const int64_t hd = p.kv.head_dim;
  const int64_t nq = p.batch.q_indptr[u.seq + 1] - p.batch.q_indptr[u.seq];
  const int64_t first_pos = p.batch.context_lens[u.seq] - nq;  // position of query token 0
  const int64_t rows = (u.tok_end - u.tok_begin) * p.group;
  float m[kTileRows + kMaxGroup];
  float l[kTileRows + kMaxGroup];
  float* acc[kTileRows + kMaxGroup];
  const float* qrow[kTileRows + kMaxGroup];
  int beg[kTileRows + kMaxGroup];
  int lim[kTileRows + kMaxGroup];
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t token = p.batch.q_indptr[u.seq] + u.tok_begin + r / p.group;
    const int64_t head = u.kv_head * p.group + r % p.group;
    qrow[r] = p.q + (token * p.heads + head) * hd;
    acc[r] =
        u.partial != nullptr ? u.partial + r * (hd + 2) + 2 : p.out + (token * p.heads + head) * hd;
    m[r] = -std::numeric_limits<float>::infinity();
    l[r] = 0.0f;
    std::fill(acc[r], acc[r] + hd, 0.0f);
  }

  alignas(64) float k_buf[kBlock][kMaxHeadDim];
  alignas(64) float v_buf[kBlock][kMaxHeadDim];
  const float* k_rows[kBlock];
  const float* v_rows[kBlock];
  const char* k_src[kBlock];
  const char* v_src[kBlock];
  const int32_t* pages = p.batch.page_indices + p.batch.page_indptr[u.seq];
  const int64_t unlisted = first_page(p.batch, u.seq);  // pages[i] is page unlisted + i
  const int64_t elem = p.kv.dtype == KvDtype::kF32 ? 4 : 2;
  const int64_t row_bytes = hd * elem;
  // Byte offsets of the rows of positions [b0, b0 + n): one division per block, not per row.
  auto row_offsets = [&](int64_t b0, int n, int64_t* offsets) {
    int64_t page = b0 / p.kv.page_size;
    int64_t in_page = b0 - page * p.kv.page_size;
    page -= unlisted;
    for (int t = 0; t < n; ++t) {
      const int64_t slot = static_cast<int64_t>(pages[page]) * p.kv.page_size + in_page;
      offsets[t] = (slot * p.kv.kv_heads + u.kv_head) * row_bytes;
      if (++in_page == p.kv.page_size) {
        in_page = 0;
        ++page;
      }
    }
  };
  // Pages are scattered, so the hardware prefetcher loses the stream at every page boundary:
  // fetch the rows kPrefetchBlocks blocks ahead.
  int64_t offsets[kBlock];
  auto prefetch_block = [&](int64_t b0) {
    const int n = static_cast<int>(std::min<int64_t>(kBlock, u.kv_end - b0));
    if (n <= 0) return;
    row_offsets(b0, n, offsets);
    for (int t = 0; t < n; ++t) {
      for (int64_t byte = 0; byte < row_bytes; byte += 64) {
        SLIMRT_PREFETCH(static_cast<const char*>(p.kv.k_pages) + offsets[t] + byte);
        SLIMRT_PREFETCH(static_cast<const char*>(p.kv.v_pages) + offsets[t] + byte);
      }
    }
  };
  // With compressed pages, positions [b0, b0 + n) are cut into runs that stay on one page, and
  // each run is widened (dense) or expanded (compressed) into the block's buffers.
  const int64_t k_record = kv_record_bytes(hd, p.kv.k_kept);
  const int64_t v_record = kv_record_bytes(hd, p.kv.v_kept);
  auto for_each_run = [&](int64_t b0, int n, auto&& fn) {
    int64_t page = b0 / p.kv.page_size;
    int64_t in_page = b0 - page * p.kv.page_size;
    page -= unlisted;
    for (int t = 0; t < n;) {
      const int run = static_cast<int>(std::min<int64_t>(n - t, p.kv.page_size - in_page));
      const int64_t id = pages[page];
      if (p.kv.compressed(id)) {
        // A compressed page keeps each KV head's records together: the run is contiguous.
        const int64_t first =
            ((id - p.kv.dense_pages) * p.kv.kv_heads + u.kv_head) * p.kv.page_size + in_page;
        for (int j = 0; j < run; ++j) {
          k_src[t + j] = static_cast<const char*>(p.kv.k_records) + (first + j) * k_record;
          v_src[t + j] = static_cast<const char*>(p.kv.v_records) + (first + j) * v_record;
        }
      } else {
        const int64_t first = (id * p.kv.page_size + in_page) * p.kv.kv_heads + u.kv_head;
        for (int j = 0; j < run; ++j) {
          k_src[t + j] =
              static_cast<const char*>(p.kv.k_pages) + (first + j * p.kv.kv_heads) * row_bytes;
          v_src[t + j] =
              static_cast<const char*>(p.kv.v_pages) + (first + j * p.kv.kv_heads) * row_bytes;
        }
      }
      fn(t, run, p.kv.compressed(id));
      t += run;
      in_page = 0;
      ++page;
    }
  };
  auto prefetch_mixed = [&](int64_t b0) {
    const int n = static_cast<int>(std::min<int64_t>(kBlock, u.kv_end - b0));
    if (n <= 0) return;
    for_each_run(b0, n, [&](int t0, int run, bool compressed) {
      const int64_t kb = compressed ? k_record : row_bytes;
      const int64_t vb = compressed ? v_record : row_bytes;
      // Records start anywhere in a line: their last byte may be one line further.
      for (int t = t0; t < t0 + run; ++t) {
        for (int64_t byte = 0; byte < kb; byte += 64) SLIMRT_PREFETCH(k_src[t] + byte);
        SLIMRT_PREFETCH(k_src[t] + kb - 1);
        for (int64_t byte = 0; byte < vb; byte += 64) SLIMRT_PREFETCH(v_src[t] + byte);
        SLIMRT_PREFETCH(v_src[t] + vb - 1);
      }
    });
  };
  if (p.kv.k_records != nullptr) {
    for (int64_t b = 0; b < kMixedPrefetchBlocks; ++b) prefetch_mixed(u.kv_begin + b * kBlock);
  } else {
    for (int64_t b = 0; b < kPrefetchBlocks; ++b) prefetch_block(u.kv_begin + b * kBlock);
  }
  for (int64_t b0 = u.kv_begin; b0 < u.kv_end; b0 += kBlock) {
    const int n = static_cast<int>(std::min<int64_t>(kBlock, u.kv_end - b0));
    if (p.kv.k_records != nullptr) {
      prefetch_mixed(b0 + kMixedPrefetchBlocks * kBlock);
      for_each_run(b0, n, [&](int t0, int run, bool compressed) {
        if (compressed) {
          p.kernels.expand(reinterpret_cast<const uint8_t* const*>(k_src + t0), run, hd,
                           &k_buf[t0][0]);
          p.kernels.expand(reinterpret_cast<const uint8_t* const*>(v_src + t0), run, hd,
                           &v_buf[t0][0]);
        } else {
          p.kernels.widen(reinterpret_cast<const uint16_t* const*>(k_src + t0), run, hd,
                          &k_buf[t0][0]);
          p.kernels.widen(reinterpret_cast<const uint16_t* const*>(v_src + t0), run, hd,
                          &v_buf[t0][0]);
        }
      });
    } else {
      prefetch_block(b0 + kPrefetchBlocks * kBlock);
      row_offsets(b0, n, offsets);
      for (int t = 0; t < n; ++t) {
        k_src[t] = static_cast<const char*>(p.kv.k_pages) + offsets[t];
        v_src[t] = static_cast<const char*>(p.kv.v_pages) + offsets[t];
      }
      if (p.kv.dtype == KvDtype::kF32) {
        for (int t = 0; t < n; ++t) {
          k_rows[t] = reinterpret_cast<const float*>(k_src[t]);
          v_rows[t] = reinterpret_cast<const float*>(v_src[t]);
        }
      } else {
        p.kernels.widen(reinterpret_cast<const uint16_t* const*>(k_src), n, hd, &k_buf[0][0]);
        p.kernels.widen(reinterpret_cast<const uint16_t* const*>(v_src), n, hd, &v_buf[0][0]);
      }
    }
    if (p.kv.k_records != nullptr || p.kv.dtype != KvDtype::kF32) {
      for (int t = 0; t < n; ++t) {
        k_rows[t] = k_buf[t];
        v_rows[t] = v_buf[t];
      }
    }
    for (int t = n; t < kBlock; ++t) k_rows[t] = v_rows[t] = kZeros;
    // Rows are ordered by token, so the rows that see some of this block are consecutive: those
    // before them end before it (causal), those after start past it (sliding window).
    int64_t first = rows;
    int64_t last = rows;
    for (int64_t r = 0; r < rows; ++r) {
      const int64_t pos = first_pos + u.tok_begin + r / p.group;  // causal limit of this row
      lim[r] = static_cast<int>(std::min<int64_t>(n, pos - b0 + 1));
      beg[r] = static_cast<int>(std::max<int64_t>(0, window_start(p.batch, pos) - b0));
      if (lim[r] > beg[r]) {
        if (first == rows) first = r;
        last = r + 1;
      }
    }
    if (first < rows) {
      const BlockRows br{qrow + first, beg + first, lim + first, m + first,
                         l + first,    acc + first, last - first};
      p.kernels.block(br, k_rows, v_rows, hd, p.scale_log2);
    }
  }

  for (int64_t r = 0; r < rows; ++r) {
    if (u.partial != nullptr) {
      u.partial[r * (hd + 2)] = m[r];
      u.partial[r * (hd + 2) + 1] = l[r];
    } else {
      const float inv = 1.0f / l[r];
      for (int64_t d = 0; d < hd; ++d) acc[r][d] *= inv;
    }
  }
}

// Combines the pieces of every split unit: out = sum_j acc_j 2^(m_j - M) / sum_j l_j 2^(m_j - M).
void merge_pieces(const Problem& p) {
  const int64_t hd = p.kv.head_dim;
  const int64_t stride = p.partial_stride();
  int64_t base = 0;
  for (int64_t s = 0; s < p.batch.num_seqs; ++s) {
    const int64_t units = p.units(s);
    for (int64_t local = 0; local < units; local += p.pieces) {
      const Unit u = make_unit(p, s, local, base + local);
      for (int64_t r = 0; r < (u.tok_end - u.tok_begin) * p.group; ++r) {
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < p.pieces; ++j) {
          mx = std::max(mx, u.partial[j * stride + r * (hd + 2)]);
        }
        const int64_t token = p.batch.q_indptr[s] + u.tok_begin + r / p.group;
        const int64_t head = u.kv_head * p.group + r % p.group;
        float* o = p.out + (token * p.heads + head) * hd;
        std::fill(o, o + hd, 0.0f);
        float total = 0.0f;
        for (int64_t j = 0; j < p.pieces; ++j) {
          const float* part = u.partial + j * stride + r * (hd + 2);
          if (part[1] == 0.0f) continue;  // a piece past this row's causal limit
          const float w = std::exp2(part[0] - mx);
          total += part[1] * w;
          for (int64_t d = 0; d < hd; ++d) o[d] += part[2 + d] * w;
        }
        const float inv = 1.0f / total;
        for (int64_t d = 0; d < hd; ++d) o[d] *= inv;
      }
    }
    base += units;
  }
}

}  // namespace

void paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch, int64_t heads,
                     float scale, float* out, ThreadPool& pool) {
  int64_t max_context = 0;
  int64_t max_queries = 0;
  for (int64_t s = 0; s < batch.num_seqs; ++s) {
    const int64_t nq = batch.q_indptr[s + 1] - batch.q_indptr[s];
    const int64_t ctx = batch.context_lens[s];
    const int64_t pages = batch.page_indptr[s + 1] - batch.page_indptr[s];
    const int64_t unlisted = first_page(batch, s);
    SLIMRT_CHECK(nq >= 0 && nq <= ctx, "paged_attention: sequence "
                                           << s << " has " << nq
                                           << " query tokens but a context of " << ctx);
    SLIMRT_CHECK(unlisted >= 0 && (unlisted + pages) * kv.page_size >= ctx,
                 "paged_attention: sequence " << s << " has " << pages << " pages of "
                                              << kv.page_size << " from page " << unlisted
                                              << " for " << ctx << " tokens");
    SLIMRT_CHECK(nq == 0 || window_start(batch, ctx - nq) >= unlisted * kv.page_size,
                 "paged_attention: sequence "
                     << s << " lists its pages from page " << unlisted << " but its query at "
                     << ctx - nq << " sees position " << window_start(batch, ctx - nq));
    // What a unit reads: the window of the first query through the last.
    if (nq > 0) max_context = std::max(max_context, ctx - window_start(batch, ctx - nq));
    max_queries = std::max(max_queries, nq);
  }

  Problem p;
  p.q = q;
  p.out = out;
  p.kv = kv;
  p.batch = batch;
  p.heads = heads;
  p.group = heads / kv.kv_heads;
  p.tile_tokens = std::max<int64_t>(1, kTileRows / p.group);
  p.pieces = 1;
  p.unit_rows = std::min(p.tile_tokens, max_queries) * p.group;
  p.scale_log2 = scale * 1.4426950408889634f;
  p.kernels = kernels_for(active_isa(), kv.head_dim);

  int64_t units = 0;
  for (int64_t s = 0; s < batch.num_seqs; ++s) units += p.units(s);
  if (units == 0) return;
  const int64_t threads = pool.size();
  alignas(64) float partials[kPartialFloats];
  if (threads > 1 && units < 2 * threads) {
    int64_t pieces =
        std::min({(2 * threads + units - 1) / units, max_context / kMinPieceTokens, kMaxPieces});
    while (pieces > 1 && units * pieces * p.partial_stride() > kPartialFloats) --pieces;
    if (pieces > 1) {
      p.pieces = pieces;
      p.partials = partials;
      units *= pieces;
    }
  }

  std::atomic<int64_t> next{0};
  pool.run(std::min(units, threads), [&](int64_t, int64_t) {
    // Units are claimed in increasing order, so each thread finds a unit's sequence by walking
    // forward from the previous one.
    int64_t s = 0;
    int64_t base = 0;
    for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < units;) {
      while (i >= base + p.units(s)) base += p.units(s++);
      run_unit(p, make_unit(p, s, i - base, i));
    }
  });
  if (p.pieces > 1) merge_pieces(p);
}

}  // namespace slimrt::cpu
