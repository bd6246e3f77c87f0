// The CUDA kernel of ops::paged_attention. Decode steps (one query token per sequence, BF16 KV,
// sizes the kernel takes) use the split-K paged decode attention kernel
// (paged_decode_attention.cu), other steps with BF16 KV the tensor-core prefill kernel
// (paged_prefill_attention.cu); the rest (FP32 KV, other head sizes) the simple kernel here, with
// one warp per query token. A cache with compressed pages takes the kernel of
// sparse_paged_attention.cu for every step. All leave the o_proj matmul's input in BF16.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "attention_cuda.h"
#include "attention_shapes.h"
#include "check.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"
#include "kv_record.h"

namespace slimrt::cuda {
namespace {

constexpr int kMaxHeadDim = kMaxAttentionHeadDim;
constexpr int kAttentionWarps = 4;  // warps per block; each warp handles one query token

int64_t align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// Whether paged_attention can use the decode kernel for this cache and head count.
bool decode_kernel_fits(const PagedKv& kv, int64_t heads) {
  if (kv.dtype != KvDtype::kBf16 || kv.kv_heads <= 0 || heads % kv.kv_heads != 0) return false;
  const int64_t group = heads / kv.kv_heads;
  return (kv.head_dim == 64 || kv.head_dim == 128) &&
         attention_shapes::decode_group_supported(group) &&
         attention_shapes::is_power_of_two(kv.page_size);
}

PagedDecodeShape decode_shape(const PagedKv& kv, int64_t seqs, int64_t heads) {
  PagedDecodeShape shape;
  shape.num_seqs = seqs;
  shape.heads = heads;
  shape.kv_heads = kv.kv_heads;
  shape.head_dim = kv.head_dim;
  shape.page_size = kv.page_size;
  return shape;
}

__global__ void to_bf16_kernel(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = f32_to_bf16(in[i]);
  }
}

__device__ __forceinline__ float load_kv(const void* pages, KvDtype dtype, int64_t at) {
  return dtype == KvDtype::kBf16 ? bf16_to_f32(static_cast<const uint16_t*>(pages)[at])
                                 : static_cast<const float*>(pages)[at];
}

// Grid (num_seqs, heads, splits); each warp takes query tokens warp_id, warp_id + warps, ... of
// its sequence and walks the cache positions it sees (from the window's start, or 0, to its
// causal limit) with an online softmax in FP32.
// Lane l holds dimensions l, l + 32, ... (head_dim <= 256).
__global__ void paged_attention_kernel(const float* q, PagedKv kv, PagedBatch batch, int64_t heads,
                                       float scale, float* out) {
  constexpr int kPerLane = kMaxHeadDim / 32;
  const int64_t s = blockIdx.x;
  const int64_t h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int64_t warp = int64_t{blockIdx.z} * (blockDim.x / 32) + threadIdx.x / 32;
  const int64_t warps = int64_t{gridDim.z} * (blockDim.x / 32);
  const int64_t head_dim = kv.head_dim;
  const int64_t kvh = h / (heads / kv.kv_heads);
  const int64_t q_begin = batch.q_indptr[s];
  const int64_t nq = batch.q_indptr[s + 1] - q_begin;
  const int64_t ctx = batch.context_lens[s];
  const int32_t* pages = batch.page_indices + batch.page_indptr[s];
  const int64_t unlisted = batch.first_pages != nullptr ? batch.first_pages[s] : 0;

  for (int64_t i = warp; i < nq; i += warps) {
    const int64_t token = q_begin + i;
    const int64_t pos = ctx - nq + i;  // attends to cache positions [lo, pos]
    const int64_t lo = batch.window > 0 ? max(int64_t{0}, pos - batch.window + 1) : 0;
    const float* qrow = q + (token * heads + h) * head_dim;
    float qv[kPerLane], acc[kPerLane];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int64_t d = lane + 32 * j;
      qv[j] = d < head_dim ? qrow[d] : 0.0f;
      acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t p = lo; p <= pos; ++p) {
      const int64_t page = pages[p / kv.page_size - unlisted];
      const int64_t base =
          ((page * kv.page_size + p % kv.page_size) * kv.kv_heads + kvh) * head_dim;
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t d = lane + 32 * j;
        if (d < head_dim) dot += qv[j] * load_kv(kv.k_pages, kv.dtype, base + d);
      }
      for (int offset = 16; offset > 0; offset /= 2) {
        dot += __shfl_xor_sync(0xFFFFFFFFu, dot, offset);
      }
      const float score = dot * scale;
      const float m_new = fmaxf(m, score);
      const float correction = expf(m - m_new);  // exp(-inf) = 0 on the first position
      const float weight = expf(score - m_new);
      l = l * correction + weight;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t d = lane + 32 * j;
        const float vv = d < head_dim ? load_kv(kv.v_pages, kv.dtype, base + d) : 0.0f;
        acc[j] = acc[j] * correction + weight * vv;
      }
      m = m_new;
    }
    float* orow = out + (token * heads + h) * head_dim;
    const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int64_t d = lane + 32 * j;
      if (d < head_dim) orow[d] = acc[j] * inv_l;
    }
  }
}

