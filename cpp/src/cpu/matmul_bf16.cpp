#include <algorithm>
#include <utility>

#include "bf16.h"
#include "isa.h"
#include "kernels.h"
#include "simd.h"

namespace slimrt::cpu {
namespace {

// Every kernel computes dot products along k (w is [n][k], so k is the contiguous direction of
// both operands): no packing and no scratch.
//
// Decode (rows <= a variant's stream_rows): memory-bound, so each thread walks its weight rows
// as one sequential stream with a software prefetch a few KB ahead; a tile of several weight
// rows at once makes several streams and measured 15-25 % slower on Zen 5.
//
// Prefill: compute-bound, so tiles of R activation rows x C weight rows share every load.
// A block of kRowTile activation rows x kKBlock columns (24 KB) stays in L1 while it meets every
// weight tile of an L2-sized block of weight rows.
constexpr int kRowTile = 6;
constexpr int kColTile = 4;
constexpr int64_t kKBlock = 1024;
constexpr int64_t kL2Bytes = 512 * 1024;
// Below this many multiply-adds a dispatch to the pool costs more than it saves.
constexpr int64_t kMinParallelWork = 1 << 16;

// Bytes ahead of the weight stream to prefetch (measured best of 1, 2, 4 KB).
constexpr int64_t kPrefetchBytes = 4096;

using StreamFn = void (*)(const float* x, int64_t k, const uint16_t* w, int64_t j_begin,
                          int64_t j_end, const float* bias, float* out, int64_t ldo);
using TileFn = void (*)(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t kc,
                        const float* bias, bool accumulate, float* out, int64_t ldo);

// Writes (or adds, for later k-blocks) one tile row of results.
inline void store_sums(const float* sums, int c_count, const float* bias, bool accumulate,
                       float* out) {
  for (int c = 0; c < c_count; ++c) {
    if (accumulate) {
      out[c] += sums[c];
    } else {
      out[c] = sums[c] + (bias != nullptr ? bias[c] : 0.0f);
    }
  }
}

template <int R, int C>
void tile_portable(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw, int64_t kc,
                   const float* bias, bool accumulate, float* out, int64_t ldo) {
  // Eight independent lanes per dot product let the compiler vectorise without reassociating.
  constexpr int kLanes = 8;
  float acc[R][C][kLanes] = {};
  int64_t kk = 0;
  for (; kk + kLanes <= kc; kk += kLanes) {
    float wv[C][kLanes];
    for (int c = 0; c < C; ++c) {
      for (int l = 0; l < kLanes; ++l) wv[c][l] = bf16_to_f32(w[c * ldw + kk + l]);
    }
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) {
        for (int l = 0; l < kLanes; ++l) acc[r][c][l] += x[r * ldx + kk + l] * wv[c][l];
      }
    }
  }
  for (; kk < kc; ++kk) {
    for (int r = 0; r < R; ++r) {
      for (int c = 0; c < C; ++c) acc[r][c][0] += x[r * ldx + kk] * bf16_to_f32(w[c * ldw + kk]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float sums[C];
    for (int c = 0; c < C; ++c) {
      float s = 0.0f;
      for (int l = 0; l < kLanes; ++l) s += acc[r][c][l];
      sums[c] = s;
    }
    store_sums(sums, C, bias, accumulate, out + r * ldo);
  }
}

template <int R>
void stream_portable(const float* x, int64_t k, const uint16_t* w, int64_t j_begin, int64_t j_end,
                     const float* bias, float* out, int64_t ldo) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    tile_portable<R, 1>(x, k, w + j * k, k, k, bias != nullptr ? bias + j : nullptr, false, out + j,
                        ldo);
  }
}

#if SLIMRT_X86_SIMD

// ---- AVX-512: 16 weights per step; the k tail uses masked loads (no scalar loop). ----

SLIMRT_TARGET_AVX512 inline __m512 widen16(__m256i bf16) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(bf16), 16));
}

