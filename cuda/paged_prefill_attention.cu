// Prefill attention (many query tokens per sequence) over a paged BF16 KV cache on tensor cores,
// FlashAttention-2 style: a block holds 64 query rows, walks the cache in tiles of 64 positions up
// to its causal limit, and keeps an online softmax per row in registers.
//
// Why the kernel looks the way it does:
// - Tensor cores through raw mma.sync.m16n8k16 (BF16 in, FP32 accumulate). Four warps of 16 query
//   rows each. S = Q·Kᵀ comes out in the accumulator layout (PTX ISA, "Matrix Fragments for
//   mma.m16n8k16"): lane l holds rows l/4 and l/4 + 8, columns 2(l%4) and 2(l%4) + 1 of each
//   8-column tile. That is also the A-operand layout of P for P·V (two adjacent S tiles make one
//   16-wide k step), so the softmax runs on registers (max and sum reduced over the 4 lanes of a
//   row with two shuffles) and P never touches shared memory. Q is rounded to BF16 once and kept
//   in registers for the whole walk; P is rounded to BF16 for P·V, as FlashAttention does; the
//   running max, the sum and the output accumulate in FP32.
// - GQA: a block takes P query heads of one KV head (P = the largest power of two <= 8 dividing
//   the group) times 64 / P query tokens, rows ordered token-major, head-minor (the P heads of a
//   token are adjacent in q and out). Every K/V tile in shared memory is then used by P heads.
//   For a long prompt this moves no fewer bytes than one head per block (tokens per block shrink
//   by the same factor), but a short chunk (1-16 tokens: speculative or chunked prefill) fills P
//   times more of the 64 rows, and P = 1 serves any group size.
// - K/V tiles come through the page table with 16-byte cp.async (a token's row of one KV head is
//   head_dim * 2 contiguous bytes), double buffered: tile j + 1 loads while tile j is computed.
//   Positions past the block's last query position are zero-filled, never read, so no page index
//   outside the sequence's own is looked up; with a sliding window, neither are positions before
//   the block's first query's window (their pages may have been freed). Shared-memory rows are
//   padded by 16 bytes so that the 8 rows one ldmatrix reads fall in different banks. Q, 2 K and 2
//   V tiles: 5 * 64 * (head_dim + 8) * 2 bytes = 87040 (head_dim 128) or 46080 (64); two blocks per
//   SM.
// - Tiles are walked from position 0 upwards: the first tile holds position 0, which every row
//   attends to, so every running max is finite from the first tile on; only tiles that reach past
//   the block's first query position pay for the causal mask.
// - The grid is (heads / P, sequences, query tiles), the query tile reversed: the blocks near the
//   end of a prompt have the most positions to walk, and they start first.
// - The output is staged through the warp's own rows of the Q tile and written with 16-byte
//   stores; rows of tokens past the sequence's end are computed (on zero queries) but not stored.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "attention_cuda.h"
#include "attention_shapes.h"
#include "cuda_check.h"
#include "tensor_core_ptx.cuh"

