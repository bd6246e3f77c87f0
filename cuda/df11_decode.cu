// DF11 decoding on the GPU (docs/FORMAT.md, version 1): one warp per 4096-element group, one lane
// per 128-element lane chunk, each lane starting at its own stored bit offset. At the end, the
// CUDA kernel of ops::decode_df11 (on a CudaDevice, with the table it keeps).
//
// Why the kernel looks the way it does:
// - It is meant to be memory-bound (about 1.35 bytes read and 2 bytes written per element), so
//   every warp-wide store is one 512-byte contiguous run of 16-byte vectors and every
//   sign/mantissa load one 256-byte run of 8-byte vectors, issued one step ahead of its use.
// - A lane's codes form one serial chain: shared-memory lookup, funnel shift, shift, address,
//   about 40 cycles a code. Nothing inside a lane can overlap it, so latency is hidden by warps:
//   the launch bounds ask for 8 blocks of 8 warps per SM (64 warps, the maximum), which caps
//   registers at 32 (ptxas fits the kernel in 32 without spilling). The fast path then issues
//   about 13 instructions per element, well under what the memory time leaves.
// - The grid is persistent: as many blocks as fit at once, each warp striding over groups, so the
//   table is copied into shared memory once per resident block, not once per group. Blocks stay
//   small (8 warps) so that the blocks of a tensor that fills less than one wave still spread
//   evenly over the SMs.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "df11_bits.cuh"
#include "df11_cuda.h"
#include "slimrt/df11.h"

// Tuning knobs, meant to be overridden with -D while measuring.
#ifndef SLIMRT_DF11_WARPS_PER_BLOCK
#define SLIMRT_DF11_WARPS_PER_BLOCK 8
#endif
#ifndef SLIMRT_DF11_MIN_BLOCKS_PER_SM
#define SLIMRT_DF11_MIN_BLOCKS_PER_SM 8
#endif
// How many steps (256 elements each) ahead of use a warp asks L2 for sign/mantissa bytes; 0 or 1
// = off (the next step is always loaded one step ahead).
#ifndef SLIMRT_DF11_PREFETCH_STEPS
#define SLIMRT_DF11_PREFETCH_STEPS 2
#endif

namespace slimrt {
namespace {

constexpr int kWarpsPerBlock = SLIMRT_DF11_WARPS_PER_BLOCK;
constexpr int kThreads = kWarpsPerBlock * df11::kLanes;
constexpr int kMinBlocksPerSm = SLIMRT_DF11_MIN_BLOCKS_PER_SM;
constexpr int kPrefetchSteps = SLIMRT_DF11_PREFETCH_STEPS;
constexpr int kMaxTableEntries = 1 << df11::kMaxCodeLength;

static_assert(df11::kLanes == 32 && df11::kVector == 8 && df11::kSteps == 16,
              "the kernel is written for FORMAT.md version 1");
static_assert(kPrefetchSteps >= 0 && kPrefetchSteps < df11::kSteps, "prefetch distance");

struct DecodeParams {
  const uint32_t* bitstream;
  const uint32_t* index;
  const uint8_t* signmant;
  const uint16_t* table;
  uint16_t* out;
  int64_t numel;
  int64_t groups;
  int table_bits;
};

// ---- decoding table ---------------------------------------------------------------------------

// The shared-memory copy of a table entry (length << 8 | symbol) is (symbol << 7) | length: the
// exponent already sits where BF16 wants it, so one LOP3 merges two exponents with two
// sign/mantissa bytes.
__device__ __forceinline__ uint32_t shared_entry(uint32_t entry) {
  return ((entry & 0xFFu) << 7) | df11_code_length(entry);
}

__device__ __forceinline__ uint32_t shared_entry_pair(uint32_t pair) {
  return shared_entry(pair & 0xFFFFu) | (shared_entry(pair >> 16) << 16);
}

// Block-cooperative copy, split in two so that the loads can be in flight while the warp starts
// loading its first group.
struct TableCopy {
  static constexpr int kPerThread = (kMaxTableEntries / 8 + kThreads - 1) / kThreads;
  uint4 chunk[kPerThread];
  bool vector = false;

  __device__ __forceinline__ void load(const uint16_t* table, int entries) {
    vector = entries >= 8 && (reinterpret_cast<uintptr_t>(table) & 15) == 0;
    if (!vector) return;
#pragma unroll
    for (int k = 0; k < kPerThread; ++k) {
      const int i = threadIdx.x + k * kThreads;
      if (i < entries / 8) chunk[k] = __ldg(reinterpret_cast<const uint4*>(table) + i);
    }
  }