// paged_attention for decode steps: q to BF16, the split-K decode kernel; returns its BF16
// output (in scratch).
const uint16_t* decode_attention(CudaDevice& device, const float* q, const PagedKv& kv,
                                 const PagedBatch& batch, int64_t heads, float scale,
                                 const AttentionScratchPlan& layout, void* scratch) {
  const int64_t n = batch.num_seqs * heads * kv.head_dim;
  SLIMRT_CHECK(
      n * 2 <= layout.q_bytes,
      "paged_attention: " << batch.num_seqs << " sequences exceed the scratch planned at load");
  auto* q16 = static_cast<uint16_t*>(scratch);
  auto* out16 = reinterpret_cast<uint16_t*>(static_cast<char*>(scratch) + layout.q_bytes);
  void* workspace = static_cast<char*>(scratch) + 2 * layout.q_bytes;
  const PagedDecodeShape shape = decode_shape(kv, batch.num_seqs, heads);
  // A sliding window's query reads window positions at most, however long the sequence.
  const int64_t span =
      batch.window > 0 ? std::min(batch.max_context, batch.window) : batch.max_context;
  PagedDecodePlan plan = paged_decode_attention_plan(shape, span);
  while (plan.workspace_bytes > layout.workspace_bytes && plan.splits > 1) {
    plan = paged_decode_attention_plan(shape, span, plan.splits / 2);
  }
  to_bf16_kernel<<<grid_for(n), kThreads, 0, device.stream()>>>(q, n, q16);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
  PagedDecodeArgs args;
  args.q = q16;
  args.k_pages = static_cast<const uint16_t*>(kv.k_pages);
  args.v_pages = static_cast<const uint16_t*>(kv.v_pages);
  args.page_indptr = batch.page_indptr;
  args.page_indices = batch.page_indices;
  args.context_lens = batch.context_lens;
  args.first_pages = batch.first_pages;
  args.out = out16;
  args.scale = scale;
  args.window = batch.window;
  paged_decode_attention_cuda(plan, args, workspace, plan.workspace_bytes, device.stream());
  return out16;
}

// The arguments both tensor-core kernels take: the dense pages and the batch, out in BF16.
PagedPrefillArgs prefill_args(const float* q, const PagedKv& kv, const PagedBatch& batch,
                              int64_t heads, float scale, void* out) {
  PagedPrefillArgs args;
  args.q = q;
  args.k_pages = static_cast<const uint16_t*>(kv.k_pages);
  args.v_pages = static_cast<const uint16_t*>(kv.v_pages);
  args.q_indptr = batch.q_indptr;
  args.page_indptr = batch.page_indptr;
  args.page_indices = batch.page_indices;
  args.context_lens = batch.context_lens;
  args.first_pages = batch.first_pages;
  args.out = static_cast<uint16_t*>(out);
  args.window = batch.window;
  args.scale = scale;
  args.num_seqs = batch.num_seqs;
  args.heads = heads;
  args.kv_heads = kv.kv_heads;
  args.head_dim = kv.head_dim;
  args.page_size = kv.page_size;
  args.max_query_tokens = batch.max_query_tokens;
  return args;
}

}  // namespace

