// Attention over a paged KV cache whose block tables mix dense BF16 pages and compressed
// (bitmap-sparse) pages, decode and prefill in one kernel, on tensor cores.
//
// Why the kernel looks the way it does:
// - Decode over compressed pages is bound by how fast records are expanded, not by the FMAs:
//   a block expands each K/V row once into shared memory as dense BF16 and every query row of
//   the block (the query heads of a GQA group, and for prefill several tokens) uses it through
//   mma.sync.m16n8k16, so the math costs a few instructions per position whatever the group.
// - A block holds 16 query rows (one mma M tile): P query heads of one KV head (P the largest
//   power of two <= 16 dividing the group) times 16 / P tokens, token-major. Its 4 warps take
//   interleaved steps of 16 positions, each warp with its own pipeline (staging, expansion, mma,
//   online softmax) and no barrier with the others, since a block-wide barrier per step left
//   too few warps issuing to hide the expansion's latency; the warps are merged once at the end
//   through shared memory, and decode blocks also split the context across blocks
//   (FlashDecoding, decode_splits.h) merged by a second kernel (split_merge.cuh).
// - Each step's K and V bytes are staged with 16-byte cp.async, double buffered, so the next
//   step's loads are in flight while this one is expanded and multiplied: a dense row as its
//   head_dim * 2 bytes, a compressed record as the aligned 16-byte pieces that cover it (records
//   are 2-byte aligned; the pieces read up to 14 bytes before one and 15 past, which the record
//   region's layout allows).
// - Expansion: 16 lanes per row (HD 128), one per 8 dimensions, i.e. one bitmap byte each; a
//   thread's first value is the popcount of the bytes before its own, a prefix sum over the 16
//   lanes with shuffles, and its 8 outputs are its values or zeros by the bits of its byte. The
//   expanded tile's rows are padded by 16 bytes so that ldmatrix reads fall in different banks.
// - Positions past the block's range are expanded as zeros, so that P·V never meets stale data.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>
#include <cstdint>

#include "attention_cuda.h"
#include "attention_shapes.h"
#include "cuda_check.h"
#include "decode_splits.h"
#include "split_merge.cuh"
#include "tensor_core_ptx.cuh"

