// How decode attention cuts each sequence's context into splits (FlashDecoding), shared by the
// dense and the compressed-page decode kernels: the split count, and the workspace of partial
// results the merge kernel (split_merge.cuh) combines.
//
//   const int64_t n = best_split_count(units, max_context, sms * blocks_per_sm, 256, 32, 1024);
//   const int64_t bytes = split_workspace_bytes(num_seqs * heads, head_dim, n);
#pragma once

#include <algorithm>
#include <cstdint>

namespace slimrt {

// Blocks share the memory bandwidth evenly, so a block takes about (chunk + fixed) time, where
// `fixed` (start-up, pipeline fill, the final merge) is worth that many positions, and the kernel
// takes waves(units * n) of them: the n in [1, ceil(ctx / min_chunk)] (at most max_splits) that
// minimises that, the smallest on ties.
inline int64_t best_split_count(int64_t units, int64_t ctx, int64_t slots, int64_t min_chunk,
                                int64_t fixed, int64_t max_splits) {
  ctx = std::max<int64_t>(ctx, 1);
  slots = std::max<int64_t>(slots, 1);
  const int64_t most = std::min<int64_t>(max_splits, (ctx + min_chunk - 1) / min_chunk);
  int64_t best = INT64_MAX, splits = 1;
  for (int64_t n = 1; n <= most; ++n) {
    const int64_t waves = (units * n + slots - 1) / slots;
    const int64_t cost = waves * ((ctx + n - 1) / n + fixed);
    if (cost < best) {
      best = cost;
      splits = n;
    }
  }
  return splits;
}

// FP32 partial outputs [rows][splits][head_dim], then FP32 log-sum-exps [rows][splits], each
// 16-byte aligned; no workspace without splits.
inline int64_t split_workspace_bytes(int64_t rows, int64_t head_dim, int64_t splits) {
  if (splits <= 1) return 0;
  const auto align16 = [](int64_t bytes) { return (bytes + 15) / 16 * 16; };
  return align16(rows * splits * head_dim * 4) + align16(rows * splits * 4);
}

}  // namespace slimrt