  __device__ __forceinline__ void store(const uint16_t* table, int entries, uint16_t* table_s) {
    if (vector) {
#pragma unroll
      for (int k = 0; k < kPerThread; ++k) {
        const int i = threadIdx.x + k * kThreads;
        if (i < entries / 8) {
          const uint4 c = chunk[k];
          reinterpret_cast<uint4*>(table_s)[i] =
              make_uint4(shared_entry_pair(c.x), shared_entry_pair(c.y), shared_entry_pair(c.z),
                         shared_entry_pair(c.w));
        }
      }
    } else {
      for (int i = threadIdx.x; i < entries; i += kThreads) {
        table_s[i] = static_cast<uint16_t>(shared_entry(__ldg(table + i)));
      }
    }
  }
};

__device__ __forceinline__ uint32_t decode_pair(LaneBits& s, const uint16_t* table_s,
                                                uint32_t shift) {
  uint32_t first, second;
  decode_two(s, table_s, shift, first, second);
  return __byte_perm(first, second, 0x5410);
}

// (a & mask) | (b & ~mask) in one LOP3; the compiler does not find it for two constant masks.
template <uint32_t kMask>
__device__ __forceinline__ uint32_t select_bits(uint32_t a, uint32_t b) {
  uint32_t d;
  asm("lop3.b32 %0, %1, %2, %3, 0xE4;" : "=r"(d) : "r"(a), "r"(b), "n"(kMask));
  return d;
}

// Two BF16 values from two sign/mantissa bytes and their exponents (as decode_pair returns them):
// PRMT spreads bytes b0, b1 to b0 b0 b1 b1, where bit 7 of the odd bytes is the sign and bits 0-6
// of the even bytes the mantissa; the exponents fill the bits in between.
template <uint32_t kSelector>
__device__ __forceinline__ uint32_t merge_pair(uint32_t signmant_word, uint32_t exponents) {
  return select_bits<0x807F807Fu>(__byte_perm(signmant_word, 0, kSelector), exponents);
}

__device__ __forceinline__ float bf16_as_float(uint16_t v) {
  return __uint_as_float(static_cast<uint32_t>(v) << 16);
}

__device__ __forceinline__ uint16_t merge_one(uint32_t signmant, uint32_t entry) {
  return static_cast<uint16_t>(((signmant & 0x80u) << 8) | (entry & 0x7F80u) | (signmant & 0x7Fu));
}

// ---- groups -----------------------------------------------------------------------------------

// The fast path: all 4096 elements exist, `out` is 16-byte and `signmant` 8-byte aligned. Each
// step loads the next step's sign/mantissa bytes (and asks L2 for those kPrefetchSteps ahead), so
// a warp waiting on memory always has reads in flight.
__device__ __forceinline__ void decode_full_group(LaneBits& bits, const uint16_t* table_s,
                                                  uint32_t shift, const uint8_t* signmant,
                                                  uint16_t* out, uint32_t lane) {
  const uint2* sm = reinterpret_cast<const uint2*>(signmant) + lane;
  uint4* dst = reinterpret_cast<uint4*>(out) + lane;
  uint2 sm_next = load_once(sm);
#pragma unroll 2
  for (int j = 0; j < df11::kSteps; ++j) {
    const uint2 sm_now = sm_next;
    sm += df11::kLanes;  // step j + 1
    if (j + 1 < df11::kSteps) sm_next = load_once(sm);
    if (kPrefetchSteps > 1 && j + kPrefetchSteps < df11::kSteps) {
      prefetch_l2(sm + (kPrefetchSteps - 1) * df11::kLanes);
    }
    uint4 v;
    v.x = merge_pair<0x1100>(sm_now.x, decode_pair(bits, table_s, shift));
    v.y = merge_pair<0x3322>(sm_now.x, decode_pair(bits, table_s, shift));
    v.z = merge_pair<0x1100>(sm_now.y, decode_pair(bits, table_s, shift));
    v.w = merge_pair<0x3322>(sm_now.y, decode_pair(bits, table_s, shift));
    *dst = v;
    dst += df11::kLanes;
  }
}

// Elements [lo, hi) of one group (hi <= the elements the group holds), one at a time: store(e,
// bits) for each. Lanes decode whole vectors from the group's start (codes past the end are
// garbage but stay inside the over-read margin), up to their last vector below hi.
template <class Store>
__device__ __forceinline__ void decode_group_elements(LaneBits& bits, const uint16_t* table_s,
                                                      uint32_t shift, const uint8_t* signmant,
                                                      int lo, int hi, uint32_t lane, Store store) {
#pragma unroll 1
  for (int j = 0; j < df11::kSteps; ++j) {
    const int first = (j * df11::kLanes + static_cast<int>(lane)) * df11::kVector;
    if (first >= hi) break;  // the lane's later elements are past the range too
    uint32_t entries[df11::kVector];
#pragma unroll
    for (int k = 0; k < df11::kVector; k += 2) {
      decode_two(bits, table_s, shift, entries[k], entries[k + 1]);
    }
#pragma unroll
    for (int k = 0; k < df11::kVector; ++k) {
      const int e = first + k;
      if (e >= lo && e < hi) store(e, merge_one(signmant[e], entries[k]));
    }
  }
}

// The careful path: the partial last group, or any group when `out` or `signmant` is misaligned.
__device__ __forceinline__ void decode_group_elementwise(LaneBits& bits, const uint16_t* table_s,
                                                         uint32_t shift, const uint8_t* signmant,
                                                         uint16_t* out, int valid, uint32_t lane) {
  decode_group_elements(bits, table_s, shift, signmant, 0, valid, lane,
                        [out](int e, uint16_t v) { out[e] = v; });
}

__device__ __forceinline__ LaneBits start_group(const DecodeParams& p, int64_t g, uint32_t lane) {
  const uint32_t* index = p.index + g * df11::kIndexWords;
  const uint32_t first_word = __ldg(index);
  const uint32_t offset = lane_offset(__ldg(index + 1 + lane / 2), lane);
  return start_lane(p.bitstream, first_word, offset);
}

template <bool kVectorIo>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    df11_decode_kernel(const DecodeParams p) {
  __shared__ alignas(16) uint16_t table_s[kMaxTableEntries];

  const uint32_t lane = threadIdx.x % df11::kLanes;
  const int64_t stride = int64_t{gridDim.x} * kWarpsPerBlock;
  int64_t g = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / df11::kLanes;

  // The first group's index and bitstream loads go out while the table is in flight.
  const int entries = 1 << p.table_bits;
  TableCopy copy;
  copy.load(p.table, entries);
  LaneBits bits{};
  if (g < p.groups) bits = start_group(p, g, lane);
  copy.store(p.table, entries, table_s);
  __syncthreads();

  const uint32_t shift = 32 - p.table_bits;
  while (g < p.groups) {
    const int64_t base = g * df11::kGroupElements;
    if (kVectorIo && base + df11::kGroupElements <= p.numel) {
      decode_full_group(bits, table_s, shift, p.signmant + base, p.out + base, lane);
    } else {
      const int valid = static_cast<int>(min(p.numel - base, df11::kGroupElements));
      decode_group_elementwise(bits, table_s, shift, p.signmant + base, p.out + base, valid, lane);
    }
    g += stride;
    if (g < p.groups) bits = start_group(p, g, lane);
  }
}

// Rows ids[t] of a [rows][width] matrix, widened to FP32 into out[t] (an embedding lookup): one
// warp per (token, group its row touches); `spans` groups at most per row.
__global__ void __launch_bounds__(kThreads)
    df11_gather_rows_kernel(const DecodeParams p, const int32_t* ids, int64_t tokens, int64_t width,
                            int64_t spans, float* out) {
  __shared__ alignas(16) uint16_t table_s[kMaxTableEntries];
  const int entries = 1 << p.table_bits;
  TableCopy copy;
  copy.load(p.table, entries);
  copy.store(p.table, entries, table_s);
  __syncthreads();

  const uint32_t lane = threadIdx.x % df11::kLanes;
  const uint32_t shift = 32 - p.table_bits;
  const int64_t stride = int64_t{gridDim.x} * kWarpsPerBlock;
  for (int64_t v = int64_t{blockIdx.x} * kWarpsPerBlock + threadIdx.x / df11::kLanes;
       v < tokens * spans; v += stride) {
    const int64_t t = v / spans;
    const int64_t first = int64_t{ids[t]} * width;  // the row's first element
    const int64_t g = first / df11::kGroupElements + v % spans;
    const int64_t base = g * df11::kGroupElements;
    if (base >= first + width) continue;  // the row ends in an earlier group
    const int64_t valid = min(p.numel - base, int64_t{df11::kGroupElements});
    LaneBits bits = start_group(p, g, lane);
    // Group element e is row element base - first + e: the window is the row's part.
    float* row = out + t * width + (base - first);
    decode_group_elements(bits, table_s, shift, p.signmant + base,
                          static_cast<int>(max(first - base, int64_t{0})),
                          static_cast<int>(min(first + width - base, valid)), lane,
                          [row](int e, uint16_t v) { row[e] = bf16_as_float(v); });
  }
}

// Blocks that fit on the current device at once (all SMs), per kernel variant; cached because the
// query costs more than the launch.
template <bool kVectorIo>
int resident_blocks() {
  constexpr int kMaxDevices = 64;
  static std::atomic<int> cache[kMaxDevices] = {};
  int device = 0;
  SLIMRT_CUDA_CHECK(cudaGetDevice(&device));
  if (device < kMaxDevices) {
    const int cached = cache[device].load(std::memory_order_relaxed);
    if (cached > 0) return cached;
  }
  int sms = 0;
  int per_sm = 0;
  SLIMRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  SLIMRT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, df11_decode_kernel<kVectorIo>, kThreads, 0));
  const int blocks = std::max(1, sms * per_sm);
  if (device < kMaxDevices) cache[device].store(blocks, std::memory_order_relaxed);
  return blocks;
}