namespace slimrt {
namespace {

using attention_shapes::heads_per_block;
using attention_shapes::log2_exact;

constexpr int kThreads = 128;  // 4 warps
constexpr int kWarps = kThreads / 32;
constexpr int kRows = 16;  // query rows (token, head) per block
constexpr int kTile = 64;  // positions per step, 16 per warp
constexpr int kMaxPack = 16;
constexpr int kMinChunkTokens = 256;  // a multiple of kTile: splits start on a step
constexpr int64_t kFixedTokens = 64;
constexpr int kMaxSplits = 1024;
constexpr float kLog2e = 1.4426950408889634f;
// Staging metadata of a position: its record's offset in its first piece (>= 0), or one of these.
constexpr int kDenseRow = -2;
constexpr int kOutside = -1;

template <int HD>
struct Layout {
  static constexpr int kPitch = HD + 8;  // BF16 elements per expanded row
  static constexpr int kTileBytes = kTile * kPitch * 2;
  // Staging: [2 buffers][K, V][kTile positions][slot bytes], then the expanded K and V tiles, the
  // Q tile, and the staging metadata [2][K, V][kTile].
  static int bytes(int slot) {
    return 4 * kTile * slot + 2 * kTileBytes + kRows * kPitch * 2 + 4 * kTile * 4;
  }
};

struct Params {
  const float* q;
  const uint16_t* k;
  const uint16_t* v;
  const uint8_t* k_records;
  const uint8_t* v_records;
  const int32_t* q_indptr;
  const int32_t* page_indptr;
  const int32_t* page_indices;
  const int32_t* context_lens;
  const int32_t* first_pages;
  uint16_t* out;
  float* partial_o;    // [num_tokens * heads][splits][HD]
  float* partial_lse;  // [num_tokens * heads][splits]
  int num_rows;        // num_tokens * heads, for the merge
  int heads;
  int kv_heads;
  int log2_page;
  int dense_pages;
  int k_record;  // bytes of a K record
  int v_record;
  int slot;  // staging bytes per position, a multiple of 16
  int chunk;
  int splits;
  int window;
  float scale_log2;
};

// ---- small device helpers ---------------------------------------------------------------------

using namespace ptx;  // NOLINT: the PTX wrappers of tensor_core_ptx.cuh

// ---- the kernel -------------------------------------------------------------------------------

// Grid: x = group of P query heads, y = sequence, z = query tile (counted from the end) * splits
// + split. Block row r (0..15) is query token tok0 + r / P, query head head0 + r % P.
template <int HD, int P>
__global__ void __launch_bounds__(kThreads, 2) sparse_paged_kernel(const Params p) {
  using L = Layout<HD>;
  constexpr int kPitch = L::kPitch;
  constexpr int kTokens = kRows / P;     // query tokens per block
  constexpr int kDimSteps = HD / 16;     // k steps of Q·Kᵀ
  constexpr int kDimTiles = HD / 8;      // 8-column tiles of the output
  constexpr int kChunks = HD / 8;        // 8-dimension chunks of a row = bytes of a bitmap
  constexpr int kStep = kTile / kWarps;  // positions of one warp's step

  const int seq = blockIdx.y;
  const int split = blockIdx.z % p.splits;
  const int q_tiles = gridDim.z / p.splits;
  const int tok0 = (q_tiles - 1 - static_cast<int>(blockIdx.z) / p.splits) * kTokens;
  const int q_begin = p.q_indptr[seq];
  const int nq = p.q_indptr[seq + 1] - q_begin;
  if (tok0 >= nq) return;
  const int head0 = blockIdx.x * P;
  const int kvh = head0 / (p.heads / p.kv_heads);
  const int ctx = p.context_lens[seq];
  const int kv_end = ctx - nq + min(tok0 + kTokens, nq);  // past the block's last query position
  // The first position any row of the block sees; splits (decode) cover the window from there.
  const int kv_lo = p.window > 0 ? max(0, ctx - nq + tok0 - p.window + 1) : 0;
  const int begin = kv_lo + split * p.chunk;
  const int end = split == p.splits - 1 ? kv_end : min(kv_end, begin + p.chunk);
  const int lane = threadIdx.x % 32;
  const int warp = threadIdx.x / 32;

  if (begin >= end) {
    // Nothing to attend to: only an unsplit block owns output rows to clear (the merge skips
    // empty splits by itself).
    if (p.splits == 1) {
      for (int i = threadIdx.x; i < kRows * kChunks; i += kThreads) {
        const int r = i / kChunks;
        const int tok = tok0 + r / P;
        if (tok < nq) {
          const int64_t row = static_cast<int64_t>(q_begin + tok) * p.heads + head0 + r % P;
          reinterpret_cast<uint4*>(p.out + row * HD)[i % kChunks] = make_uint4(0, 0, 0, 0);
        }
      }
    }
    return;
  }

  // Each warp owns its staging buffers, metadata and expanded rows, so that its pipeline
  // needs no barrier with the others.
  extern __shared__ uint4 smem_raw[];
  uint8_t* const stage = reinterpret_cast<uint8_t*>(smem_raw);  // [warp][2][2][kStep][slot]
  uint16_t* const sk = reinterpret_cast<uint16_t*>(stage + 4 * kTile * p.slot);  // [kTile][kPitch]
  uint16_t* const sv = sk + kTile * kPitch;
  uint16_t* const sq = sv + kTile * kPitch;
  int* const meta_all = reinterpret_cast<int*>(sq + kRows * kPitch);  // [warp][2][2][kStep]
  uint8_t* const wstage = stage + warp * 4 * kStep * p.slot;
  int* const meta = meta_all + warp * 4 * kStep;
  uint16_t* const wk = sk + warp * kStep * kPitch;
  uint16_t* const wv = sv + warp * kStep * kPitch;

  // ---- staging: 16 lanes per position, piece c = lane % 16 (and c + 16 for the records of a
  // wide slot) of its K and its V bytes.
  const int32_t* pages = p.page_indices + p.page_indptr[seq];
  const int unlisted = p.first_pages != nullptr ? p.first_pages[seq] : 0;
  const int page_mask = (1 << p.log2_page) - 1;
  const int piece = lane % 16;
  auto load_step = [&](int t0, int buf) {
#pragma unroll
    for (int i = 0; i < kStep / 2; ++i) {
      const int pos_in = lane / 16 + 2 * i;
      const int pos = t0 + pos_in;
      uint8_t* const k_slot = wstage + ((buf * 2 + 0) * kStep + pos_in) * p.slot;
      uint8_t* const v_slot = wstage + ((buf * 2 + 1) * kStep + pos_in) * p.slot;
      if (pos >= end) {
        if (piece == 0) meta[(buf * 2 + 0) * kStep + pos_in] = kOutside;
        if (piece == 0) meta[(buf * 2 + 1) * kStep + pos_in] = kOutside;
        continue;
      }
      const int id = __ldg(pages + ((pos >> p.log2_page) - unlisted));
      const int in_page = pos & page_mask;
      const uint8_t* k_src;
      const uint8_t* v_src;
      int k_bytes, v_bytes, k_meta, v_meta;
      if (id < p.dense_pages) {
        const int64_t row =
            ((static_cast<int64_t>(id) << p.log2_page) + in_page) * p.kv_heads + kvh;
        k_src = reinterpret_cast<const uint8_t*>(p.k + row * HD);
        v_src = reinterpret_cast<const uint8_t*>(p.v + row * HD);
        k_bytes = v_bytes = HD * 2;
        k_meta = v_meta = kDenseRow;
      } else {
        const int64_t record =
            ((static_cast<int64_t>(id - p.dense_pages) * p.kv_heads + kvh) << p.log2_page) +
            in_page;
        const uint8_t* const k_rec = p.k_records + record * p.k_record;
        const uint8_t* const v_rec = p.v_records + record * p.v_record;
        k_meta = static_cast<int>(reinterpret_cast<uintptr_t>(k_rec) & 15);
        v_meta = static_cast<int>(reinterpret_cast<uintptr_t>(v_rec) & 15);
        k_src = k_rec - k_meta;
        v_src = v_rec - v_meta;
        k_bytes = k_meta + p.k_record;
        v_bytes = v_meta + p.v_record;
      }
      for (int c = piece; c * 16 < k_bytes; c += 16) {
        cp_async16(smem_addr(k_slot + c * 16), k_src + c * 16, true);
      }
      for (int c = piece; c * 16 < v_bytes; c += 16) {
        cp_async16(smem_addr(v_slot + c * 16), v_src + c * 16, true);
      }
      if (piece == 0) {
        meta[(buf * 2 + 0) * kStep + pos_in] = k_meta;
        meta[(buf * 2 + 1) * kStep + pos_in] = v_meta;
      }
    }
  };

  // ---- expansion of a staged buffer into the warp's dense rows: lane item = (tensor, position,
  // chunk); the kChunks lanes of a position are adjacent. Fully unrolled, so that the loads of
  // many items are in flight together.
  auto expand_step = [&](int buf) {
#pragma unroll
    for (int it = 0; it < 2 * kStep * kChunks / 32; ++it) {
      const int item = lane + it * 32;
      const int tensor = item / (kStep * kChunks);
      const int pos_in = (item / kChunks) % kStep;
      const int c = item % kChunks;
      const int m = meta[(buf * 2 + tensor) * kStep + pos_in];
      const uint8_t* const slot = wstage + ((buf * 2 + tensor) * kStep + pos_in) * p.slot;
      const uint8_t* const record = slot + (m > 0 ? m : 0);
      const uint32_t bits = m >= 0 ? record[c] : 0u;
      // Exclusive prefix of the popcounts over the position's kChunks lanes.
      const int count = __popc(bits);
      int scan = count;
#pragma unroll
      for (int offset = 1; offset < kChunks; offset *= 2) {
        const int up = __shfl_up_sync(0xFFFFFFFFu, scan, offset, kChunks);
        if (c >= offset) scan += up;
      }
      uint4 out;
      if (m == kDenseRow) {
        out = *reinterpret_cast<const uint4*>(slot + c * 16);
      } else if (m == kOutside) {
        out = make_uint4(0, 0, 0, 0);
      } else {
        const uint16_t* values =
            reinterpret_cast<const uint16_t*>(record + kChunks) + (scan - count);
        uint32_t h[8];
#pragma unroll
        for (int i = 0; i < 8; ++i) {
          const uint32_t keep = (bits >> i) & 1u;
          h[i] = keep ? *values : 0u;
          values += keep;
        }
        out =
            make_uint4(h[0] | h[1] << 16, h[2] | h[3] << 16, h[4] | h[5] << 16, h[6] | h[7] << 16);
      }
      uint16_t* const dst = (tensor == 0 ? wk : wv) + pos_in * kPitch + c * 8;
      *reinterpret_cast<uint4*>(dst) = out;
    }
  };

  // Warp w takes positions begin + 16 w + 64 i, i = 0, 1, ...
  const int first = begin + warp * kStep;
  if (first < end) load_step(first, 0);
  cp_async_commit();

  // ---- Q tile: FP32 -> BF16 into shared memory (rows past the sequence's end are zero).
  constexpr int kQuads = HD / 4;
#pragma unroll
  for (int it = 0; it < kRows * kQuads / kThreads; ++it) {
    const int i = threadIdx.x + it * kThreads;
    const int r = i / kQuads;
    const int c = i % kQuads;
    const int tok = tok0 + r / P;
    uint2 packed = make_uint2(0, 0);
    if (tok < nq) {
      const int64_t row = static_cast<int64_t>(q_begin + tok) * p.heads + head0 + r % P;
      const float4 x = __ldg(reinterpret_cast<const float4*>(p.q + row * HD) + c);
      packed = make_uint2(pack_bf16x2(x.x, x.y), pack_bf16x2(x.z, x.w));
    }
    *reinterpret_cast<uint2*>(sq + r * kPitch + c * 4) = packed;
  }
  __syncthreads();

  const int g = lane / 4;  // the lane's rows: g and g + 8
  const int t = lane % 4;  // its columns in every 8-column tile: 2t and 2t + 1
  uint32_t qf[kDimSteps][4];
#pragma unroll
  for (int ks = 0; ks < kDimSteps; ++ks) {
    ldmatrix_x4(qf[ks], smem_addr(sq + (lane % 16) * kPitch + ks * 16 + (lane / 16) * 8));
  }
  int row_pos[2];  // the cache position of each of the lane's rows; past-the-end rows the last
  int row_lo[2];   // and the first position it sees
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    row_pos[h] = ctx - nq + min(tok0 + (g + 8 * h) / P, nq - 1);
    row_lo[h] = p.window > 0 ? row_pos[h] - p.window + 1 : 0;
  }