namespace slimrt {
namespace {

using attention_shapes::heads_per_block;
using attention_shapes::is_power_of_two;
using attention_shapes::log2_exact;

constexpr int kThreads = 128;  // 4 warps
constexpr int kRows = 64;      // query rows (token, head) per block, 16 per warp
constexpr int kKvTile = 64;    // cache positions per step
constexpr int kMaxPack = 8;
constexpr float kLog2e = 1.4426950408889634f;

template <int HD>
struct Layout {
  static constexpr int kPitch = HD + 8;  // BF16 elements per shared-memory row
  static constexpr int kTileElems = kRows * kPitch;
  static constexpr int kBytes = 5 * kTileElems * 2;  // Q, K[2], V[2]
};
static_assert(kRows == kKvTile, "Q and K/V tiles share a shared-memory layout");

struct Params {
  const float* q;
  const uint16_t* k;
  const uint16_t* v;
  const int32_t* q_indptr;
  const int32_t* page_indptr;
  const int32_t* page_indices;
  const int32_t* context_lens;
  const int32_t* first_pages;
  uint16_t* out;
  int window;
  int heads;
  int kv_heads;
  int log2_page;
  float scale_log2;
};

// ---- small device helpers ---------------------------------------------------------------------

using namespace ptx;  // NOLINT: the PTX wrappers of tensor_core_ptx.cuh

// ---- the kernel -------------------------------------------------------------------------------

// Grid: x = group of P query heads, y = sequence, z = query tile counted from the end. Block row
// r (0..63) is query token tok0 + r / P, query head head0 + r % P.
template <int HD, int P>
__global__ void __launch_bounds__(kThreads, 2) paged_prefill_kernel(const Params p) {
  using L = Layout<HD>;
  constexpr int kPitch = L::kPitch;
  constexpr int kTokens = kRows / P;      // query tokens per block
  constexpr int kDimSteps = HD / 16;      // k steps of Q·Kᵀ
  constexpr int kDimTiles = HD / 8;       // 8-column tiles of the output
  constexpr int kPosTiles = kKvTile / 8;  // 8-column tiles of S
  constexpr int kChunks = HD / 8;         // 16-byte chunks of a K/V row
  constexpr int kRowStep = kThreads / kChunks;

  const int seq = blockIdx.y;
  const int q_begin = p.q_indptr[seq];
  const int nq = p.q_indptr[seq + 1] - q_begin;
  const int tok0 = (gridDim.z - 1 - blockIdx.z) * kTokens;
  if (tok0 >= nq) return;
  const int head0 = blockIdx.x * P;
  const int kvh = head0 / (p.heads / p.kv_heads);
  const int ctx = p.context_lens[seq];
  const int first_pos = ctx - nq + tok0;  // the block's query positions: [first_pos, kv_end)
  const int kv_end = ctx - nq + min(tok0 + kTokens, nq);
  // The first position any row of the block sees, and the tile that holds it.
  const int kv_lo = p.window > 0 ? max(0, first_pos - p.window + 1) : 0;
  const int j0 = kv_lo / kKvTile;

  extern __shared__ uint4 smem_raw[];
  uint16_t* const sq = reinterpret_cast<uint16_t*>(smem_raw);
  uint16_t* const sk = sq + L::kTileElems;      // [2][kKvTile][kPitch]
  uint16_t* const sv = sk + 2 * L::kTileElems;  // [2][kKvTile][kPitch]

  // ---- K/V tile loads: thread t copies chunk t % kChunks of rows t / kChunks + i * kRowStep.
  const int32_t* pages = p.page_indices + p.page_indptr[seq];
  const int unlisted = p.first_pages != nullptr ? p.first_pages[seq] : 0;
  const int page_mask = (1 << p.log2_page) - 1;
  const int64_t pos_stride = static_cast<int64_t>(p.kv_heads) * HD;
  const int chunk = threadIdx.x % kChunks;
  const int row_first = threadIdx.x / kChunks;
  const uint16_t* const k_head = p.k + kvh * HD + chunk * 8;
  const uint16_t* const v_head = p.v + kvh * HD + chunk * 8;
  auto load_tile = [&](int kv0, int buf) {
#pragma unroll
    for (int i = 0; i < kKvTile / kRowStep; ++i) {
      const int r = row_first + i * kRowStep;
      const int pos = kv0 + r;
      const bool inside = pos < kv_end && pos >= kv_lo;
      int64_t offset = 0;
      if (inside) {
        const int64_t slot = (static_cast<int64_t>(__ldg(pages + ((pos >> p.log2_page) - unlisted)))
                              << p.log2_page) +
                             (pos & page_mask);
        offset = slot * pos_stride;
      }
      const int at = (buf * kKvTile + r) * kPitch + chunk * 8;
      cp_async16(smem_addr(sk + at), k_head + offset, inside);
      cp_async16(smem_addr(sv + at), v_head + offset, inside);
    }
  };
  load_tile(j0 * kKvTile, j0 & 1);
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

  const int warp = threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  const int g = lane / 4;  // the lane's rows in the warp's 16: g and g + 8
  const int t = lane % 4;  // its columns in every 8-column tile: 2t and 2t + 1
  uint16_t* const sq_warp = sq + warp * 16 * kPitch;

  uint32_t qf[kDimSteps][4];
#pragma unroll
  for (int ks = 0; ks < kDimSteps; ++ks) {
    ldmatrix_x4(qf[ks], smem_addr(sq_warp + (lane % 16) * kPitch + ks * 16 + (lane / 16) * 8));
  }

  // Cache position of each of the lane's two rows; rows past the end take the last query's.
  int row_pos[2];
  int row_lo[2];  // the first position the row sees
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = warp * 16 + g + 8 * h;
    row_pos[h] = ctx - nq + min(tok0 + r / P, nq - 1);
    row_lo[h] = p.window > 0 ? row_pos[h] - p.window + 1 : 0;
  }

