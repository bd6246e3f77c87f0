#include "ops/kv_compress.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

void kv_compress(Device& device, const PagedKv& kv, const KvCompressIds& ids, int64_t num_pages) {
  SLIMRT_CHECK(kv.k_records != nullptr && kv.v_records != nullptr,
               "kv_compress: the cache has no compressed pages");
  SLIMRT_CHECK(kv.dtype == KvDtype::kBf16, "kv_compress: compressed pages need a bf16 KV cache");
  SLIMRT_CHECK(
      kv.head_dim > 0 && kv.head_dim <= kMaxAttentionHeadDim && kv.kv_heads > 0 && kv.page_size > 0,
      "kv_compress: " << kv.kv_heads << " KV heads of " << kv.head_dim << " in pages of "
                      << kv.page_size);
  SLIMRT_CHECK(
      kv.k_kept >= 0 && kv.k_kept <= kv.head_dim && kv.v_kept >= 0 && kv.v_kept <= kv.head_dim,
      "kv_compress: " << kv.k_kept << " K and " << kv.v_kept << " V values kept of head_dim "
                      << kv.head_dim);
  SLIMRT_CHECK(ids.count >= 0, "kv_compress: " << ids.count << " pages");
  if (ids.count == 0) return;
  SLIMRT_CHECK(ids.src != nullptr && ids.dst != nullptr && ids.device_src != nullptr &&
                   ids.device_dst != nullptr,
               "kv_compress: a null page id array");
  for (int64_t i = 0; i < ids.count; ++i) {
    SLIMRT_CHECK(ids.src[i] >= 0 && ids.src[i] < kv.dense_pages,
                 "kv_compress: source page " << ids.src[i] << " is not a dense page");
    SLIMRT_CHECK(ids.dst[i] >= kv.dense_pages && ids.dst[i] < num_pages,
                 "kv_compress: destination page " << ids.dst[i] << " is not a compressed page");
  }
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::kv_compress(kv, ids.device_src, ids.device_dst, ids.count,
                              cpu_device(device).pool());
    case Backend::kCuda:
      return SLIMRT_CUDA(
          cuda::kv_compress(cuda_device(device), kv, ids.device_src, ids.device_dst, ids.count));
  }
}

}  // namespace slimrt::ops