  // ldmatrix row offsets (elements) of this lane within the warp's 16 positions, as in the
  // prefill kernel: K as the column-major B of Q·Kᵀ, V transposed as the B of P·V.
  const int k_lane = (warp * 16 + (lane % 8) + (lane / 16) * 8) * kPitch + ((lane / 8) % 2) * 8;
  const int v_lane = (warp * 16 + (lane % 8) + ((lane / 8) % 2) * 8) * kPitch + (lane / 16) * 8;
  const uint32_t k_tile = smem_addr(sk + k_lane);
  const uint32_t v_tile = smem_addr(sv + v_lane);

  float o[kDimTiles][4];
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};  // this lane's share of the row sums, reduced at the end

  for (int t0 = first, buf = 0; t0 < end; t0 += kTile, buf ^= 1) {
    if (t0 + kTile < end) load_step(t0 + kTile, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncwarp();  // the warp's bytes and metadata are in; its last step's math is done
    expand_step(buf);
    __syncwarp();

    float s[2][4] = {};
#pragma unroll
    for (int ks = 0; ks < kDimSteps; ++ks) {
      uint32_t b[4];
      ldmatrix_x4(b, k_tile + ks * 16 * 2);
      mma_bf16(s[0], qf[ks], b[0], b[1]);
      mma_bf16(s[1], qf[ks], b[2], b[3]);
    }
#pragma unroll
    for (int n = 0; n < 2; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int pos = t0 + n * 8 + 2 * t + (e & 1);
        s[n][e] = pos >= end || pos > row_pos[e / 2] || pos < row_lo[e / 2]
                      ? -INFINITY
                      : s[n][e] * p.scale_log2;
      }
    }
    float alpha[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = fmaxf(
          m[h], fmaxf(fmaxf(s[0][2 * h], s[0][2 * h + 1]), fmaxf(s[1][2 * h], s[1][2 * h + 1])));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 2));
      // A warp whose positions are all masked so far keeps m = -inf: subtracting 0 then keeps
      // every exp at 0 instead of NaN.
      const float base = mx == -INFINITY ? 0.0f : mx;
      alpha[h] = exp2_approx(m[h] - base);
      m[h] = mx;
      l[h] *= alpha[h];
#pragma unroll
      for (int n = 0; n < 2; ++n) {
        s[n][2 * h] = exp2_approx(s[n][2 * h] - base);
        s[n][2 * h + 1] = exp2_approx(s[n][2 * h + 1] - base);
        l[h] += s[n][2 * h] + s[n][2 * h + 1];
      }
    }
    // Past the first steps the running maxima rarely move: skip the 64 multiplies by 1.
    if (!__all_sync(0xFFFFFFFFu, alpha[0] == 1.0f && alpha[1] == 1.0f)) {
#pragma unroll
      for (int d = 0; d < kDimTiles; ++d) {
#pragma unroll
        for (int e = 0; e < 4; ++e) o[d][e] *= alpha[e / 2];
      }
    }
    const uint32_t a[4] = {pack_bf16x2(s[0][0], s[0][1]), pack_bf16x2(s[0][2], s[0][3]),
                           pack_bf16x2(s[1][0], s[1][1]), pack_bf16x2(s[1][2], s[1][3])};
