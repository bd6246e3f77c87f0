// Decode attention over a paged BF16 KV cache (one query token per sequence), FlashDecoding
// style: a block per (sequence, KV head, split of the context), a second small kernel merging
// the splits' partial softmaxes.
//
// Why the kernel looks the way it does:
// - Decode reads every K/V byte once and does ~1 FMA per byte, so it is bound by DRAM. A K or V
//   row of one KV head (head_dim BF16 = 256 bytes at 128) is read by head_dim / 8 lanes, one
//   16-byte vector each, so a half warp reads one row in one coalesced request. Each lane group
//   takes kTokens rows of K and of V per step and issues all their loads before it uses any of
//   them: 2 * kTokens 16-byte loads in flight per lane.
// - One block serves all query heads of its KV head's group (GQA): each K/V row is loaded and
//   widened once and used by every head, whose queries and accumulators sit in registers.
// - Every lane group keeps its own online softmax (max, sum, accumulator per head) over the
//   positions it visits; the groups of a block are merged once at the end through shared memory,
//   so the hot loop has no barrier. Scores are in log2 units (q is pre-scaled by
//   scale * log2(e)) so that exp is one ex2.approx.
// - The page of each position is looked up one step ahead, so a K/V load never waits on the
//   page-table load.
// - Splits: batch-1 decode has num_seqs * kv_heads blocks, far fewer than the SMs hold, so each
//   sequence's context is cut into chunks (plan()), each block writes its normalised partial
//   output and log-sum-exp to the workspace, and the merge kernel combines them. The merge is
//   launched with programmatic dependent launch, so its launch overlaps the main kernel's tail.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
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

using attention_shapes::is_power_of_two;
using attention_shapes::log2_exact;

constexpr int kThreads = 128;
constexpr int kMinChunkTokens = 256;
constexpr int64_t kFixedTokens = 32;
constexpr int kMaxSplits = 1024;
constexpr float kLog2e = 1.4426950408889634f;

// Tuning knobs for the common GQA group of 4 (group 3 takes them too), meant to be overridden with
// -D while measuring: positions per lane group and step (2 * that many 16-byte loads in flight per
// lane), and blocks per SM the register budget is cut for. 4 and 3 fit in 168 registers without
// spilling; 4 and 4 spills.
#ifndef SLIMRT_ATTN_TOKENS_G4
#define SLIMRT_ATTN_TOKENS_G4 4
#endif
#ifndef SLIMRT_ATTN_MIN_BLOCKS_G4
#define SLIMRT_ATTN_MIN_BLOCKS_G4 3
#endif

// Per-group-size tuning (128 threads a block): the queries and accumulators of G heads take
// 16 * G registers, the loads in flight 8 * kTokens.
template <int G>
struct Tune {
  static constexpr int kTokens = G == 1 ? 8 : (G == 2 ? 4 : (G <= 4 ? SLIMRT_ATTN_TOKENS_G4 : 2));
  static constexpr int kMinBlocks = G <= 2 ? 4 : (G <= 4 ? SLIMRT_ATTN_MIN_BLOCKS_G4 : 2);
};

struct Params {
  const uint16_t* q;
  const uint16_t* k;
  const uint16_t* v;
  const int32_t* page_indptr;
  const int32_t* page_indices;
  const int32_t* context_lens;
  const int32_t* first_pages;
  uint16_t* out;
  float* partial_o;    // [num_seqs * heads][splits][head_dim]
  float* partial_lse;  // [num_seqs * heads][splits]
  int num_seqs;
  int heads;
  int kv_heads;
  int log2_page;
  int chunk;
  int splits;
  int window;
  float scale_log2;
};

// ---- small device helpers ---------------------------------------------------------------------

// K/V bytes are read exactly once: keep them out of L1.
__device__ __forceinline__ uint4 load_once(const uint16_t* p) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p));
  return v;
}

// Eight BF16 values (one 16-byte vector) widened to FP32.
__device__ __forceinline__ void widen8(const uint4& raw, float* f) {
  const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xFFFF0000u);
  }
}

using namespace ptx;  // NOLINT: exp2_approx and pack_bf16x2 of tensor_core_ptx.cuh

// ---- main kernel ------------------------------------------------------------------------------