template <bool kVectorIo>
void launch(const DecodeParams& p, cudaStream_t stream) {
  const int64_t wanted = (p.groups + kWarpsPerBlock - 1) / kWarpsPerBlock;
  const int blocks = static_cast<int>(std::min<int64_t>(wanted, resident_blocks<kVectorIo>()));
  df11_decode_kernel<kVectorIo><<<blocks, kThreads, 0, stream>>>(p);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

// The kernels' parameters for `view`, after checking what they rely on; `what` names the caller
// in the messages.
DecodeParams checked_params(const Df11DeviceView& view, uint16_t* out, const char* what) {
  SLIMRT_CHECK(view.bitstream != nullptr && view.index != nullptr && view.signmant != nullptr &&
                   view.table != nullptr,
               what << ": the device view has a null array");
  SLIMRT_CHECK(
      view.table_bits >= 1 && view.table_bits <= df11::kMaxCodeLength,
      what << ": table_bits " << view.table_bits << " is outside 1.." << df11::kMaxCodeLength);
  SLIMRT_CHECK(reinterpret_cast<uintptr_t>(view.bitstream) % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(view.index) % 4 == 0 &&
                   reinterpret_cast<uintptr_t>(view.table) % 2 == 0 &&
                   reinterpret_cast<uintptr_t>(out) % 2 == 0,
               what << ": bitstream/index, table or output not aligned to their element");
  DecodeParams p;
  p.bitstream = view.bitstream;
  p.index = view.index;
  p.signmant = view.signmant;
  p.table = view.table;
  p.out = out;
  p.numel = view.numel;
  p.groups = (view.numel + df11::kGroupElements - 1) / df11::kGroupElements;
  p.table_bits = view.table_bits;
  return p;
}

}  // namespace