  // ldmatrix row offsets (elements) of this lane: K as the column-major B of Q·Kᵀ (matrices:
  // positions 0-7 / dims 0-7, positions 0-7 / dims 8-15, positions 8-15 / dims 0-7, 8-15 / 8-15),
  // V transposed as the B of P·V (positions 0-7 / dims 0-7, 8-15 / 0-7, 0-7 / 8-15, 8-15 / 8-15).
  const int k_lane = ((lane % 8) + (lane / 16) * 8) * kPitch + ((lane / 8) % 2) * 8;
  const int v_lane = ((lane % 8) + ((lane / 8) % 2) * 8) * kPitch + (lane / 16) * 8;

  float o[kDimTiles][4];
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) o[d][0] = o[d][1] = o[d][2] = o[d][3] = 0.0f;
  float m[2] = {-INFINITY, -INFINITY};
  float l[2] = {0.0f, 0.0f};  // this lane's share of the row sums, reduced at the end

  const int n_tiles = (kv_end + kKvTile - 1) / kKvTile;
  for (int j = j0; j < n_tiles; ++j) {
    const int kv0 = j * kKvTile;
    if (j + 1 < n_tiles) load_tile(kv0 + kKvTile, (j + 1) & 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const uint32_t k_tile = smem_addr(sk + (j & 1) * L::kTileElems + k_lane);
    const uint32_t v_tile = smem_addr(sv + (j & 1) * L::kTileElems + v_lane);

    float s[kPosTiles][4];
#pragma unroll
    for (int n = 0; n < kPosTiles; ++n) s[n][0] = s[n][1] = s[n][2] = s[n][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < kDimSteps; ++ks) {
#pragma unroll
      for (int n = 0; n < kPosTiles; n += 2) {
        uint32_t b[4];
        ldmatrix_x4(b, k_tile + (n * 8 * kPitch + ks * 16) * 2);
        mma_bf16(s[n], qf[ks], b[0], b[1]);
        mma_bf16(s[n + 1], qf[ks], b[2], b[3]);
      }
    }

    // Scores in log2 units; the causal mask only where the tile reaches past the first query,
    // the window's where it starts before the last query's window.
    const bool masked = kv0 + kKvTile - 1 > first_pos || (p.window > 0 && kv0 < kv_end - p.window);
#pragma unroll
    for (int n = 0; n < kPosTiles; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        s[n][e] *= p.scale_log2;
        const int pos = kv0 + n * 8 + 2 * t + (e & 1);
        if (masked && (pos > row_pos[e / 2] || pos < row_lo[e / 2])) s[n][e] = -INFINITY;
      }
    }

    // Online softmax per row: new max over the 4 lanes of the row, rescale, exponentiate.
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float mx = m[h];
#pragma unroll
      for (int n = 0; n < kPosTiles; ++n) mx = fmaxf(mx, fmaxf(s[n][2 * h], s[n][2 * h + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xFFFFFFFFu, mx, 2));
      // -inf while a row's window has not begun (a sliding window's rows start in different
      // tiles), or for a row that attends to nothing: its exps stay 0 instead of NaN.
      const float base = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2_approx(m[h] - base);
      m[h] = mx;
      l[h] *= alpha;
#pragma unroll
      for (int d = 0; d < kDimTiles; ++d) {
        o[d][2 * h] *= alpha;
        o[d][2 * h + 1] *= alpha;
      }
#pragma unroll
      for (int n = 0; n < kPosTiles; ++n) {
        s[n][2 * h] = exp2_approx(s[n][2 * h] - base);
        s[n][2 * h + 1] = exp2_approx(s[n][2 * h + 1] - base);
        l[h] += s[n][2 * h] + s[n][2 * h + 1];
      }
    }

    // O += P·V: S tiles 2kk and 2kk + 1 are the A fragment of k step kk.
#pragma unroll
    for (int kk = 0; kk < kKvTile / 16; ++kk) {
      const uint32_t a[4] = {pack_bf16x2(s[2 * kk][0], s[2 * kk][1]),
                             pack_bf16x2(s[2 * kk][2], s[2 * kk][3]),
                             pack_bf16x2(s[2 * kk + 1][0], s[2 * kk + 1][1]),
                             pack_bf16x2(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int d = 0; d < kDimTiles; d += 2) {
        uint32_t b[4];
        ldmatrix_x4_trans(b, v_tile + (kk * 16 * kPitch + d * 8) * 2);
        mma_bf16(o[d], a, b[0], b[1]);
        mma_bf16(o[d + 1], a, b[2], b[3]);
      }
    }
    __syncthreads();  // the buffer is refilled by the next step's load
  }
  cp_async_wait<0>();  // a block with nothing to walk still has its first (zero-fill) load out

  // ---- normalise, round, stage in the warp's own Q rows, store 16 bytes at a time.
  float inv[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    float sum = l[h];
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 1);
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, 2);
    inv[h] = sum > 0.0f ? 1.0f / sum : 0.0f;
  }
