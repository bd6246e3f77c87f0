// Attention of a ragged batch's queries over the paged KV cache, producing the o_proj matmul's
// input (cpu/paged_attention.cpp; cuda/paged_attention.cu, which picks the decode, prefill or a
// simple kernel).
//
//   const int64_t bytes = ops::attention_scratch_bytes(device, max_batch, heads, kv, max_context);
//   MatmulInput in = ops::paged_attention(device, q, kv, batch, heads, scale, out, scratch,
//                                         input_scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// Attention of q [batch.num_tokens][heads][head_dim] over the cache (cpu::paged_attention: GQA,
// causal, FP32 softmax), as a matmul input (matmul_bf16.h: FP32 into `out`, or on CUDA BF16 in
// `scratch` or `input_scratch`). heads must be a multiple of kv.kv_heads, at most
// kMaxAttentionGroup per KV head; head_dim at most kMaxAttentionHeadDim. scratch:
// attention_scratch_bytes() bytes for batches within the bounds given there; input_scratch:
// matmul_input_bytes(num_tokens, heads * head_dim).
MatmulInput paged_attention(Device& device, const float* q, const PagedKv& kv,
                            const PagedBatch& batch, int64_t heads, float scale, float* out,
                            void* scratch, void* input_scratch);

// What the device's fastest kernels need for batches of at most max_seqs sequences of at most
// max_context tokens (0 when they need nothing). Called once, at load: on CUDA it also fixes the
// scratch layout that paged_attention() then expects.
int64_t attention_scratch_bytes(Device& device, int64_t max_seqs, int64_t heads, const PagedKv& kv,
                                int64_t max_context);

}  // namespace slimrt::ops