// Four horizontal sums at once: cheaper than four separate reductions.
SLIMRT_TARGET_AVX512 inline __m128 reduce4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // Per 128-bit lane: [a0+a2, b0+b2, a1+a3, b1+b3] and the same for c, d.
  const __m512 ab = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
  const __m512 cd = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
  // Per lane: [a, b, c, d].
  const __m512 abcd = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(1, 0, 1, 0)),
                                    _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(abcd), 1));
  const __m256 h = _mm256_add_ps(_mm512_castps512_ps256(abcd), hi);
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

template <int R, int C>
SLIMRT_TARGET_AVX512 void tile_avx512(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
                                      int64_t kc, const float* bias, bool accumulate, float* out,
                                      int64_t ldo) {
  // Padded to kColTile columns: the unused ones stay zero for reduce4 (and cost nothing).
  __m512 acc[R][kColTile];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < kColTile; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  int64_t kk = 0;
  for (; kk + 16 <= kc; kk += 16) {
    __m512 wv[C];
    for (int c = 0; c < C; ++c) {
      wv[c] = widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + c * ldw + kk)));
    }
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_loadu_ps(x + r * ldx + kk);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  if (kk < kc) {
    const __mmask16 m = static_cast<__mmask16>((1u << (kc - kk)) - 1u);
    __m512 wv[C];
    for (int c = 0; c < C; ++c) wv[c] = widen16(_mm256_maskz_loadu_epi16(m, w + c * ldw + kk));
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_maskz_loadu_ps(m, x + r * ldx + kk);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm512_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(16) float sums[4];
    _mm_store_ps(sums, reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
    store_sums(sums, C, bias, accumulate, out + r * ldo);
  }
}

template <int R>
SLIMRT_TARGET_AVX512 void stream_avx512(const float* x, int64_t k, const uint16_t* w,
                                        int64_t j_begin, int64_t j_end, const float* bias,
                                        float* out, int64_t ldo) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    const uint16_t* wr = w + j * k;
    // Two accumulators per row hide the FMA latency.
    __m512 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm512_setzero_ps();
    int64_t kk = 0;
    for (; kk + 32 <= k; kk += 32) {
      _mm_prefetch(reinterpret_cast<const char*>(wr + kk) + kPrefetchBytes, _MM_HINT_T0);
      const __m512 w0 = widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + kk)));
      const __m512 w1 = widen16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + kk + 16)));
      for (int r = 0; r < R; ++r) {
        a0[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k + kk), w0, a0[r]);
        a1[r] = _mm512_fmadd_ps(_mm512_loadu_ps(x + r * k + kk + 16), w1, a1[r]);
      }
    }
    for (; kk < k; kk += 16) {
      const __mmask16 m =
          k - kk >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - kk)) - 1u);
      const __m512 w0 = widen16(_mm256_maskz_loadu_epi16(m, wr + kk));
      for (int r = 0; r < R; ++r) {
        a0[r] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + r * k + kk), w0, a0[r]);
      }
    }
    const float b = bias != nullptr ? bias[j] : 0.0f;
    for (int r = 0; r < R; ++r) {
      out[r * ldo + j] = _mm512_reduce_add_ps(_mm512_add_ps(a0[r], a1[r])) + b;
    }
  }
}

// ---- AVX2: 8 weights per step; at most 2 x 4 accumulators fit the 16 registers. ----

SLIMRT_TARGET_AVX2 inline __m256 widen8(__m128i bf16) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(bf16), 16));
}

SLIMRT_TARGET_AVX2 inline __m128 reduce4(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 abcd = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(abcd), _mm256_extractf128_ps(abcd, 1));
}

