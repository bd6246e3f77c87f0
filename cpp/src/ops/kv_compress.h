// Packs full dense KV pages into compressed pages of the same layer (cpu/kv_compress.cpp,
// cuda/kv_compress.cu). The page ids come twice: in host memory, where the op checks them, and
// in device memory, where the kernels read them; a caller uploads them once for all layers, so
// that no layer waits for a copy (on the CPU both may be the same arrays).
//
//   const KvCompressIds ids{src, dst, device_src, device_dst, count};
//   for (int64_t l = 0; l < layers; ++l) ops::kv_compress(device, pool.layer(l), ids, num_pages);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// Dense page src[i] goes to compressed page dst[i], for i < count.
struct KvCompressIds {
  const int32_t* src = nullptr;         // host
  const int32_t* dst = nullptr;         // host
  const int32_t* device_src = nullptr;  // the same ids, in the device's memory
  const int32_t* device_dst = nullptr;
  int64_t count = 0;
};

// The backend's kv_compress after checking the arguments: kv holds compressed pages (k_records
// set) and BF16 dense pages, k_kept and v_kept lie in [0, head_dim], every src page is dense and
// every dst page compressed (ids below num_pages). The device ids must equal the host ones.
void kv_compress(Device& device, const PagedKv& kv, const KvCompressIds& ids, int64_t num_pages);

}  // namespace slimrt::ops
