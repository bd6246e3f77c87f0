#include <algorithm>
#include <cstring>
#include <functional>

#include "../kv_record.h"
#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {
namespace {

// One record of the `kept` largest-magnitude values of x[0, head_dim), ties to the lower index.
// The sort key orders by |x| as the BF16 bits' magnitude field (so ±0 tie, and NaN counts as
// the largest), then by lower index first; keys are unique, so exactly `kept` are chosen.
void compress_row(const uint16_t* x, int64_t head_dim, int64_t kept, uint8_t* record) {
  const int64_t bitmap_bytes = kv_bitmap_bytes(head_dim);
  std::memset(record, 0, bitmap_bytes);
  if (kept > 0) {
    uint32_t keys[kMaxAttentionHeadDim];
    for (int64_t i = 0; i < head_dim; ++i) {
      keys[i] = static_cast<uint32_t>(x[i] & 0x7FFFu) << 16 | static_cast<uint32_t>(0xFFFF - i);
    }
    uint32_t threshold = 0;
    if (kept < head_dim) {
      uint32_t order[kMaxAttentionHeadDim];
      std::copy(keys, keys + head_dim, order);
      std::nth_element(order, order + kept - 1, order + head_dim, std::greater<uint32_t>());
      threshold = order[kept - 1];
    }
    for (int64_t i = 0; i < head_dim; ++i) {
      if (keys[i] >= threshold) record[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
    }
  }
  uint8_t* values = record + bitmap_bytes;
  for (int64_t i = 0; i < head_dim; ++i) {
    if (record[i / 8] >> (i % 8) & 1u) {
      std::memcpy(values, x + i, 2);
      values += 2;
    }
  }
}

}  // namespace

void kv_compress(const PagedKv& kv, const int32_t* src_pages, const int32_t* dst_pages,
                 int64_t count, ThreadPool& pool) {
  const int64_t hd = kv.head_dim;
  const int64_t rows_per_page = kv.page_size * kv.kv_heads;
  const int64_t k_bytes = kv_record_bytes(hd, kv.k_kept);
  const int64_t v_bytes = kv_record_bytes(hd, kv.v_kept);
  // nth_element over head_dim keys, twice (K and V): some 30 operations per element.
  parallel_over(pool, count * rows_per_page, 60 * hd, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const int64_t i = r / rows_per_page;
      const int64_t in_page = r - i * rows_per_page;  // token * kv_heads + head
      const int64_t token = in_page / kv.kv_heads, head = in_page % kv.kv_heads;
      const int64_t src = (static_cast<int64_t>(src_pages[i]) * rows_per_page + in_page) * hd;
      // Records head-major, so that attention (a unit per KV head) reads a page's in one run.
      const int64_t dst =
          ((dst_pages[i] - kv.dense_pages) * kv.kv_heads + head) * kv.page_size + token;
      compress_row(static_cast<const uint16_t*>(kv.k_pages) + src, hd, kv.k_kept,
                   static_cast<uint8_t*>(kv.k_records) + dst * k_bytes);
      compress_row(static_cast<const uint16_t*>(kv.v_pages) + src, hd, kv.v_kept,
                   static_cast<uint8_t*>(kv.v_records) + dst * v_bytes);
    }
  });
}

}  // namespace slimrt::cpu
