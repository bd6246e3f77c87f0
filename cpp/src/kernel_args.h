// The argument types every backend's kernels share: a layer's paged KV cache, a ragged batch
// over it, and per-row sampling parameters. cpu/kernels.h documents their exact semantics.
#pragma once

#include <cstdint>

#include "slimrt/engine.h"

namespace slimrt {

enum class KvDtype { kBf16, kF32 };

// One layer's paged KV cache: a pool of pages, each holding page_size tokens of K (and, in the
// same layout, V) as [page_size][kv_heads][head_dim] elements of `dtype`. Page ids are shared
// by all layers.
//
// With k_records set, the cache also holds compressed pages (docs/FORMAT.md, "Sparse KV
// pages"): page ids from dense_pages on name them, so the kind of each block-table entry is its
// id's. Compressed page c = id - dense_pages keeps token i of KV head h as one K record at
// k_records + ((c * kv_heads + h) * page_size + i) * kv_record_bytes(head_dim, k_kept), V
// likewise; each record region is followed by kKvRecordTailPad bytes (safe over-read).
struct PagedKv {
  void* k_pages = nullptr;
  void* v_pages = nullptr;
  KvDtype dtype = KvDtype::kBf16;
  int64_t page_size = 16;
  int64_t kv_heads = 0;
  int64_t head_dim = 0;
  void* k_records = nullptr;  // nullptr: every page is dense
  void* v_records = nullptr;
  int64_t dense_pages = 0;
  int64_t k_kept = 0;  // values kept per K record (kv_kept_count)
  int64_t v_kept = 0;

  bool compressed(int64_t page) const { return k_records != nullptr && page >= dense_pages; }
};

// The largest head_dim and GQA group (query heads per KV head) attention takes on every backend:
// ops::paged_attention refuses more, and the kernels size their per-row buffers by them.
constexpr int64_t kMaxAttentionHeadDim = 256;
constexpr int64_t kMaxAttentionGroup = 128;

// A ragged batch of sequences, as CSR arrays (FlashInfer's paged_kv_t):
// - sequence s owns query tokens [q_indptr[s], q_indptr[s+1]) of q and out;
// - its KV pages are page_indices[page_indptr[s] .. page_indptr[s+1]), in order;
// - context_lens[s] tokens of it are in the cache (including its new tokens, already written
//   by kv_write); its i-th of n query tokens sits at position context_lens[s] - n + i and
//   attends causally to cache positions [0, that position], or with a sliding window of
//   `window` tokens to (that position - window, that position]: itself and the window - 1
//   before it (transformers' sliding_window_overlay, kv_idx > q_idx - window);
// - with first_pages set, sequence s's pages before page first_pages[s] (positions below
//   first_pages[s] * page_size) are not listed (they were freed: no query of the step may see
//   them), so its listed page i holds positions from (first_pages[s] + i) * page_size on.
struct PagedBatch {
  const int32_t* q_indptr = nullptr;
  const int32_t* page_indptr = nullptr;
  const int32_t* page_indices = nullptr;
  const int32_t* context_lens = nullptr;
  const int32_t* first_pages = nullptr;  // nullptr: every sequence's pages from position 0
  int64_t window = 0;                    // 0: full causal attention
  int64_t num_seqs = 0;
  // Host-side facts about the arrays above, for backends that pick a kernel by them: the query
  // tokens in all (q_indptr[num_seqs]), the most of one sequence (1: a decode step) and an upper
  // bound of context_lens.
  int64_t num_tokens = 0;
  int64_t max_query_tokens = 0;
  int64_t max_context = 0;
};

// q, k and v rows of a step's tokens: token t's q at q + t * q_stride, its k and v at
// k + t * kv_stride and v + t * kv_stride (one fused q|k|v matmul output: both strides are the
// fused width; separate outputs: their own widths).
struct QkvRows {
  float* q = nullptr;
  float* k = nullptr;
  const float* v = nullptr;
  int64_t q_stride = 0;
  int64_t kv_stride = 0;
};

// The scratch of paged_attention, planned once for the largest batch a caller will run
// (ops::plan_attention_scratch) and handed back with every call: the caller owns the layout, so
// any number of executors can share one device (FlashInfer's plan/run split).
struct AttentionScratchPlan {
  int64_t bytes = 0;            // what the caller allocates (0: the kernels need none)
  int64_t q_bytes = 0;          // CUDA decode: q and out in BF16, q_bytes each
  int64_t workspace_bytes = 0;  // CUDA decode: then the split-K workspace
};

// The left operand of ops::matmul_bf16, x[rows][k], in the form the backend's GEMM reads
// (ops/matmul_bf16.h): FP32 on the CPU, BF16 bits on CUDA.
struct MatmulInput {
  const void* data = nullptr;
  int64_t rows = 0;
  int64_t k = 0;
};

// Per-row sampling parameters: a request's (slimrt/engine.h: temperature 0 is greedy, argmax
// with ties to the lowest id) and the position of the token being drawn (same seed + counter =
// same draw).
struct SampleParams : SamplingParams {
  uint64_t counter = 0;
};

// What a sample also writes when asked (ops::sample; rules in sample_rules.h), in device memory:
// per row, the log-probability of the drawn token and the top_n most likely tokens (0 <= top_n <=
// kMaxTopLogprobs, at most the vocabulary) with theirs, most likely first.
struct SampleLogprobs {
  int32_t top_n = 0;
  float* sampled = nullptr;       // [rows]
  int32_t* top_ids = nullptr;     // [rows][top_n]
  float* top_logprobs = nullptr;  // [rows][top_n]
};

}  // namespace slimrt
