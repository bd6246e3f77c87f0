#include "ops/paged_attention.h"

#include <cstdint>

#include "attention_cuda.h"
#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "ops/matmul_bf16.h"

namespace slimrt::ops {

MatmulInput paged_attention(Device& device, const float* q, const PagedKv& kv,
                            const PagedBatch& batch, int64_t heads, float scale, float* out,
                            const AttentionScratchPlan& plan, void* scratch, void* input_scratch) {
  SLIMRT_CHECK(kv.kv_heads > 0 && heads > 0 && heads % kv.kv_heads == 0,
               "paged_attention: " << heads << " query heads do not divide into " << kv.kv_heads
                                   << " KV heads");
  SLIMRT_CHECK(heads / kv.kv_heads <= kMaxAttentionGroup,
               "paged_attention: at most " << kMaxAttentionGroup << " query heads per KV head, got "
                                           << heads / kv.kv_heads);
  SLIMRT_CHECK(kv.head_dim > 0 && kv.head_dim <= kMaxAttentionHeadDim,
               "paged_attention: head_dim " << kv.head_dim << " outside [1, "
                                            << kMaxAttentionHeadDim << "]");
  SLIMRT_CHECK(kv.page_size > 0, "paged_attention: page_size " << kv.page_size);
  SLIMRT_CHECK(batch.window >= 0 && batch.window <= INT32_MAX,
               "paged_attention: window " << batch.window << " outside [0, 2^31)");
  const int64_t width = heads * kv.head_dim;
  SLIMRT_CHECK(
      batch.num_seqs >= 0 && batch.num_tokens >= 0,
      "paged_attention: " << batch.num_seqs << " sequences of " << batch.num_tokens << " tokens");
  SLIMRT_CHECK(
      batch.num_seqs == 0 ||
          (q != nullptr && out != nullptr && kv.k_pages != nullptr && kv.v_pages != nullptr &&
           batch.q_indptr != nullptr && batch.page_indptr != nullptr &&
           batch.page_indices != nullptr && batch.context_lens != nullptr &&
           (input_scratch != nullptr || matmul_input_bytes(device, batch.num_tokens, width) == 0)),
      "paged_attention: a null pointer");
  if (kv.k_records != nullptr) {
    check_sparse_attention_supported(device, heads, kv);
    SLIMRT_CHECK(kv.v_records != nullptr && kv.dtype == KvDtype::kBf16 && kv.dense_pages >= 0 &&
                     kv.k_kept >= 0 && kv.k_kept <= kv.head_dim && kv.v_kept >= 0 &&
                     kv.v_kept <= kv.head_dim,
                 "paged_attention: compressed pages need a bf16 cache, V records and kept counts "
                 "in [0, head_dim], got "
                     << kv.k_kept << " and " << kv.v_kept << " of " << kv.head_dim);
  }
  switch (device.backend()) {
    case Backend::kCpu:
      cpu::paged_attention(q, kv, batch, heads, scale, out, cpu_device(device).pool());
      break;
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::paged_attention(cuda_device(device), q, kv, batch, heads, scale, out,
                                               plan, scratch, input_scratch));
  }
  return {out, batch.num_tokens, width};  // the CPU's matmul reads the FP32 output itself
}

void check_sparse_attention_supported(Device& device, int64_t heads, const PagedKv& kv) {
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported,
                  device.backend() == Backend::kCpu ||
                      sparse_paged_attention_fits(heads, kv.kv_heads, kv.head_dim, kv.page_size),
                  "kv_sparsity > 0 on CUDA needs head_dim 64 or 128 and a power-of-two page_size, "
                  "got head_dim "
                      << kv.head_dim << ", page_size " << kv.page_size << " (" << heads
                      << " query heads, " << kv.kv_heads << " KV heads)");
}

AttentionScratchPlan plan_attention_scratch(Device& device, int64_t max_seqs, int64_t heads,
                                            const PagedKv& kv, int64_t max_context) {
  // The CPU kernel keeps its partial results on the stack.
  return device.backend() == Backend::kCuda
             ? SLIMRT_CUDA(cuda::plan_attention_scratch(max_seqs, heads, kv, max_context))
             : AttentionScratchPlan{};
}

}  // namespace slimrt::ops