#pragma unroll
    for (int d = 0; d < kDimTiles; d += 2) {
      uint32_t b[4];
      ldmatrix_x4_trans(b, v_tile + d * 8 * 2);
      mma_bf16(o[d], a, b[0], b[1]);
      mma_bf16(o[d + 1], a, b[2], b[3]);
    }
  }
  cp_async_wait<0>();
  __syncthreads();  // the staging buffers become the merge's scratch

  // ---- merge the warps: each publishes its m, l and o per row; then one thread per 4 dims.
  float* const sm_o = reinterpret_cast<float*>(stage);  // [kWarps][kRows][HD]
  float* const sm_m = sm_o + kWarps * kRows * HD;       // [kWarps][kRows]
  float* const sm_l = sm_m + kWarps * kRows;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 2);
    const int r = g + 8 * h;
    if (t == 0) {
      sm_m[warp * kRows + r] = m[h];
      sm_l[warp * kRows + r] = sum;
    }
#pragma unroll
    for (int d = 0; d < kDimTiles; ++d) {
      *reinterpret_cast<float2*>(sm_o + (warp * kRows + r) * HD + d * 8 + 2 * t) =
          make_float2(o[d][2 * h], o[d][2 * h + 1]);
    }
  }
  __syncthreads();

  for (int idx = threadIdx.x; idx < kRows * HD / 4; idx += kThreads) {
    const int r = idx / (HD / 4);
    const int d = (idx % (HD / 4)) * 4;
    const int tok = tok0 + r / P;
    if (tok >= nq) continue;
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kWarps; ++w) mx = fmaxf(mx, sm_m[w * kRows + r]);
    // mx is finite: every row attends to a position of [begin, end) (its own, or an earlier one).
    float sum = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int w = 0; w < kWarps; ++w) {
      const float wt = exp2_approx(sm_m[w * kRows + r] - mx);
      sum = fmaf(sm_l[w * kRows + r], wt, sum);
      const float4 x = *reinterpret_cast<const float4*>(sm_o + (w * kRows + r) * HD + d);
      acc.x = fmaf(x.x, wt, acc.x);
      acc.y = fmaf(x.y, wt, acc.y);
      acc.z = fmaf(x.z, wt, acc.z);
      acc.w = fmaf(x.w, wt, acc.w);
    }
    const float inv = 1.0f / sum;
    const int64_t row = static_cast<int64_t>(q_begin + tok) * p.heads + head0 + r % P;
    if (p.splits == 1) {
      *reinterpret_cast<uint2*>(p.out + row * HD + d) =
          make_uint2(bf16_bits(acc.x * inv) | bf16_bits(acc.y * inv) << 16,
                     bf16_bits(acc.z * inv) | bf16_bits(acc.w * inv) << 16);
    } else {
      const int64_t part = row * p.splits + split;
      *reinterpret_cast<float4*>(p.partial_o + part * HD + d) =
          make_float4(acc.x * inv, acc.y * inv, acc.z * inv, acc.w * inv);
      if (d == 0) p.partial_lse[part] = mx + __log2f(sum);
    }
  }
}