#pragma unroll
  for (int d = 0; d < kDimTiles; ++d) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t bits =
          bf16_bits(o[d][2 * h] * inv[h]) | (bf16_bits(o[d][2 * h + 1] * inv[h]) << 16);
      *reinterpret_cast<uint32_t*>(sq_warp + (g + 8 * h) * kPitch + d * 8 + 2 * t) = bits;
    }
  }
  __syncwarp();
#pragma unroll
  for (int it = 0; it < 16 * kChunks / 32; ++it) {
    const int i = lane + it * 32;
    const int r = warp * 16 + i / kChunks;
    const int c = i % kChunks;
    const int tok = tok0 + r / P;
    if (tok < nq) {
      const int64_t row = static_cast<int64_t>(q_begin + tok) * p.heads + head0 + r % P;
      reinterpret_cast<uint4*>(p.out + row * HD)[c] =
          *reinterpret_cast<const uint4*>(sq + r * kPitch + c * 8);
    }
  }
}

// ---- host side --------------------------------------------------------------------------------

using KernelFn = void (*)(Params);

template <int HD>
KernelFn pick_for_dim(int pack) {
  switch (pack) {
    case 1:
      return paged_prefill_kernel<HD, 1>;
    case 2:
      return paged_prefill_kernel<HD, 2>;
    case 4:
      return paged_prefill_kernel<HD, 4>;
    default:
      return paged_prefill_kernel<HD, 8>;
  }
}

}  // namespace

