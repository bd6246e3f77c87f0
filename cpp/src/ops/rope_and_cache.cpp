#include "ops/rope_and_cache.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

void rope_and_cache(Device& device, const QkvRows& in, const int32_t* positions, int64_t tokens,
                    int64_t heads, const float* inv_freq, const PagedKv& kv, const int32_t* slots,
                    float* q_out, const int32_t* freq_sets) {
  SLIMRT_CHECK(kv.head_dim % 2 == 0, "rope: head_dim must be even, got " << kv.head_dim);
  const int64_t width = heads * kv.head_dim;
  SLIMRT_CHECK(tokens >= 0 && heads > 0 && kv.kv_heads > 0 && kv.head_dim > 0 &&
                   in.q_stride >= width && in.kv_stride >= kv.kv_heads * kv.head_dim,
               "rope_and_cache: " << tokens << " tokens of " << heads << " query heads and "
                                  << kv.kv_heads << " KV heads of " << kv.head_dim << " in rows "
                                  << in.q_stride << " and " << in.kv_stride << " apart");
  SLIMRT_CHECK(
      tokens == 0 || (in.q != nullptr && in.k != nullptr && in.v != nullptr &&
                      positions != nullptr && inv_freq != nullptr && kv.k_pages != nullptr &&
                      kv.v_pages != nullptr && slots != nullptr && q_out != nullptr),
      "rope_and_cache: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu: {
      ThreadPool& pool = cpu_device(device).pool();
      if (q_out != in.q) cpu::copy_block(in.q, in.q_stride, q_out, width, tokens, width);
      cpu::rope(q_out, width, positions, tokens, heads, kv.head_dim, inv_freq, pool, freq_sets);
      cpu::rope(in.k, in.kv_stride, positions, tokens, kv.kv_heads, kv.head_dim, inv_freq, pool,
                freq_sets);
      return cpu::kv_write(kv, in.k, in.v, in.kv_stride, slots, tokens, pool);
    }
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::rope_and_cache(cuda_device(device), in, positions, tokens, heads,
                                              inv_freq, kv, slots, q_out, freq_sets));
  }
}

}  // namespace slimrt::ops