void df11_gather_rows_cuda(const Df11DeviceView& view, const int32_t* ids, int64_t tokens,
                           int64_t width, float* out, void* stream) {
  SLIMRT_CHECK(tokens >= 0 && width > 0 && view.numel % width == 0,
               "df11_gather_rows_cuda: " << tokens << " rows of width " << width << " from "
                                         << view.numel << " elements");
  if (tokens == 0) return;
  SLIMRT_CHECK(ids != nullptr && out != nullptr, "df11_gather_rows_cuda: a null pointer");
  const DecodeParams p = checked_params(view, nullptr, "df11_gather_rows_cuda");
  // A row of `width` elements touches at most this many groups.
  const int64_t spans = (width + df11::kGroupElements - 1) / df11::kGroupElements + 1;
  const int64_t warps = tokens * spans;
  // Persistent like the decode kernel (same block size and shared table): at most its resident
  // blocks, whose count is cached.
  const int64_t blocks =
      std::min<int64_t>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock, resident_blocks<true>());
  df11_gather_rows_kernel<<<static_cast<unsigned>(blocks), kThreads, 0,
                            static_cast<cudaStream_t>(stream)>>>(p, ids, tokens, width, spans, out);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

void df11_decode_cuda(const Df11DeviceView& view, uint16_t* out, void* stream) {
  SLIMRT_CHECK(view.numel >= 0, "negative element count " << view.numel);
  if (view.numel == 0) return;
  SLIMRT_CHECK(out != nullptr, "df11_decode_cuda: output pointer is null");
  const DecodeParams p = checked_params(view, out, "df11_decode_cuda");

  const auto s = static_cast<cudaStream_t>(stream);
  const bool vector_io = reinterpret_cast<uintptr_t>(out) % 16 == 0 &&
                         reinterpret_cast<uintptr_t>(view.signmant) % 8 == 0;
  if (vector_io) {
    launch<true>(p, s);
  } else {
    launch<false>(p, s);
  }
}

namespace cuda {

void decode_df11(CudaDevice& device, const Df11View& view, uint16_t* out) {
  if (view.numel <= 0) return;
  df11_decode_cuda(device.df11_view(view), out, device.stream());
}

void decode_df11_ahead(CudaDevice& device, const Df11View& view, uint16_t* out) {
  if (view.numel <= 0) return;
  df11_decode_cuda(device.df11_view(view), out, device.ahead_stream());
}

}  // namespace cuda
}  // namespace slimrt