bool paged_prefill_attention_fits(int64_t heads, int64_t kv_heads, int64_t head_dim,
                                  int64_t page_size) {
  return kv_heads > 0 && heads > 0 && heads <= (int64_t{1} << 16) && heads % kv_heads == 0 &&
         (head_dim == 64 || head_dim == 128) && is_power_of_two(page_size) &&
         page_size <= (int64_t{1} << 30);
}

void paged_prefill_attention_cuda(const PagedPrefillArgs& a, void* stream) {
  SLIMRT_CHECK(paged_prefill_attention_fits(a.heads, a.kv_heads, a.head_dim, a.page_size),
               "paged_prefill_attention_cuda: unsupported shape (heads "
                   << a.heads << ", kv_heads " << a.kv_heads << ", head_dim " << a.head_dim
                   << ", page_size " << a.page_size
                   << "): heads must be a multiple of kv_heads, head_dim 64 or 128, page_size a "
                      "power of two");
  SLIMRT_CHECK(a.num_seqs >= 0 && a.num_seqs <= 65535,
               "paged_prefill_attention_cuda: num_seqs " << a.num_seqs << " outside [0, 65535]");
  SLIMRT_CHECK(a.max_query_tokens >= 0 && a.max_query_tokens <= INT32_MAX,
               "paged_prefill_attention_cuda: max_query_tokens " << a.max_query_tokens
                                                                 << " outside [0, 2^31)");
  if (a.num_seqs == 0 || a.max_query_tokens == 0) return;
  SLIMRT_CHECK(a.q && a.k_pages && a.v_pages && a.q_indptr && a.page_indptr && a.page_indices &&
                   a.context_lens && a.out,
               "paged_prefill_attention_cuda: a device pointer in args is null");
  const auto misaligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16; };
  SLIMRT_CHECK(
      !misaligned(a.q) && !misaligned(a.k_pages) && !misaligned(a.v_pages) && !misaligned(a.out),
      "paged_prefill_attention_cuda: q, k_pages, v_pages and out must be 16-byte aligned");
  SLIMRT_CHECK(std::isfinite(a.scale),
               "paged_prefill_attention_cuda: scale " << a.scale << " is not finite");
  SLIMRT_CHECK(a.window >= 0 && a.window <= INT32_MAX,
               "paged_prefill_attention_cuda: window " << a.window << " outside [0, 2^31)");

  const int pack = heads_per_block(a.heads / a.kv_heads, kMaxPack);
  const int64_t tokens_per_block = kRows / pack;
  const int64_t tiles = (a.max_query_tokens + tokens_per_block - 1) / tokens_per_block;
  SLIMRT_CHECK(tiles <= 65535, "paged_prefill_attention_cuda: max_query_tokens "
                                   << a.max_query_tokens << " exceeds the grid ("
                                   << 65535 * tokens_per_block << " at most for this group)");

  Params p{};
  p.q = a.q;
  p.k = a.k_pages;
  p.v = a.v_pages;
  p.q_indptr = a.q_indptr;
  p.page_indptr = a.page_indptr;
  p.page_indices = a.page_indices;
  p.context_lens = a.context_lens;
  p.first_pages = a.first_pages;
  p.out = a.out;
  p.window = static_cast<int>(a.window);
  p.heads = static_cast<int>(a.heads);
  p.kv_heads = static_cast<int>(a.kv_heads);
  p.log2_page = log2_exact(a.page_size);
  p.scale_log2 = a.scale * kLog2e;

  const KernelFn kernel = a.head_dim == 128 ? pick_for_dim<128>(pack) : pick_for_dim<64>(pack);
  const int smem = a.head_dim == 128 ? Layout<128>::kBytes : Layout<64>::kBytes;
  SLIMRT_CUDA_CHECK(
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  const dim3 grid(static_cast<unsigned>(a.heads / pack), static_cast<unsigned>(a.num_seqs),
                  static_cast<unsigned>(tiles));
  kernel<<<grid, kThreads, smem, static_cast<cudaStream_t>(stream)>>>(p);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace slimrt
