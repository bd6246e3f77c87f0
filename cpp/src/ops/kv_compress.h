// Packs full dense KV pages into compressed pages of the same layer (cpu/kv_compress.cpp; the
// CUDA kernel is issue 14's, and the CUDA backend refuses until then).
//
//   ops::kv_compress(device, kv, dense_ids, compressed_ids, count);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// cpu::kv_compress after checking the arguments: kv holds compressed pages (k_records set) and
// BF16 dense pages, k_kept and v_kept lie in [0, head_dim], every src page is dense and every
// dst page compressed (ids below num_pages).
void kv_compress(Device& device, const PagedKv& kv, const int32_t* src_pages,
                 const int32_t* dst_pages, int64_t count, int64_t num_pages);

// The CUDA backend's refusal of compressed KV pages, until issue 14 builds its kernels.
void check_sparse_kv_supported(Device& device);

}  // namespace slimrt::ops