template <int R, int C>
SLIMRT_TARGET_AVX2 void tile_avx2(const float* x, int64_t ldx, const uint16_t* w, int64_t ldw,
                                  int64_t kc, const float* bias, bool accumulate, float* out,
                                  int64_t ldo) {
  // Padded to kColTile columns: the unused ones stay zero for reduce4 (and cost nothing).
  __m256 acc[R][kColTile];
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < kColTile; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  int64_t kk = 0;
  for (; kk + 8 <= kc; kk += 8) {
    __m256 wv[C];
    for (int c = 0; c < C; ++c) {
      wv[c] = widen8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c * ldw + kk)));
    }
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_loadu_ps(x + r * ldx + kk);
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(xv, wv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    alignas(16) float sums[4];
    _mm_store_ps(sums, reduce4(acc[r][0], acc[r][1], acc[r][2], acc[r][3]));
    for (int64_t t = kk; t < kc; ++t) {
      for (int c = 0; c < C; ++c) sums[c] += x[r * ldx + t] * bf16_to_f32(w[c * ldw + t]);
    }
    store_sums(sums, C, bias, accumulate, out + r * ldo);
  }
}

template <int R>
SLIMRT_TARGET_AVX2 void stream_avx2(const float* x, int64_t k, const uint16_t* w, int64_t j_begin,
                                    int64_t j_end, const float* bias, float* out, int64_t ldo) {
  for (int64_t j = j_begin; j < j_end; ++j) {
    const uint16_t* wr = w + j * k;
    __m256 a0[R], a1[R];
    for (int r = 0; r < R; ++r) a0[r] = a1[r] = _mm256_setzero_ps();
    int64_t kk = 0;
    for (; kk + 16 <= k; kk += 16) {
      _mm_prefetch(reinterpret_cast<const char*>(wr + kk) + kPrefetchBytes, _MM_HINT_T0);
      const __m256 w0 = widen8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + kk)));
      const __m256 w1 = widen8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + kk + 8)));
      for (int r = 0; r < R; ++r) {
        a0[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * k + kk), w0, a0[r]);
        a1[r] = _mm256_fmadd_ps(_mm256_loadu_ps(x + r * k + kk + 8), w1, a1[r]);
      }
    }
    const float b = bias != nullptr ? bias[j] : 0.0f;
    for (int r = 0; r < R; ++r) {
      const __m256 a = _mm256_add_ps(a0[r], a1[r]);
      __m128 h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      float sum = _mm_cvtss_f32(h);
      for (int64_t t = kk; t < k; ++t) sum += x[r * k + t] * bf16_to_f32(wr[t]);
      out[r * ldo + j] = sum + b;
    }
  }
}

#endif  // SLIMRT_X86_SIMD

// Tile kernels for every (rows, cols) remainder, indexed [R - 1][C - 1].
template <template <int, int> class Tile, int MaxR>
struct TileTable {
  TileFn fns[MaxR][kColTile];
};

template <int R, int C>
struct PortableTile {
  static constexpr TileFn fn = tile_portable<R, C>;
};
#if SLIMRT_X86_SIMD
template <int R, int C>
struct Avx512Tile {
  static constexpr TileFn fn = tile_avx512<R, C>;
};
template <int R, int C>
struct Avx2Tile {
  static constexpr TileFn fn = tile_avx2<R, C>;
};
#endif

template <template <int, int> class Tile, int... Rs>
constexpr auto make_table(std::integer_sequence<int, Rs...>) {
  TileTable<Tile, sizeof...(Rs)> t{};
  ((t.fns[Rs][0] = Tile<Rs + 1, 1>::fn, t.fns[Rs][1] = Tile<Rs + 1, 2>::fn,
    t.fns[Rs][2] = Tile<Rs + 1, 3>::fn, t.fns[Rs][3] = Tile<Rs + 1, 4>::fn),
   ...);
  return t;
}

struct Variant {
  const TileFn* fns;  // [max_rows][kColTile]
  int max_rows;
  const StreamFn* stream;  // [stream_rows]
  int stream_rows;
};

