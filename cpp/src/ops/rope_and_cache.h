// RoPE on a step's q and k rows, with the rotated k and the v rows stored in the paged KV cache
// (cpu/rope.cpp + cpu/kv_write.cpp, cuda/rope_and_cache.cu).
//
//   ops::rope_and_cache(device, qkv_rows, positions, tokens, heads, inv_freq, kv, slots, q);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// RoPE (cpu::rope) on q ([heads][head_dim] per token) into q_out [tokens][heads][head_dim], and
// on k ([kv.kv_heads][head_dim] per token), whose rotated rows go to the cache at `slots` with
// v's (cpu::kv_write: a negative slot is skipped). head_dim must be even. The rows of `in` may be
// rotated in place or left as they are. freq_sets (LongRoPE's short and long frequencies), when
// not null, picks per token which head_dim / 2 frequencies of inv_freq it uses: set s starts at
// inv_freq + s * head_dim / 2.
void rope_and_cache(Device& device, const QkvRows& in, const int32_t* positions, int64_t tokens,
                    int64_t heads, const float* inv_freq, const PagedKv& kv, const int32_t* slots,
                    float* q_out, const int32_t* freq_sets = nullptr);

}  // namespace slimrt::ops
