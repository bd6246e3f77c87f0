// Host arithmetic on the sizes the attention kernels take (paged_decode_attention.cu,
// paged_prefill_attention.cu, sparse_paged_attention.cu).
#pragma once

#include <cstdint>

namespace slimrt::attention_shapes {

inline bool is_power_of_two(int64_t x) { return x > 0 && (x & (x - 1)) == 0; }

// n with 2^n >= x, the smallest (the exponent of a power of two).
inline int log2_exact(int64_t x) {
  int n = 0;
  while ((int64_t{1} << n) < x) ++n;
  return n;
}

// GQA groups (query heads per KV head) the split-K decode kernel is instantiated for: every
// group of 1 to 8 that models ship (SmolLM2's 3, Qwen2.5's 6 and 7, Qwen2.5-14B's 5). A larger
// group's queries and accumulators would not fit in registers.
inline bool decode_group_supported(int64_t group) { return group >= 1 && group <= 8; }

// Query heads per block of the tensor-core kernels: the largest power of two <= most that
// divides the GQA group, so that a block's heads share one KV head.
inline int heads_per_block(int64_t group, int most) {
  int pack = 1;
  while (pack < most && group % (2 * pack) == 0) pack *= 2;
  return pack;
}

}  // namespace slimrt::attention_shapes
