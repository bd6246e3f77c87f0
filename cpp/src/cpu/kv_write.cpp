#include <cstring>

#include "bf16.h"
#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void kv_write(const PagedKv& kv, const float* k, const float* v, int64_t row_stride,
              const int32_t* slots, int64_t tokens, ThreadPool& pool) {
  const int64_t row = kv.kv_heads * kv.head_dim;  // one token of one layer, K or V
  parallel_over(pool, tokens, 2 * row, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const int64_t slot = slots[t];
      if (slot < 0) continue;
      const float* ks = k + t * row_stride;
      const float* vs = v + t * row_stride;
      if (kv.dtype == KvDtype::kF32) {
        std::memcpy(static_cast<float*>(kv.k_pages) + slot * row, ks, row * sizeof(float));
        std::memcpy(static_cast<float*>(kv.v_pages) + slot * row, vs, row * sizeof(float));
      } else {
        uint16_t* kd = static_cast<uint16_t*>(kv.k_pages) + slot * row;
        uint16_t* vd = static_cast<uint16_t*>(kv.v_pages) + slot * row;
        for (int64_t i = 0; i < row; ++i) kd[i] = f32_to_bf16(ks[i]);
        for (int64_t i = 0; i < row; ++i) vd[i] = f32_to_bf16(vs[i]);
      }
    }
  });
}

}  // namespace slimrt::cpu