Variant variant_for(Isa isa) {
  static constexpr auto portable = make_table<PortableTile>(std::make_integer_sequence<int, 4>());
  static constexpr StreamFn portable_stream[] = {stream_portable<1>, stream_portable<2>,
                                                 stream_portable<3>, stream_portable<4>};
  switch (isa) {
#if SLIMRT_X86_SIMD
    case Isa::kAvx512: {
      static constexpr auto t = make_table<Avx512Tile>(std::make_integer_sequence<int, 6>());
      static constexpr StreamFn s[] = {stream_avx512<1>, stream_avx512<2>, stream_avx512<3>,
                                       stream_avx512<4>, stream_avx512<5>, stream_avx512<6>};
      return {&t.fns[0][0], 6, s, 6};
    }
    case Isa::kAvx2: {
      static constexpr auto t = make_table<Avx2Tile>(std::make_integer_sequence<int, 2>());
      static constexpr StreamFn s[] = {stream_avx2<1>, stream_avx2<2>, stream_avx2<3>,
                                       stream_avx2<4>};
      return {&t.fns[0][0], 2, s, 4};
    }
#endif
    default:
      return {&portable.fns[0][0], 4, portable_stream, 4};
  }
}

// Output columns [j_begin, j_end) for activation rows [r_begin, r_end).
void matmul_block(const Variant& v, const float* x, int64_t r_begin, int64_t r_end, int64_t k,
                  const uint16_t* w, int64_t j_begin, int64_t j_end, const float* bias, float* out,
                  int64_t n) {
  const int64_t rows = r_end - r_begin;
  if (rows <= v.stream_rows) {
    v.stream[rows - 1](x + r_begin * k, k, w, j_begin, j_end, bias, out + r_begin * n, n);
    return;
  }
  const int max_rows = std::min(v.max_rows, kRowTile);
  const int64_t kb = kKBlock;
  const int64_t nb = std::max<int64_t>(kColTile, kL2Bytes / (2 * kb) / kColTile * kColTile);
  for (int64_t k0 = 0; k0 < k; k0 += kb) {
    const int64_t kc = std::min(kb, k - k0);
    const bool accumulate = k0 > 0;
    for (int64_t j0 = j_begin; j0 < j_end; j0 += nb) {
      const int64_t j1 = std::min(j_end, j0 + nb);
      for (int64_t r = r_begin; r < r_end; r += max_rows) {
        const int rr = static_cast<int>(std::min<int64_t>(max_rows, r_end - r));
        for (int64_t j = j0; j < j1; j += kColTile) {
          const int cc = static_cast<int>(std::min<int64_t>(kColTile, j1 - j));
          v.fns[(rr - 1) * kColTile + (cc - 1)](x + r * k + k0, k, w + j * k + k0, k, kc,
                                                bias != nullptr ? bias + j : nullptr, accumulate,
                                                out + r * n + j, n);
        }
      }
    }
  }
}

}  // namespace

void matmul_bf16_rows(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t count,
                      const float* bias, float* out, int64_t ldo) {
  if (rows == 0 || count == 0) return;
  matmul_block(variant_for(active_isa()), x, 0, rows, k, w, 0, count, bias, out, ldo);
}

void matmul_bf16(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t n,
                 const float* bias, float* out, ThreadPool& pool) {
  if (rows == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t j = 0; j < n; ++j) out[r * n + j] = bias != nullptr ? bias[j] : 0.0f;
    }
    return;
  }
  const Variant v = variant_for(active_isa());
  // Columns are split in units of 16 so that no thread gets a sliver; rows are split too only
  // when there are more threads than column units (small n, many cores).
  const int64_t col_units = (n + 15) / 16;
  const int64_t threads = rows * n * k < kMinParallelWork ? 1 : pool.size();
  const int64_t col_parts = std::min(col_units, threads);
  const int64_t row_parts =
      std::max<int64_t>(1, std::min(threads / col_parts, rows / (2 * kRowTile)));
  pool.run(col_parts * row_parts, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      const int64_t cp = p % col_parts;
      const int64_t rp = p / col_parts;
      const int64_t j0 = std::min(n, col_units * cp / col_parts * 16);
      const int64_t j1 = std::min(n, col_units * (cp + 1) / col_parts * 16);
      const int64_t r0 = rows * rp / row_parts;
      const int64_t r1 = rows * (rp + 1) / row_parts;
      matmul_block(v, x, r0, r1, k, w, j0, j1, bias, out, n);
    }
  });
}

}  // namespace slimrt::cpu