// Grid: x = sequence * kv_heads + KV head, y = split. Lane group `grp` (kLanes lanes, one row)
// takes positions tile + grp * kTokens + j, j < kTokens, of each step's tile.
template <int HD, int G>
__global__ void __launch_bounds__(kThreads, Tune<G>::kMinBlocks)
    paged_decode_kernel(const Params p) {
  constexpr int kTokens = Tune<G>::kTokens;
  constexpr int kLanes = HD / 8;
  constexpr int kGroups = kThreads / kLanes;
  constexpr int kTile = kGroups * kTokens;

  const int seq = blockIdx.x / p.kv_heads;
  const int kvh = blockIdx.x - seq * p.kv_heads;
  const int split = blockIdx.y;
  const int ctx = p.context_lens[seq];
  // The query at ctx - 1 sees ctx - window on; the splits cover those positions only.
  const int lo = p.window > 0 ? max(0, ctx - p.window) : 0;
  const int begin = lo + split * p.chunk;
  const int end = split == p.splits - 1 ? ctx : min(ctx, begin + p.chunk);
  if (begin >= end) {
    // Nothing to attend to: only an unsplit empty sequence owns an output to clear here (the
    // merge kernel skips empty splits by itself).
    if (p.splits == 1) {
      for (int i = threadIdx.x; i < G * HD / 8; i += kThreads) {
        reinterpret_cast<uint4*>(p.out + (static_cast<int64_t>(seq) * p.heads + kvh * G) * HD)[i] =
            make_uint4(0, 0, 0, 0);
      }
    }
    return;
  }

  const int tx = threadIdx.x % kLanes;
  const int grp = threadIdx.x / kLanes;

  float q[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    const uint16_t* src = p.q + (static_cast<int64_t>(seq) * p.heads + kvh * G + h) * HD + tx * 8;
    widen8(*reinterpret_cast<const uint4*>(src), q[h]);
#pragma unroll
    for (int i = 0; i < 8; ++i) q[h][i] *= p.scale_log2;
  }

  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    m[h] = -INFINITY;
    l[h] = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) acc[h][i] = 0.0f;
  }

  const int32_t* pages = p.page_indices + p.page_indptr[seq];
  const int unlisted = p.first_pages != nullptr ? p.first_pages[seq] : 0;
  const int page_mask = (1 << p.log2_page) - 1;
  const int64_t slot_stride = static_cast<int64_t>(p.kv_heads) * HD;
  const uint16_t* k_base = p.k + kvh * HD + tx * 8;
  const uint16_t* v_base = p.v + kvh * HD + tx * 8;

  // Slots (page * page_size + offset) of this group's rows in a tile; past-the-end positions
  // reread the last row (their scores are masked) so that no load needs a branch.
  auto lookup = [&](int tile, int32_t* slot) {
#pragma unroll
    for (int j = 0; j < kTokens; ++j) {
      const int t = min(tile + grp * kTokens + j, end - 1);
      slot[j] = (__ldg(pages + ((t >> p.log2_page) - unlisted)) << p.log2_page) + (t & page_mask);
    }
  };

  // Software pipeline: K of the next tile is in flight while this tile's P·V runs, and V of this
  // tile while its scores are computed, so every lane always has loads outstanding.
  int32_t slot[kTokens];
  uint4 kr[kTokens];
  lookup(begin, slot);
#pragma unroll
  for (int j = 0; j < kTokens; ++j) kr[j] = load_once(k_base + slot[j] * slot_stride);
  for (int tile = begin; tile < end; tile += kTile) {
    uint4 vr[kTokens];
#pragma unroll
    for (int j = 0; j < kTokens; ++j) vr[j] = load_once(v_base + slot[j] * slot_stride);
    const bool more = tile + kTile < end;
    if (more) lookup(tile + kTile, slot);

    float s[kTokens][G];
#pragma unroll
    for (int j = 0; j < kTokens; ++j) {
      float kf[8];
      widen8(kr[j], kf);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        float d = q[h][0] * kf[0];
#pragma unroll
        for (int i = 1; i < 8; ++i) d = fmaf(q[h][i], kf[i], d);
        s[j][h] = d;
      }
    }
    if (more) {
#pragma unroll
      for (int j = 0; j < kTokens; ++j) kr[j] = load_once(k_base + slot[j] * slot_stride);
    }
