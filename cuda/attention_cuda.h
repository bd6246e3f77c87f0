// Attention on a CUDA GPU over a paged BF16 KV cache, with the cache layout and batch arrays of
// cpu::paged_attention (cpu/kernels.h): decode (one query token per sequence) and, further down,
// prefill (many). The header needs no CUDA headers: streams travel as void*. In a build without
// CUDA every function here throws slimrt::Error("... built without CUDA") (the fits() query
// answers false).
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

// The problem's static sizes. heads / kv_heads (the GQA group) must be 1 to 8; head_dim
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
// context_lens[s] - 1, attending to positions [0, context_lens[s]), or with a sliding window to
// [context_lens[s] - window, context_lens[s]); first_pages as in cpu::PagedBatch: with a window,
// plan for min(max_context, window) positions). q, the pages, out and the
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
  const int32_t* first_pages = nullptr;   // num_seqs, or nullptr: every list starts at page 0
  uint16_t* out = nullptr;
  float scale = 0.0f;  // usually 1 / sqrt(head_dim)
  int64_t window = 0;  // 0: full causal attention
};

// out = softmax(q·Kᵀ * scale) · V per query head (head h reads KV head h / (heads / kv_heads)),
// FP32 accumulation, online softmax; asynchronous on `stream` (a cudaStream_t, nullptr = default).
// `workspace` holds at least plan.workspace_bytes (nullptr allowed when that is 0).
void paged_decode_attention_cuda(const PagedDecodePlan& plan, const PagedDecodeArgs& args,
                                 void* workspace, int64_t workspace_bytes, void* stream);

// ---- prefill: many query tokens per sequence ----------------------------------------------------
//
// Causal attention for the query tokens of a prefill step (a whole prompt, or a chunk of one
// after an earlier prefix) on tensor cores (FlashAttention-2 style), with the semantics of
// cpu::paged_attention:
//
//   if (slimrt::paged_prefill_attention_fits(heads, kv_heads, head_dim, page_size)) {
//     slimrt::PagedPrefillArgs args;  // device pointers, sizes, scale, max_query_tokens
//     slimrt::paged_prefill_attention_cuda(args, stream);
//   }
//
// Needs no plan and no workspace; allocates and synchronises nothing (CUDA-graph safe).

// Whether the prefill kernel takes these sizes: head_dim 64 or 128, heads a positive multiple of
// kv_heads (any group size; groups divisible by 2, 4 or 8 share K/V tiles between heads),
// heads <= 65536, page_size a power of two <= 2^30. Always false in a build without CUDA.
bool paged_prefill_attention_fits(int64_t heads, int64_t kv_heads, int64_t head_dim,
                                  int64_t page_size);

// Device pointers and sizes of one call. Sequence s owns query tokens [q_indptr[s],
// q_indptr[s+1]); with n of them, its i-th sits at position context_lens[s] - n + i and attends to
// cache positions [0, that position], or with a sliding window to (that position - window, that
// position] (the cache already holds the new tokens' K/V; first_pages as in cpu::PagedBatch: pages
// no query sees may be left out). Query head h
// reads KV head h / (heads / kv_heads). q, the pages and out must be 16-byte aligned. Not checked
// (the arrays live on the device): n <= context_lens[s], n <= max_query_tokens (later tokens are
// not computed), at least ceil(context_lens[s] / page_size) pages per sequence, every page index
// in the pool. A sequence with no query tokens writes nothing, and out rows of tokens that no
// sequence owns are left alone.
struct PagedPrefillArgs {
  const float* q = nullptr;               // [num_tokens][heads][head_dim] FP32, RoPE applied
  const uint16_t* k_pages = nullptr;      // [pages][page_size][kv_heads][head_dim] BF16 bits
  const uint16_t* v_pages = nullptr;      // same layout
  const int32_t* q_indptr = nullptr;      // num_seqs + 1
  const int32_t* page_indptr = nullptr;   // num_seqs + 1
  const int32_t* page_indices = nullptr;  // page_indptr[num_seqs]
  const int32_t* context_lens = nullptr;  // num_seqs
  const int32_t* first_pages = nullptr;   // num_seqs, or nullptr: every list starts at page 0
  uint16_t* out = nullptr;                // [num_tokens][heads][head_dim] BF16 bits
  int64_t window = 0;                     // 0: full causal attention
  float scale = 0.0f;                     // usually 1 / sqrt(head_dim)
  int64_t num_seqs = 0, heads = 0, kv_heads = 0, head_dim = 0, page_size = 0;
  int64_t max_query_tokens = 0;  // host-side upper bound of q_indptr[s+1] - q_indptr[s]
};