// ---- host side --------------------------------------------------------------------------------

using KernelFn = void (*)(Params);

template <int HD>
KernelFn pick_for_dim(int pack) {
  switch (pack) {
    case 1:
      return sparse_paged_kernel<HD, 1>;
    case 2:
      return sparse_paged_kernel<HD, 2>;
    case 4:
      return sparse_paged_kernel<HD, 4>;
    case 8:
      return sparse_paged_kernel<HD, 8>;
    default:
      return sparse_paged_kernel<HD, 16>;
  }
}

}  // namespace

// The prefill kernel's sizes: the two share the grid's shape and the tensor-core tiles.
bool sparse_paged_attention_fits(int64_t heads, int64_t kv_heads, int64_t head_dim,
                                 int64_t page_size) {
  return paged_prefill_attention_fits(heads, kv_heads, head_dim, page_size);
}

void sparse_paged_attention_cuda(const SparsePagedArgs& a, void* workspace, int64_t workspace_bytes,
                                 void* stream) {
  SLIMRT_CHECK(sparse_paged_attention_fits(a.heads, a.kv_heads, a.head_dim, a.page_size),
               "sparse_paged_attention_cuda: unsupported shape (heads "
                   << a.heads << ", kv_heads " << a.kv_heads << ", head_dim " << a.head_dim
                   << ", page_size " << a.page_size
                   << "): heads must be a multiple of kv_heads, head_dim 64 or 128, page_size a "
                      "power of two");
  SLIMRT_CHECK(a.num_seqs >= 0 && a.num_seqs <= 65535,
               "sparse_paged_attention_cuda: num_seqs " << a.num_seqs << " outside [0, 65535]");
  SLIMRT_CHECK(a.max_query_tokens >= 0 && a.max_query_tokens <= INT32_MAX && a.max_context >= 0 &&
                   a.max_context <= INT32_MAX,
               "sparse_paged_attention_cuda: max_query_tokens "
                   << a.max_query_tokens << " or max_context " << a.max_context
                   << " outside [0, 2^31)");
  const int64_t bitmap = a.head_dim / 8;
  SLIMRT_CHECK(a.k_record_bytes >= bitmap && a.k_record_bytes <= bitmap + 2 * a.head_dim &&
                   a.k_record_bytes % 2 == 0 && a.v_record_bytes >= bitmap &&
                   a.v_record_bytes <= bitmap + 2 * a.head_dim && a.v_record_bytes % 2 == 0,
               "sparse_paged_attention_cuda: record sizes "
                   << a.k_record_bytes << " and " << a.v_record_bytes
                   << " are not records of head_dim " << a.head_dim);
  SLIMRT_CHECK(a.dense_pages >= 0 && a.dense_pages <= INT32_MAX,
               "sparse_paged_attention_cuda: dense_pages " << a.dense_pages);
  SLIMRT_CHECK(a.force_splits >= 0 && a.force_splits <= kMaxSplits,
               "sparse_paged_attention_cuda: force_splits " << a.force_splits << " outside [0, "
                                                            << kMaxSplits << "]");
  if (a.num_seqs == 0 || a.max_query_tokens == 0) return;
  SLIMRT_CHECK(a.q && a.k_pages && a.v_pages && a.k_records && a.v_records && a.q_indptr &&
                   a.page_indptr && a.page_indices && a.context_lens && a.out,
               "sparse_paged_attention_cuda: a device pointer in args is null");
  const auto misaligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16; };
  SLIMRT_CHECK(!misaligned(a.q) && !misaligned(a.k_pages) && !misaligned(a.v_pages) &&
                   !misaligned(a.k_records) && !misaligned(a.v_records) && !misaligned(a.out),
               "sparse_paged_attention_cuda: q, the pages, the record regions and out must be "
               "16-byte aligned");
  SLIMRT_CHECK(std::isfinite(a.scale),
               "sparse_paged_attention_cuda: scale " << a.scale << " is not finite");
  SLIMRT_CHECK(a.window >= 0 && a.window <= INT32_MAX,
               "sparse_paged_attention_cuda: window " << a.window << " outside [0, 2^31)");

  const int pack = heads_per_block(a.heads / a.kv_heads, kMaxPack);
  const int64_t tokens_per_block = kRows / pack;
  const int64_t tiles = (a.max_query_tokens + tokens_per_block - 1) / tokens_per_block;
  // A record's pieces cover at most 14 bytes before it; a slot is a dense row unless a record
  // and those bytes take more (sparsities under about 10 %).
  const int64_t widest = std::max(a.k_record_bytes, a.v_record_bytes) + 14;
  // The 16 extra bytes shift consecutive slots by 4 banks: the two positions a warp expands at a
  // time then read different banks.
  const int slot =
      static_cast<int>(std::max<int64_t>(a.head_dim * 2, (widest + 15) / 16 * 16) + 16);
  const KernelFn kernel = a.head_dim == 128 ? pick_for_dim<128>(pack) : pick_for_dim<64>(pack);
  const int smem = a.head_dim == 128 ? Layout<128>::bytes(slot) : Layout<64>::bytes(slot);
  SLIMRT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  // Two blocks per SM need nearly all of its shared memory.
  SLIMRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributePreferredSharedMemoryCarveout,
                                         cudaSharedmemCarveoutMaxShared));

  // Splits for decode batches only (one token per sequence: partial rows are sequences').
  const int64_t rows = a.num_seqs * a.heads;
  // A sliding window's decode query reads window positions at most, however long the sequence.
  const int64_t ctx =
      std::max<int64_t>(a.window > 0 ? std::min(a.max_context, a.window) : a.max_context, 1);
  int64_t splits = 1;
  if (a.max_query_tokens == 1) {
    if (a.force_splits > 0) {
      splits = std::min<int64_t>(a.force_splits, (ctx + kTile - 1) / kTile);
    } else {
      int device = 0, sms = 0, per_sm = 0;
      SLIMRT_CUDA_CHECK(cudaGetDevice(&device));
      SLIMRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
      SLIMRT_CUDA_CHECK(
          cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, smem));
      splits = best_split_count(a.num_seqs * (a.heads / pack), ctx, int64_t{sms} * per_sm,
                                kMinChunkTokens, kFixedTokens, kMaxSplits);
    }
    while (splits > 1 && split_workspace_bytes(rows, a.head_dim, splits) > workspace_bytes) {
      SLIMRT_CHECK(a.force_splits == 0, "sparse_paged_attention_cuda: "
                                            << a.force_splits << " splits need "
                                            << split_workspace_bytes(rows, a.head_dim, splits)
                                            << " workspace bytes, got " << workspace_bytes);
      splits /= 2;
    }
  }
  // Chunks are whole steps of kTile positions.
  const int64_t chunk = ((ctx + splits - 1) / splits + kTile - 1) / kTile * kTile;
  splits = (ctx + chunk - 1) / chunk;
  SLIMRT_CHECK(tiles * splits <= 65535, "sparse_paged_attention_cuda: max_query_tokens "
                                            << a.max_query_tokens << " exceeds the grid ("
                                            << 65535 * tokens_per_block
                                            << " at most for this group)");
  SLIMRT_CHECK(splits == 1 || (workspace != nullptr && !misaligned(workspace)),
               "sparse_paged_attention_cuda: workspace must be a 16-byte aligned device pointer");

  Params p{};
  p.q = a.q;
  p.k = a.k_pages;
  p.v = a.v_pages;
  p.k_records = a.k_records;
  p.v_records = a.v_records;
  p.q_indptr = a.q_indptr;
  p.page_indptr = a.page_indptr;
  p.page_indices = a.page_indices;
  p.context_lens = a.context_lens;
  p.first_pages = a.first_pages;
  p.out = a.out;
  if (splits > 1) {
    p.partial_o = static_cast<float*>(workspace);
    p.partial_lse = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                             (rows * splits * a.head_dim * 4 + 15) / 16 * 16);
  }
  p.num_rows = static_cast<int>(rows);
  p.heads = static_cast<int>(a.heads);
  p.kv_heads = static_cast<int>(a.kv_heads);
  p.log2_page = log2_exact(a.page_size);
  p.dense_pages = static_cast<int>(a.dense_pages);
  p.k_record = static_cast<int>(a.k_record_bytes);
  p.v_record = static_cast<int>(a.v_record_bytes);
  p.slot = slot;
  p.chunk = static_cast<int>(chunk);
  p.splits = static_cast<int>(splits);
  p.window = static_cast<int>(a.window);
  p.scale_log2 = a.scale * kLog2e;

  const auto st = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(a.heads / pack), static_cast<unsigned>(a.num_seqs),
                  static_cast<unsigned>(tiles * splits));
  kernel<<<grid, kThreads, smem, st>>>(p);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
  if (splits == 1) return;

  split_merge::launch_split_merge({p.partial_o, p.partial_lse, p.context_lens, p.out, p.num_rows,
                                   p.heads, p.chunk, p.splits, p.window},
                                  a.head_dim, st);
}

}  // namespace slimrt