#pragma unroll
    for (int mask = kLanes / 2; mask >= 1; mask /= 2) {
#pragma unroll
      for (int j = 0; j < kTokens; ++j) {
#pragma unroll
        for (int h = 0; h < G; ++h) s[j][h] += __shfl_xor_sync(0xFFFFFFFFu, s[j][h], mask);
      }
    }
#pragma unroll
    for (int j = 0; j < kTokens; ++j) {
      if (tile + grp * kTokens + j >= end) {
#pragma unroll
        for (int h = 0; h < G; ++h) s[j][h] = -INFINITY;
      }
    }

#pragma unroll
    for (int h = 0; h < G; ++h) {
      float mx = m[h];
#pragma unroll
      for (int j = 0; j < kTokens; ++j) mx = fmaxf(mx, s[j][h]);
      // A group whose positions are all past the end keeps m = -inf; subtracting 0 then keeps
      // every exp at 0 instead of NaN.
      const float base = mx == -INFINITY ? 0.0f : mx;
      const float alpha = exp2_approx(m[h] - base);
      m[h] = mx;
      l[h] *= alpha;
#pragma unroll
      for (int i = 0; i < 8; ++i) acc[h][i] *= alpha;
#pragma unroll
      for (int j = 0; j < kTokens; ++j) s[j][h] = exp2_approx(s[j][h] - base);
    }
#pragma unroll
    for (int j = 0; j < kTokens; ++j) {
      float vf[8];
      widen8(vr[j], vf);
#pragma unroll
      for (int h = 0; h < G; ++h) {
        l[h] += s[j][h];
#pragma unroll
        for (int i = 0; i < 8; ++i) acc[h][i] = fmaf(s[j][h], vf[i], acc[h][i]);
      }
    }
  }

  // Merge the lane groups. Every lane of a group holds the same m and l (the scores were
  // all-reduced), so lane 0 publishes them.
  __shared__ float sm_m[kGroups][G];
  __shared__ float sm_l[kGroups][G];
  __shared__ __align__(16) float sm_o[kGroups][G][HD];
#pragma unroll
  for (int h = 0; h < G; ++h) {
    if (tx == 0) {
      sm_m[grp][h] = m[h];
      sm_l[grp][h] = l[h];
    }
    float4* dst = reinterpret_cast<float4*>(&sm_o[grp][h][tx * 8]);
    dst[0] = make_float4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
    dst[1] = make_float4(acc[h][4], acc[h][5], acc[h][6], acc[h][7]);
  }
  __syncthreads();

  const int64_t row0 = static_cast<int64_t>(seq) * p.heads + kvh * G;
  for (int idx = threadIdx.x; idx < G * HD / 4; idx += kThreads) {
    const int h = idx / (HD / 4);
    const int d = (idx % (HD / 4)) * 4;
    float mx = -INFINITY;
#pragma unroll
    for (int g = 0; g < kGroups; ++g) mx = fmaxf(mx, sm_m[g][h]);
    // mx is finite: the block has at least one position, so some group saw it.
    float sum = 0.0f;
    float4 o = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const float w = exp2_approx(sm_m[g][h] - mx);
      sum = fmaf(sm_l[g][h], w, sum);
      const float4 a = *reinterpret_cast<const float4*>(&sm_o[g][h][d]);
      o.x = fmaf(a.x, w, o.x);
      o.y = fmaf(a.y, w, o.y);
      o.z = fmaf(a.z, w, o.z);
      o.w = fmaf(a.w, w, o.w);
    }
    const float inv = 1.0f / sum;
    o = make_float4(o.x * inv, o.y * inv, o.z * inv, o.w * inv);
    if (p.splits == 1) {
      *reinterpret_cast<uint2*>(p.out + (row0 + h) * HD + d) =
          make_uint2(pack_bf16x2(o.x, o.y), pack_bf16x2(o.z, o.w));
    } else {
      const int64_t part = (row0 + h) * p.splits + split;
      *reinterpret_cast<float4*>(p.partial_o + part * HD + d) = o;
      if (d == 0) p.partial_lse[part] = mx + __log2f(sum);
    }
  }
}

