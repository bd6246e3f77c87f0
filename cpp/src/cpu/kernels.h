// CPU kernels of the runtime: the reference every other backend is tested against, and what
// runs a model on a laptop. The ops (ops/) call them on a CpuDevice. Activations are FP32
// row-major; weights are BF16 bit patterns (uint16) row-major [out_features][in_features];
// accumulation is FP32. Every kernel that takes a ThreadPool splits its work over it and returns
// when all of it is done. No kernel allocates memory: callers pass every buffer (the runtime owns
// them in arenas). Sizes and shapes are the caller's to check: the ops check them once per call,
// for every backend (ops/<op>.cpp); a kernel checks only what it reads from its data.
//
//   cpu::embed(ids, tokens, table, hidden, out, pool);   // one file per kernel: cpu/embed.cpp
#pragma once

#include <cstdint>

#include "kernel_args.h"
#include "slimrt/df11.h"
#include "thread_pool.h"

namespace slimrt::cpu {

using slimrt::KvDtype;
using slimrt::PagedBatch;
using slimrt::PagedKv;
using slimrt::SampleParams;

// out[t][:] = table[ids[t]][:] widened to FP32. ids must be in [0, vocab) (checked by caller).
void embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden, float* out,
           ThreadPool& pool);

// embed() from a DF11 table ([numel / hidden][hidden], `decoding` its df11_build_table), decoding
// only the groups that hold the requested rows, into `scratch`
// (embed_df11_scratch_elements(hidden, pool) uint16 elements: a slot per thread).
void embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table,
                const Df11Table& decoding, int64_t hidden, float* out, uint16_t* scratch,
                ThreadPool& pool);
int64_t embed_df11_scratch_elements(int64_t hidden, const ThreadPool& pool);

// Decodes a whole DF11 tensor (validated at load; `table` its df11_build_table) into BF16 bits,
// bit-exact, its groups split over the pool (cpu/df11_decode.cpp, beside df11_decode_cpu()).
void decode_df11(const Df11View& view, const Df11Table& table, uint16_t* out, ThreadPool& pool);

// dst[i][:] = src[rows[i]][:], rows `width` floats wide.
void gather_rows(const float* src, const int32_t* rows, int64_t count, int64_t width, float* dst);

// dst[r][0, cols) = src[r][0, cols) for r < rows, rows `*_stride` floats apart.
void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                int64_t cols);

// out[r][:] = x[r][:] / sqrt(mean(x[r]^2) + eps) * weight[:]. out may equal x.
void rms_norm(const float* x, const float* weight, int64_t rows, int64_t cols, float eps,
              float* out, ThreadPool& pool);
// The same over each head's head_dim values of x + t * stride + h * head_dim, in place.
void head_rms_norm(float* x, int64_t tokens, int64_t stride, int64_t heads, int64_t head_dim,
                   const float* weight, float eps, ThreadPool& pool);

// out[r][j] = sum_k x[r][k] * bf16(w[j][k]) (+ bias[j] if bias != nullptr), for r < rows,
// j < n. FP32 accumulation; any k (no multiple-of-anything requirement). Must be fast for
// rows = 1 (decode GEMV, memory-bound: stream w once) and rows in the hundreds (prefill:
// reuse each loaded weight row across many activation rows).
void matmul_bf16(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t n,
                 const float* bias, float* out, ThreadPool& pool);
// matmul_bf16 of `count` weight rows (out columns) on the calling thread, out rows `ldo` apart:
// the same arithmetic per output, so a caller that splits the columns its own way (matmul_df11)
// gets matmul_bf16's bits.
void matmul_bf16_rows(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t count,
                      const float* bias, float* out, int64_t ldo);

// matmul_bf16 with w a DF11 tensor ([n][k], validated, `decoding` its df11_build_table), decoded
// a block of weight rows at a time into the calling thread's slot of `scratch`
// (matmul_df11_scratch_elements(k, pool) uint16), where the block is consumed while it is in
// cache: the BF16 weights never reach memory. Bit-identical to decoding w, then matmul_bf16.
void matmul_df11(const float* x, int64_t rows, int64_t k, const Df11View& w,
                 const Df11Table& decoding, int64_t n, const float* bias, float* out,
                 uint16_t* scratch, ThreadPool& pool);
int64_t matmul_df11_scratch_elements(int64_t k, const ThreadPool& pool);

