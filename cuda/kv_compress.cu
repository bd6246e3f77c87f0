// The CUDA kernel of ops::kv_compress: the records of cpu::kv_compress, byte for byte. One warp
// per (token, KV head) row of K or V; lane l holds elements l, l + 32, ... (head_dim <= 256: at
// most 8 each), so that each 32-element chunk's keep flags are one ballot, which is the
// bitmap's 32-bit word for that chunk.
//
// Selection without sorting: the kept-th largest magnitude m is found one bit at a time from the
// top (15 ballot rounds), which also tells how many values equal to m are kept; those go to the
// lowest indices, ranked by prefix popcounts in index order, as the kept values' output slots
// are. Allocates nothing and synchronises nothing, so it can be captured in a CUDA graph.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"
#include "kv_record.h"

namespace slimrt::cuda {
namespace {

constexpr int kWarpsPerBlock = kThreads / 32;
constexpr int kChunks = static_cast<int>(kMaxAttentionHeadDim / 32);
constexpr unsigned kFullMask = 0xFFFFFFFFu;

// The record of one row (pruning rule of docs/FORMAT.md, "Sparse KV pages"). Every lane of the
// warp calls it with the same arguments.
__device__ void compress_row(const uint16_t* x, int head_dim, int kept, int bitmap_bytes,
                             uint8_t* record) {
  const int lane = threadIdx.x % 32;
  const unsigned below = (1u << lane) - 1u;  // lanes of lower index in a chunk
  uint16_t bits[kChunks];
  int magnitude[kChunks];  // -1: past head_dim, never kept
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const int i = j * 32 + lane;
    bits[j] = i < head_dim ? x[i] : 0;
    magnitude[j] = i < head_dim ? bits[j] & 0x7FFF : -1;
  }

  // The kept-th largest magnitude, with multiplicity: `prefix` gains each bit from the top for
  // which at least `needed` values share its bits so far and have that bit set; otherwise those
  // values are all kept and come off `needed`. What is left of `needed` is how many values
  // equal to the threshold are kept (0 when kept is 0: the threshold ends at 0x7FFF).
  int prefix = 0;
  int needed = kept;
  for (int bit = 14; bit >= 0; --bit) {
    const int candidate = prefix | 1 << bit;
    int count = 0;
#pragma unroll
    for (int j = 0; j < kChunks; ++j) {
      count += __popc(
          __ballot_sync(kFullMask, magnitude[j] >= 0 && magnitude[j] >> bit == candidate >> bit));
    }
    if (count >= needed) {
      prefix = candidate;
    } else {
      needed -= count;
    }
  }

  // Keep flags in index order: ties at the threshold go to the lowest indices.
  uint16_t* values = reinterpret_cast<uint16_t*>(record + bitmap_bytes);
  int ties_before = 0;
  int slots_before = 0;
  unsigned words[kChunks];
#pragma unroll
  for (int j = 0; j < kChunks; ++j) {
    const bool tie = magnitude[j] == prefix;
    const unsigned ties = __ballot_sync(kFullMask, tie);
    const bool keep = magnitude[j] > prefix || (tie && ties_before + __popc(ties & below) < needed);
    words[j] = __ballot_sync(kFullMask, keep);
    if (keep) values[slots_before + __popc(words[j] & below)] = bits[j];
    ties_before += __popc(ties);
    slots_before += __popc(words[j]);
  }

  // The bitmap in 16-bit words: records are 2-byte aligned only. Bits past head_dim are 0, as
  // nothing past it is kept.
  const int half = lane / 2;
  unsigned word = 0;
#pragma unroll
  for (int j = 0; j < kChunks; ++j) word = j == half ? words[j] : word;
  if (lane < bitmap_bytes / 2) {
    reinterpret_cast<uint16_t*>(record)[lane] = static_cast<uint16_t>(word >> (lane % 2 * 16));
  }
}

// blockIdx.y: 0 packs K, 1 packs V. Row r of `count` pages' rows is (page r / rows_per_page,
// token, head), read from its dense page row (token, head) and written head-major. The record
// sizes come from the host (kv_record.h is host code).
__global__ void kv_compress_kernel(PagedKv kv, const int32_t* src_pages, const int32_t* dst_pages,
                                   int64_t count, int bitmap_bytes, int64_t k_record_bytes,
                                   int64_t v_record_bytes) {
  const bool is_v = blockIdx.y == 1;
  const uint16_t* pages = static_cast<const uint16_t*>(is_v ? kv.v_pages : kv.k_pages);
  uint8_t* records = static_cast<uint8_t*>(is_v ? kv.v_records : kv.k_records);
  const int kept = static_cast<int>(is_v ? kv.v_kept : kv.k_kept);
  const int64_t record_bytes = is_v ? v_record_bytes : k_record_bytes;
  const int64_t rows_per_page = kv.page_size * kv.kv_heads;
  const int64_t rows = count * rows_per_page;
  for (int64_t r = blockIdx.x * int64_t{kWarpsPerBlock} + threadIdx.x / 32; r < rows;
       r += int64_t{gridDim.x} * kWarpsPerBlock) {
    const int64_t i = r / rows_per_page;
    const int64_t in_page = r - i * rows_per_page;  // token * kv_heads + head
    const int64_t token = in_page / kv.kv_heads, head = in_page % kv.kv_heads;
    const int64_t src = (int64_t{src_pages[i]} * rows_per_page + in_page) * kv.head_dim;
    const int64_t dst =
        ((dst_pages[i] - kv.dense_pages) * kv.kv_heads + head) * kv.page_size + token;
    compress_row(pages + src, static_cast<int>(kv.head_dim), kept, bitmap_bytes,
                 records + dst * record_bytes);
  }
}

}  // namespace

void kv_compress(CudaDevice& device, const PagedKv& kv, const int32_t* src_pages,
                 const int32_t* dst_pages, int64_t count) {
  const int64_t rows = count * kv.page_size * kv.kv_heads;
  if (rows <= 0) return;
  const int64_t blocks =
      std::min<int64_t>(kMaxBlocks, (rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
  kv_compress_kernel<<<dim3(static_cast<unsigned>(blocks), 2), kThreads, 0, device.stream()>>>(
      kv, src_pages, dst_pages, count, static_cast<int>(kv_bitmap_bytes(kv.head_dim)),
      kv_record_bytes(kv.head_dim, kv.k_kept), kv_record_bytes(kv.head_dim, kv.v_kept));
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace slimrt::cuda