// ---- host side --------------------------------------------------------------------------------

using KernelFn = void (*)(Params);

template <int HD>
KernelFn pick_for_dim(int64_t group) {
  constexpr KernelFn kByGroup[] = {paged_decode_kernel<HD, 1>, paged_decode_kernel<HD, 2>,
                                   paged_decode_kernel<HD, 3>, paged_decode_kernel<HD, 4>,
                                   paged_decode_kernel<HD, 5>, paged_decode_kernel<HD, 6>,
                                   paged_decode_kernel<HD, 7>, paged_decode_kernel<HD, 8>};
  return attention_shapes::decode_group_supported(group) ? kByGroup[group - 1] : nullptr;
}

KernelFn pick_kernel(int64_t head_dim, int64_t group) {
  return head_dim == 128 ? pick_for_dim<128>(group) : pick_for_dim<64>(group);
}

void check_shape(const PagedDecodeShape& s) {
  SLIMRT_CHECK(s.num_seqs >= 0 && s.num_seqs <= (int64_t{1} << 24),
               "paged_decode_attention: num_seqs " << s.num_seqs << " outside [0, 2^24]");
  SLIMRT_CHECK(s.kv_heads > 0 && s.heads > 0 && s.heads % s.kv_heads == 0,
               "paged_decode_attention: " << s.heads << " query heads do not divide into "
                                          << s.kv_heads << " KV heads");
  const int64_t group = s.heads / s.kv_heads;
  SLIMRT_CHECK(attention_shapes::decode_group_supported(group),
               "paged_decode_attention: query heads per KV head must be 1 to 8, got " << group);
  SLIMRT_CHECK(s.head_dim == 64 || s.head_dim == 128,
               "paged_decode_attention: head_dim must be 64 or 128, got " << s.head_dim);
  SLIMRT_CHECK(
      is_power_of_two(s.page_size) && s.page_size <= (int64_t{1} << 20),
      "paged_decode_attention: page_size must be a power of two <= 2^20, got " << s.page_size);
  SLIMRT_CHECK(
      s.num_seqs * s.heads <= (int64_t{1} << 30),
      "paged_decode_attention: num_seqs * heads " << s.num_seqs * s.heads << " is too large");
}

int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

int64_t workspace_for(const PagedDecodeShape& s, int64_t splits) {
  return split_workspace_bytes(s.num_seqs * s.heads, s.head_dim, splits);
}

}  // namespace

PagedDecodePlan paged_decode_attention_plan(const PagedDecodeShape& shape, int64_t max_context,
                                            int32_t force_splits) {
  check_shape(shape);
  SLIMRT_CHECK(max_context >= 0 && max_context <= INT32_MAX,
               "paged_decode_attention_plan: max_context " << max_context << " outside [0, 2^31)");
  SLIMRT_CHECK(force_splits >= 0 && force_splits <= kMaxSplits,
               "paged_decode_attention_plan: force_splits " << force_splits << " outside [0, "
                                                            << kMaxSplits << "]");
  PagedDecodePlan plan;
  plan.shape = shape;
  plan.max_context = max_context;

  const int64_t ctx = std::max<int64_t>(max_context, 1);
  int64_t splits = 1;
  if (force_splits > 0) {
    splits = std::min<int64_t>(force_splits, ctx);
  } else if (shape.num_seqs > 0) {
    // The fewest waves of the shortest blocks at this kernel's occupancy (decode_splits.h).
    int device = 0, sms = 0, per_sm = 0;
    SLIMRT_CUDA_CHECK(cudaGetDevice(&device));
    SLIMRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    SLIMRT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, pick_kernel(shape.head_dim, shape.heads / shape.kv_heads), kThreads, 0));
    splits = best_split_count(shape.num_seqs * shape.kv_heads, ctx, int64_t{sms} * per_sm,
                              kMinChunkTokens, kFixedTokens, kMaxSplits);
  }
  // Chunks are whole tiles of 32 positions where the context allows, so that no step of a
  // middle split is partly masked.
  int64_t chunk = (ctx + splits - 1) / splits;
  if (chunk > 32) chunk = (chunk + 31) / 32 * 32;
  plan.chunk_tokens = static_cast<int32_t>(chunk);
  plan.splits = static_cast<int32_t>((ctx + chunk - 1) / chunk);
  plan.workspace_bytes = workspace_for(shape, plan.splits);
  return plan;
}