// The batch arrays are device memory and are not read back: the engine builds them consistent
// (the CPU backend's per-call checks of them are not repeated here).
MatmulInput paged_attention(CudaDevice& device, const float* q, const PagedKv& kv,
                            const PagedBatch& batch, int64_t heads, float scale, float* out,
                            const AttentionScratchPlan& plan, void* scratch, void* input_scratch) {
  SLIMRT_CHECK(batch.num_seqs <= 0x7FFFFFFF && heads <= 65535,
               "paged_attention: " << batch.num_seqs << " sequences x " << heads
                                   << " heads is too large a grid");
  const int64_t width = heads * kv.head_dim;
  if (batch.num_seqs <= 0) return {input_scratch, 0, width};
  if (kv.k_records != nullptr) {
    SparsePagedArgs args;
    static_cast<PagedPrefillArgs&>(args) = prefill_args(q, kv, batch, heads, scale, input_scratch);
    args.k_records = static_cast<const uint8_t*>(kv.k_records);
    args.v_records = static_cast<const uint8_t*>(kv.v_records);
    args.dense_pages = kv.dense_pages;
    args.k_record_bytes = kv_record_bytes(kv.head_dim, kv.k_kept);
    args.v_record_bytes = kv_record_bytes(kv.head_dim, kv.v_kept);
    args.max_context = batch.max_context;
    // The decode kernel's split workspace (plan_attention_scratch) serves this kernel's splits.
    const bool planned = scratch != nullptr && plan.workspace_bytes > 0;
    sparse_paged_attention_cuda(args,
                                planned ? static_cast<char*>(scratch) + 2 * plan.q_bytes : nullptr,
                                planned ? plan.workspace_bytes : 0, device.stream());
    return {input_scratch, batch.num_tokens, width};
  }
  if (batch.max_query_tokens == 1 && scratch != nullptr && plan.bytes > 0 &&
      decode_kernel_fits(kv, heads)) {
    return {decode_attention(device, q, kv, batch, heads, scale, plan, scratch), batch.num_seqs,
            width};
  }
  if (kv.dtype == KvDtype::kBf16 &&
      paged_prefill_attention_fits(heads, kv.kv_heads, kv.head_dim, kv.page_size)) {
    const PagedPrefillArgs args = prefill_args(q, kv, batch, heads, scale, input_scratch);
    paged_prefill_attention_cuda(args, device.stream());
    return {input_scratch, batch.num_tokens, width};
  }
  constexpr unsigned kSplits = 8;  // blocks per (sequence, head): 32 query tokens at a time
  const dim3 grid(static_cast<unsigned>(batch.num_seqs), static_cast<unsigned>(heads), kSplits);
  paged_attention_kernel<<<grid, 32 * kAttentionWarps, 0, device.stream()>>>(q, kv, batch, heads,
                                                                             scale, out);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
  const int64_t n = batch.num_tokens * width;
  if (n > 0) {
    to_bf16_kernel<<<grid_for(n), kThreads, 0, device.stream()>>>(
        out, n, static_cast<uint16_t*>(input_scratch));
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }
  return {input_scratch, batch.num_tokens, width};
}

// Layout: q and out in BF16 (align256 each), then the split-K workspace of the largest plan any
// batch within the bounds gets (decode_attention re-plans with fewer splits past it).
AttentionScratchPlan plan_attention_scratch(int64_t max_seqs, int64_t heads, const PagedKv& kv,
                                            int64_t max_context) {
  if (!decode_kernel_fits(kv, heads) || max_seqs <= 0) return {};
  int64_t workspace = 0;
  for (int64_t s = 1; s <= max_seqs; ++s) {
    workspace = std::max(
        workspace,
        paged_decode_attention_plan(decode_shape(kv, s, heads), max_context).workspace_bytes);
  }
  AttentionScratchPlan plan;
  plan.q_bytes = align256(max_seqs * heads * kv.head_dim * 2);
  plan.workspace_bytes = workspace;
  plan.bytes = 2 * plan.q_bytes + workspace;
  return plan;
}

}  // namespace slimrt::cuda