// Rotary embedding in Hugging Face's layout (rotate_half: pairs (i, i + head_dim/2)), in place:
// x is [tokens][heads][head_dim], token t's heads starting at x + t * row_stride (row_stride >=
// heads * head_dim: a slice of a fused q|k|v row); token t is at position positions[t]; the angle
// of pair i is positions[t] * inv_freq[i], i < head_dim/2 (inv_freq already includes any rope
// scaling), rounded to FP32 as Hugging Face computes it. head_dim must be even. freq_sets, if not
// null, makes token t use inv_freq + freq_sets[t] * head_dim / 2 (LongRoPE).
void rope(float* x, int64_t row_stride, const int32_t* positions, int64_t tokens, int64_t heads,
          int64_t head_dim, const float* inv_freq, ThreadPool& pool,
          const int32_t* freq_sets = nullptr);

// out[t][i] = silu(gate[t][i]) * up[t][i], silu(g) = g / (1 + exp(-g)); gate and up rows are
// row_stride floats apart (width, or 2 * width for a fused gate|up row), out rows width.
void silu_mul(const float* gate, const float* up, int64_t row_stride, int64_t tokens, int64_t width,
              float* out, ThreadPool& pool);

// Mixture-of-experts routing (ops/moe.h): for each token, the top_k experts of softmax(logits
// row) in descending order (ties to the lower expert) into ids [tokens][top_k], their
// probabilities into weights, divided by their sum if renormalize. top_k <= experts.
void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k,
               bool renormalize, int32_t* ids, float* weights);
// out[t] = sum_j weights[t][j] * expert_out[rows[t][j]] over token t's top_k (<= 64) choices, added
// in ascending order of ids[t][j] (transformers' order), rows of `hidden`. out [tokens][hidden].
void moe_combine(const float* expert_out, const int32_t* ids, const float* weights,
                 const int32_t* rows, int64_t tokens, int64_t top_k, int64_t hidden, float* out,
                 ThreadPool& pool);

// x[i] += y[i].
void add_inplace(float* x, const float* y, int64_t n, ThreadPool& pool);

// Stores K/V rows of `tokens` new tokens ([tokens][kv_heads][head_dim] FP32 each, rows row_stride
// floats apart) at
// slots[t] = page * page_size + offset (BF16 storage rounds to nearest even). A negative slot
// (padding) is skipped.
void kv_write(const PagedKv& kv, const float* k, const float* v, int64_t row_stride,
              const int32_t* slots, int64_t tokens, ThreadPool& pool);

// Packs the BF16 dense pages src_pages[i] (every one of their page_size tokens) into the
// compressed pages dst_pages[i] (ids from kv.dense_pages on): per token and KV head, a K record
// of the kv.k_kept largest-|x| values, ties to the lower index, and a V record of kv.v_kept
// (docs/FORMAT.md, "Sparse KV pages"). The dense pages are left as they are.
void kv_compress(const PagedKv& kv, const int32_t* src_pages, const int32_t* dst_pages,
                 int64_t count, ThreadPool& pool);

// Grouped-query attention over the paged cache: q is [tokens][heads][head_dim], query head h
// reads KV head h / (heads / kv_heads); softmax(q·k * scale) · v in FP32 with a running max
// (numerically safe for any context length). out is [tokens][heads][head_dim].
// Compressed pages (kv.k_records set, BF16 only) read as their kept values with zeros elsewhere.
// Limits: head_dim <= kMaxAttentionHeadDim, heads / kv_heads <= kMaxAttentionGroup; a sequence
// with more query tokens than context, or fewer pages than its context needs, throws
// slimrt::Error (checked per call, O(seqs)).
// Uses up to ~100 KB of the calling thread's stack (split-context partial results).
void paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch, int64_t heads,
                     float scale, float* out, ThreadPool& pool);

// Draws one token id per row of logits [rows][vocab]: temperature, then top-k, top-p
// (shortest prefix of the most likely tokens whose probability reaches top_p), min-p (keep
// p >= min_p * max p), then a draw from a counter-based generator keyed by (seed, counter), so a
// row's result does not depend on the other rows of the batch. The exact rules, which the CUDA
// sampler shares, are in sample_rules.h. `scratch` holds at least rows * vocab * 8 bytes.
// Parameters are the caller's to validate (temperature >= 0, top_k >= 0, 0 < top_p <= 1,
// 0 <= min_p <= 1); a row without a finite logit draws its argmax. The vocabulary is at most
// kMaxSampleVocab (sample_rules.h). logprobs, when given, receives each row's log-probabilities
// (kernel_args.h; its top_n the caller's to check).
void sample(const float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
            int32_t* out, void* scratch, ThreadPool& pool,
            const SampleLogprobs* logprobs = nullptr);

}  // namespace slimrt::cpu
