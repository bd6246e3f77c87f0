#include "ops/kv_compress.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

void check_sparse_kv_supported(Device& device) {
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, device.backend() == Backend::kCpu,
                  "kv_sparsity > 0 runs on the CPU only: the CUDA sparse attention kernels are "
                  "not built yet (issue 14)");
}

void kv_compress(Device& device, const PagedKv& kv, const int32_t* src_pages,
                 const int32_t* dst_pages, int64_t count, int64_t num_pages) {
  check_sparse_kv_supported(device);
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
  SLIMRT_CHECK(count >= 0, "kv_compress: " << count << " pages");
  for (int64_t i = 0; i < count; ++i) {
    SLIMRT_CHECK(src_pages[i] >= 0 && src_pages[i] < kv.dense_pages,
                 "kv_compress: source page " << src_pages[i] << " is not a dense page");
    SLIMRT_CHECK(dst_pages[i] >= kv.dense_pages && dst_pages[i] < num_pages,
                 "kv_compress: destination page " << dst_pages[i] << " is not a compressed page");
  }
  cpu::kv_compress(kv, src_pages, dst_pages, count, cpu_device(device).pool());
}

}  // namespace slimrt::ops
