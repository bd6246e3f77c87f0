// Decode attention on a CUDA GPU: one query token per sequence over a paged BF16 KV cache, with
// the cache layout and batch arrays of cpu::paged_attention (cpu/kernels.h). The header needs no
// CUDA headers: streams travel as void*. In a build without CUDA every function here throws
// slimrt::Error("... built without CUDA").
//
// Plan once per step (host only, no device memory touched), run once per layer:
//
//   slimrt::PagedDecodeShape shape{num_seqs, /*heads=*/32, /*kv_heads=*/8, /*head_dim=*/128,
//                                  /*page_size=*/16};
//   auto plan = slimrt::paged_decode_attention_plan(shape, max_context);
//   // workspace: plan.workspace_bytes of device memory the caller owns (may be 0)
//   for (layer ...) slimrt::paged_decode_attention_cuda(plan, args[layer], workspace,
//                                                       workspace_bytes, stream);
//
// run() allocates nothing and synchronises nothing, so it can be captured in a CUDA graph.
#pragma once

#include <cstdint>

namespace slimrt {

// The problem's static sizes. heads / kv_heads (the GQA group) must be 1, 2, 4 or 8; head_dim
// 64 or 128; page_size a power of two.
struct PagedDecodeShape {
  int64_t num_seqs = 0;
  int64_t heads = 0;
  int64_t kv_heads = 0;
  int64_t head_dim = 128;
  int64_t page_size = 16;
};

// How run() splits each sequence's context (FlashDecoding): `splits` blocks per
// (sequence, KV head), each covering `chunk_tokens` positions, whose partial softmaxes are merged
// by a second kernel through the workspace. splits == 1 needs no workspace and no merge.
struct PagedDecodePlan {
  PagedDecodeShape shape;
  int64_t max_context = 0;  // what the plan was made for
  int32_t chunk_tokens = 0;
  int32_t splits = 1;
  int64_t workspace_bytes = 0;
};

// Chooses the split for the current CUDA device (its SM count and the kernel's occupancy): the
// split count that minimises waves of (sequence, KV head, split) blocks times the time of one
// block, with chunks of at least 256 positions. `max_context` is the longest
// context_lens[s] of the batch the plan will run on; a longer one still gives the right result
// (its last split takes the rest) but runs slower. force_splits > 0 overrides the heuristic (tests
// use it to exercise the merge).
PagedDecodePlan paged_decode_attention_plan(const PagedDecodeShape& shape, int64_t max_context,
                                            int32_t force_splits = 0);

// Device pointers of one call. q and out are [num_seqs][heads][head_dim] BF16 bit patterns; K and
// V pages are [pages][page_size][kv_heads][head_dim] BF16 (the pool of cpu::PagedKv); the CSR
// arrays are int32 as in cpu::PagedBatch (no q_indptr: one query token per sequence, at position
// context_lens[s] - 1, attending to positions [0, context_lens[s])). q, the pages, out and the
// workspace must be 16-byte aligned. A sequence must own at least ceil(context_lens[s] /
// page_size) pages and every page index must lie in the pool; neither is checked (the arrays live
// on the device). A sequence with context_lens[s] <= 0 gets a zero output.
struct PagedDecodeArgs {
  const uint16_t* q = nullptr;
  const uint16_t* k_pages = nullptr;
  const uint16_t* v_pages = nullptr;
  const int32_t* page_indptr = nullptr;   // num_seqs + 1
  const int32_t* page_indices = nullptr;  // page_indptr[num_seqs]
  const int32_t* context_lens = nullptr;  // num_seqs
  uint16_t* out = nullptr;
  float scale = 0.0f;  // usually 1 / sqrt(head_dim)
};

// out = softmax(q·Kᵀ * scale) · V per query head (head h reads KV head h / (heads / kv_heads)),
// FP32 accumulation, online softmax; asynchronous on `stream` (a cudaStream_t, nullptr = default).
// `workspace` holds at least plan.workspace_bytes (nullptr allowed when that is 0).
void paged_decode_attention_cuda(const PagedDecodePlan& plan, const PagedDecodeArgs& args,
                                 void* workspace, int64_t workspace_bytes, void* stream);

}  // namespace slimrt
