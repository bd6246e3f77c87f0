// Attention of a ragged batch's queries over the paged KV cache, producing the o_proj matmul's
// input (cpu/paged_attention.cpp; cuda/paged_attention.cu, which picks the decode, prefill or a
// simple kernel).
//
//   AttentionScratchPlan plan = ops::plan_attention_scratch(device, max_batch, heads, kv, ctx);
//   MatmulInput in = ops::paged_attention(device, q, kv, batch, heads, scale, out, plan, scratch,
//                                         input_scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// Attention of q [batch.num_tokens][heads][head_dim] over the cache (cpu::paged_attention: GQA,
// causal, FP32 softmax), as a matmul input (matmul_bf16.h: FP32 into `out`, or on CUDA BF16 in
// `scratch` or `input_scratch`). heads must be a multiple of kv.kv_heads, at most
// kMaxAttentionGroup per KV head; head_dim at most kMaxAttentionHeadDim. scratch: plan.bytes
// bytes, for batches within the bounds it was planned for; input_scratch:
// matmul_input_bytes(num_tokens, heads * head_dim).
MatmulInput paged_attention(Device& device, const float* q, const PagedKv& kv,
                            const PagedBatch& batch, int64_t heads, float scale, float* out,
                            const AttentionScratchPlan& plan, void* scratch, void* input_scratch);

// Throws slimrt::Error (kUnsupported) naming the sizes when this device's kernels cannot attend
// over compressed pages of kv's shape with `heads` query heads (the CPU takes any; CUDA head_dim
// 64 or 128 and a power-of-two page size).
void check_sparse_attention_supported(Device& device, int64_t heads, const PagedKv& kv);

// What the device's fastest kernels need for batches of at most max_seqs sequences of at most
// max_context tokens (plan.bytes 0 when they need nothing). Host arithmetic only: plan once.
AttentionScratchPlan plan_attention_scratch(Device& device, int64_t max_seqs, int64_t heads,
                                            const PagedKv& kv, int64_t max_context);

}  // namespace slimrt::ops