// out = softmax(q·Kᵀ * scale) · V per query token and head, causal; q rounded to BF16 and the
// probabilities to BF16 for the tensor-core products, softmax and accumulation in FP32 (online),
// out rounded to nearest even. Asynchronous on `stream` (a cudaStream_t, nullptr = default).
// Throws slimrt::Error for sizes that do not fit, null or misaligned pointers, a non-finite scale.
void paged_prefill_attention_cuda(const PagedPrefillArgs& args, void* stream);

// ---- compressed pages: block tables mixing dense and bitmap-sparse pages ----------------------
//
// Attention of a ragged batch (decode or prefill, any mix of query counts) over a cache whose
// block tables mix dense BF16 pages and compressed pages (docs/FORMAT.md, "Sparse KV pages"),
// with the semantics of cpu::paged_attention: a compressed position reads its kept values, zeros
// elsewhere.
//
//   if (slimrt::sparse_paged_attention_fits(heads, kv_heads, head_dim, page_size)) {
//     slimrt::SparsePagedArgs args;  // device pointers, sizes, scale
//     slimrt::sparse_paged_attention_cuda(args, workspace, workspace_bytes, stream);
//   }
//
// Allocates and synchronises nothing (CUDA-graph safe). Decode batches (max_query_tokens 1) are
// split over the context as far as the workspace allows (split_workspace_bytes in
// decode_splits.h); with no workspace each block walks a whole context.

// Whether the kernel takes these sizes: head_dim 64 or 128, heads a positive multiple of
// kv_heads, heads <= 65536, page_size a power of two <= 2^30. Always false without CUDA.
bool sparse_paged_attention_fits(int64_t heads, int64_t kv_heads, int64_t head_dim,
                                 int64_t page_size);

// The prefill kernel's arguments (the dense pages, the batch, out), plus the compressed pages. Page
// id `id` of page_indices is dense page id when id < dense_pages, else compressed page id -
// dense_pages, whose records start at k_records / v_records (kv_record_bytes each, followed by
// kKvRecordTailPad bytes: the kernel reads up to 15 bytes past a record and up to 14 before one,
// within the region). q, the dense pages, the record regions and out 16-byte aligned.
struct SparsePagedArgs : PagedPrefillArgs {
  const uint8_t* k_records = nullptr;
  const uint8_t* v_records = nullptr;
  int64_t dense_pages = 0;
  int64_t k_record_bytes = 0;  // kv_record_bytes(head_dim, k_kept)
  int64_t v_record_bytes = 0;
  int64_t max_context = 0;   // host-side upper bound of context_lens
  int32_t force_splits = 0;  // > 0: that many splits of a decode batch (tests of the merge)
};

// out = softmax(q·Kᵀ * scale) · V per query token and head, causal, as the prefill kernel rounds
// (q and P to BF16 for the tensor cores, FP32 softmax and accumulation). Throws slimrt::Error
// for sizes that do not fit, null or misaligned pointers, a non-finite scale, a forced split
// whose workspace is not given.
void sparse_paged_attention_cuda(const SparsePagedArgs& args, void* workspace,
                                 int64_t workspace_bytes, void* stream);

}  // namespace slimrt
