// The compressed KV record of one token and KV head (docs/FORMAT.md, "Sparse KV pages"): the
// pruning rule's kept count and the record's size. Every record of a K (or V) cache has the
// same size, because the kept count depends on head_dim and the sparsity only: records need no
// offsets.
//
//   const int64_t kept = kv_kept_count(128, 0.7);        // 38
//   const int64_t bytes = kv_record_bytes(128, kept);    // 16 + 2 * 38 = 92
#pragma once

#include <cmath>
#include <cstdint>

namespace slimrt {

// Bytes of a record's bitmap: head_dim bits, rounded up to whole 16-bit words so that the BF16
// values after it are 2-byte aligned.
inline int64_t kv_bitmap_bytes(int64_t head_dim) { return (head_dim + 15) / 16 * 2; }

// k = head_dim - round(sparsity * head_dim) (round half away from zero, in double), for
// sparsity in [0, 1).
inline int64_t kv_kept_count(int64_t head_dim, double sparsity) {
  return head_dim - static_cast<int64_t>(std::llround(sparsity * static_cast<double>(head_dim)));
}

inline int64_t kv_record_bytes(int64_t head_dim, int64_t kept) {
  return kv_bitmap_bytes(head_dim) + 2 * kept;
}

// Bytes after each layer's K (and V) record region that hold no record: a reader may load up to
// 16 bytes past a record's last value, so that its loop needs no bound checks.
constexpr int64_t kKvRecordTailPad = 64;

}  // namespace slimrt