void paged_decode_attention_cuda(const PagedDecodePlan& plan, const PagedDecodeArgs& args,
                                 void* workspace, int64_t workspace_bytes, void* stream) {
  const PagedDecodeShape& s = plan.shape;
  check_shape(s);
  SLIMRT_CHECK(plan.splits >= 1 && plan.splits <= 65535 && plan.chunk_tokens >= 1,
               "paged_decode_attention_cuda: invalid plan (splits "
                   << plan.splits << ", chunk " << plan.chunk_tokens
                   << "): make it with paged_decode_attention_plan()");
  SLIMRT_CHECK(plan.workspace_bytes == workspace_for(s, plan.splits),
               "paged_decode_attention_cuda: the plan's workspace size does not match its split");
  if (s.num_seqs == 0) return;
  SLIMRT_CHECK(args.q && args.k_pages && args.v_pages && args.page_indptr && args.page_indices &&
                   args.context_lens && args.out,
               "paged_decode_attention_cuda: a device pointer in args is null");
  const auto misaligned = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16; };
  SLIMRT_CHECK(!misaligned(args.q) && !misaligned(args.k_pages) && !misaligned(args.v_pages) &&
                   !misaligned(args.out),
               "paged_decode_attention_cuda: q, k_pages, v_pages and out must be 16-byte aligned");
  SLIMRT_CHECK(std::isfinite(args.scale),
               "paged_decode_attention_cuda: scale " << args.scale << " is not finite");
  SLIMRT_CHECK(args.window >= 0 && args.window <= INT32_MAX,
               "paged_decode_attention_cuda: window " << args.window << " outside [0, 2^31)");
  SLIMRT_CHECK(workspace_bytes >= plan.workspace_bytes,
               "paged_decode_attention_cuda: the plan needs "
                   << plan.workspace_bytes << " workspace bytes, got " << workspace_bytes);
  SLIMRT_CHECK(plan.workspace_bytes == 0 || (workspace != nullptr && !misaligned(workspace)),
               "paged_decode_attention_cuda: workspace must be a 16-byte aligned device pointer");
  SLIMRT_CHECK(s.num_seqs * s.kv_heads <= INT32_MAX,
               "paged_decode_attention_cuda: num_seqs * kv_heads exceeds the grid");

  Params p{};
  p.q = args.q;
  p.k = args.k_pages;
  p.v = args.v_pages;
  p.page_indptr = args.page_indptr;
  p.page_indices = args.page_indices;
  p.context_lens = args.context_lens;
  p.first_pages = args.first_pages;
  p.out = args.out;
  const int64_t rows = s.num_seqs * s.heads * plan.splits;
  if (plan.splits > 1) {
    p.partial_o = static_cast<float*>(workspace);
    p.partial_lse =
        reinterpret_cast<float*>(static_cast<char*>(workspace) + align16(rows * s.head_dim * 4));
  }
  p.num_seqs = static_cast<int>(s.num_seqs);
  p.heads = static_cast<int>(s.heads);
  p.kv_heads = static_cast<int>(s.kv_heads);
  p.log2_page = log2_exact(s.page_size);
  p.chunk = plan.chunk_tokens;
  p.splits = plan.splits;
  p.window = static_cast<int>(args.window);
  p.scale_log2 = args.scale * kLog2e;

  const auto st = static_cast<cudaStream_t>(stream);
  const dim3 grid(static_cast<unsigned>(s.num_seqs * s.kv_heads),
                  static_cast<unsigned>(plan.splits));
  pick_kernel(s.head_dim, s.heads / s.kv_heads)<<<grid, kThreads, 0, st>>>(p);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
  if (plan.splits == 1) return;

  split_merge::launch_split_merge({p.partial_o, p.partial_lse, p.context_lens, p.out,
                                   p.num_seqs * p.heads, p.heads, p.chunk, p.splits, p.window},
                                  s.head_dim, st);
}

}  // namespace slimrt
