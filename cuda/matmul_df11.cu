// The CUDA kernel of ops::matmul_df11: DF11 weights multiplied as they are decoded, for the few
// input rows of a decode step, on the stored layout (docs/FORMAT.md, version 1) as it is.
//
// Why it looks the way it does:
// - Nothing is written but the outputs: a lane's decoded weights go from registers straight into
//   FMAs with the activations, so a weight costs its 1.34 compressed bytes read once, where
//   decoding ahead reads them, writes 2 bytes of BF16 and cuBLAS reads those 2 again.
// - One warp per 4096-element group, as in the decoder. Step j of a group is 256 consecutive
//   weights (lane l holds 8 of them), so when k is a multiple of 256 a step lies within one row:
//   each lane accumulates that row's products over its columns, and the end of a row (at most a
//   few per group) is one warp reduction.
// - A row that spans groups (k > 4096, or 4096 not a multiple of k) is split-K by construction:
//   each group leaves a partial sum per row it touches, and a second kernel adds a row's partials
//   in group order. Deterministic, no atomics, no scan.
// - The activations (BF16, rounded by their producer as for cuBLAS) are widened to FP32 into
//   shared memory once per persistent block. The shared table holds (symbol << 23 | length): a
//   weight's exponent is already where FP32 wants it, so the FP32 weight is one PRMT of its
//   sign/mantissa byte and one LOP3.
// - Products that share their input (q|k|v, gate|up) run in one launch, each with its own table.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "check.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "df11_bits.cuh"
#include "kernel_helpers.h"
#include "ops/matmul_df11.h"

namespace slimrt::cuda {
namespace {

constexpr int kWarps = 16;
constexpr int kBlockThreads = kWarps * df11::kLanes;
constexpr int64_t kStepElements = int64_t{df11::kLanes} * df11::kVector;  // 256
constexpr int kTableEntries = 1 << df11::kMaxCodeLength;
constexpr int64_t kTableBytes = kTableEntries * int64_t{sizeof(uint32_t)};
// Input rows the kernel is instantiated for: beyond them the FMAs of every row outweigh decoding
// (and the tuner of ops::matmul_df11 has always found decode-then-GEMM faster well before).
constexpr int64_t kMaxRows = 8;

static_assert(df11::kLanes == 32 && df11::kVector == 8 && df11::kSteps == 16,
              "the kernel is written for FORMAT.md version 1");

struct Product {
  const uint32_t* bitstream;
  const uint32_t* index;
  const uint8_t* signmant;
  const uint16_t* table;
  const float* bias;
  float* out;
  float* partial;  // [groups][slots][rows]; null when no row spans two groups
  int64_t n;
  int64_t numel;
  int64_t first_group;  // of this product in the launch's groups
  int table_bits;
};

struct Params {
  Product product[ops::kMaxDf11Products];
  int count;
  int64_t groups;  // of all products
  const uint16_t* x;
  int64_t k;
  int slots;  // rows one group touches at most
};

// Rows one group of a [n][k] matrix touches at most.
int64_t slots_per_group(int64_t k) { return (df11::kGroupElements + k - 1) / k + 1; }

bool rows_span_groups(int64_t k) { return k > df11::kGroupElements || df11::kGroupElements % k; }

// Weight `kByte` of a lane's sign/mantissa word as FP32 (the BF16 value, widened exactly): PRMT
// copies the byte into bytes 2 and 3 (sign at bit 31, mantissa at bits 16-22, zeros below), the
// LOP3 takes bits 23-30 from the entry instead (the exponent; the entry's length sits in bits
// 0-3, which the mask leaves to the PRMT's zeros).
template <int kByte>
__device__ __forceinline__ float weight(uint32_t signmant_word, uint32_t entry) {
  constexpr uint32_t kSelector = 0x44u | (kByte << 8) | (kByte << 12);
  const uint32_t spread = __byte_perm(signmant_word, 0u, kSelector);
  uint32_t bits;
  asm("lop3.b32 %0, %1, %2, %3, 0xE4;" : "=r"(bits) : "r"(spread), "r"(entry), "n"(0x807FFFFFu));
  return __uint_as_float(bits);
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xFFFFFFFFu, v, offset);
  return v;
}

// The end of row `row` within group g: its sums over the group's part of the row, reduced over
// the warp; the whole row (no partials) or the group's partial of it.
template <int kRows>
__device__ __forceinline__ void finish_row(const Product& q, int64_t g, int slots, int64_t row,
                                           int slot, float (&acc)[kRows], uint32_t lane) {
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float sum = warp_sum(acc[r]);
    acc[r] = 0.0f;
    if (lane != static_cast<uint32_t>(r)) continue;
    if (q.partial == nullptr) {
      q.out[r * q.n + row] = q.bias == nullptr ? sum : sum + q.bias[row];
    } else {
      q.partial[(g * slots + slot) * kRows + r] = sum;
    }
  }
}

__device__ __forceinline__ int product_of(const Params& p, int64_t g) {
  int j = 0;
  while (j + 1 < p.count && g >= p.product[j + 1].first_group) ++j;
  return j;
}

// One 128-byte line per lane: a whole group's 4096 sign/mantissa bytes.
__device__ __forceinline__ void prefetch_signmant(const Params& p, int64_t g, uint32_t lane) {
  const Product& q = p.product[product_of(p, g)];
  const int64_t base = (g - q.first_group) * df11::kGroupElements;
  if (base + int64_t{lane} * 128 < q.numel) prefetch_l2(q.signmant + base + lane * 128);
}

__device__ __forceinline__ const uint32_t* index_row(const Params& p, int64_t g) {
  const Product& q = p.product[product_of(p, g)];
  return q.index + (g - q.first_group) * df11::kIndexWords;
}

// Group g of product q, while the warp's next group (`next` of all groups, -1: none) is asked of
// L2: DRAM latency at a group's start (its index row, then its bitstream words and sign/mantissa
// bytes) would otherwise stall the warp there for two round trips. Only the next group's number
// is kept in registers; its addresses are found again from the parameters when needed.
template <int kRows>
__device__ __forceinline__ void multiply_group(const Params& p, const Product& q, int64_t g,
                                               int64_t next, const uint32_t* table_s,
                                               const float* x_s, uint32_t lane) {
  const int64_t k = p.k;
  const uint32_t* index = q.index + g * df11::kIndexWords;
  if (next >= 0) {
    if (lane == 0) prefetch_l2(index_row(p, next));
    prefetch_signmant(p, next, lane);
  }
  LaneBits bits =
      start_lane(q.bitstream, __ldg(index), lane_offset(__ldg(index + 1 + lane / 2), lane));
  const uint32_t shift = 32 - q.table_bits;
  const int64_t base = g * df11::kGroupElements;
  // numel is a multiple of k, so of 256: a step is all there or all past the end.
  const int steps = static_cast<int>(min(int64_t{df11::kSteps}, (q.numel - base) / kStepElements));
  const int64_t first_row = base / k;
  int64_t row = first_row;
  int64_t col = base - first_row * k;
  const float* x_lane = x_s + lane * df11::kVector;  // the lane's x vectors are x_lane[col..]
  const uint2* sm = reinterpret_cast<const uint2*>(q.signmant + base) + lane;
  float acc[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) acc[r] = 0.0f;

  uint2 sm_next = load_once(sm);
#pragma unroll 1
  for (int j = 0; j < steps; ++j) {
    const uint2 now = sm_next;
    if (j + 1 < steps) sm_next = load_once(sm + (j + 1) * df11::kLanes);
    // Half way, the next group's index row is in L2: its words tell where to ask for the
    // lane's first bitstream line (a short wait on L2 that other warps cover).
    if (next >= 0 && j == df11::kSteps / 2) {
      const uint32_t* row = index_row(p, next);
      const uint32_t first_word = __ldg(row);
      const uint32_t offset = lane_offset(__ldg(row + 1 + lane / 2), lane);
      prefetch_l2(p.product[product_of(p, next)].bitstream + first_word + (offset >> 5));
    }
    // The x vectors first, then each pair of codes straight into the FMAs: a weight lives for
    // two instructions, which keeps the registers (and so the warps per SM) for the decoding.
    const float* xr = x_lane + col;
    float4 xa[kRows], xb[kRows];
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      xa[r] = *reinterpret_cast<const float4*>(xr + r * k);
      xb[r] = *reinterpret_cast<const float4*>(xr + r * k + 4);
    }
    uint32_t e0, e1;
    decode_two(bits, table_s, shift, e0, e1);
    float w0 = weight<0>(now.x, e0), w1 = weight<1>(now.x, e1);
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = fmaf(w1, xa[r].y, fmaf(w0, xa[r].x, acc[r]));
    decode_two(bits, table_s, shift, e0, e1);
    w0 = weight<2>(now.x, e0), w1 = weight<3>(now.x, e1);
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = fmaf(w1, xa[r].w, fmaf(w0, xa[r].z, acc[r]));
    decode_two(bits, table_s, shift, e0, e1);
    w0 = weight<0>(now.y, e0), w1 = weight<1>(now.y, e1);
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = fmaf(w1, xb[r].y, fmaf(w0, xb[r].x, acc[r]));
    decode_two(bits, table_s, shift, e0, e1);
    w0 = weight<2>(now.y, e0), w1 = weight<3>(now.y, e1);
#pragma unroll
    for (int r = 0; r < kRows; ++r) acc[r] = fmaf(w1, xb[r].w, fmaf(w0, xb[r].z, acc[r]));
    col += kStepElements;
    if (col == k) {
      finish_row<kRows>(q, g, p.slots, row, static_cast<int>(row - first_row), acc, lane);
      ++row;
      col = 0;
    }
  }
  // The group ends inside a row: its partial of that row.
  if (col != 0) finish_row<kRows>(q, g, p.slots, row, static_cast<int>(row - first_row), acc, lane);
}

// Resident blocks per SM the registers are capped for: three 16-warp blocks (48 warps, 40
// registers) at one row, where the decode chains' latency needs the warps; more rows need the
// registers for their sums and x vectors. A tuning knob, meant to be overridden with -D while
// measuring.
#ifndef SLIMRT_DF11_FUSED_MIN_BLOCKS_ONE_ROW
#define SLIMRT_DF11_FUSED_MIN_BLOCKS_ONE_ROW 3
#endif
template <int kRows>
constexpr int kMinBlocks = kRows == 1   ? SLIMRT_DF11_FUSED_MIN_BLOCKS_ONE_ROW
                           : kRows <= 5 ? 2
                                        : 1;

template <int kRows>
__global__ void __launch_bounds__(kBlockThreads, kMinBlocks<kRows>)
    matmul_df11_kernel(const Params p) {
  extern __shared__ uint4 shared[];
  uint32_t* tables = reinterpret_cast<uint32_t*>(shared);
  float* x_s = reinterpret_cast<float*>(tables + p.count * kTableEntries);

  for (int j = 0; j < p.count; ++j) {
    const Product& q = p.product[j];
    for (int i = threadIdx.x; i < (1 << q.table_bits); i += kBlockThreads) {
      const uint32_t entry = __ldg(q.table + i);
      tables[j * kTableEntries + i] = ((entry & 0xFFu) << 23) | df11_code_length(entry);
    }
  }
  // k is a multiple of 256: whole 16-byte vectors of 8 BF16 values.
  const int64_t vectors = kRows * p.k / 8;
  for (int64_t i = threadIdx.x; i < vectors; i += kBlockThreads) {
    const uint4 v = __ldg(reinterpret_cast<const uint4*>(p.x) + i);
    float4* dst = reinterpret_cast<float4*>(x_s + i * 8);
    dst[0] = make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xFFFF0000u),
                         __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xFFFF0000u));
    dst[1] = make_float4(__uint_as_float(v.z << 16), __uint_as_float(v.z & 0xFFFF0000u),
                         __uint_as_float(v.w << 16), __uint_as_float(v.w & 0xFFFF0000u));
  }
  __syncthreads();

  const uint32_t lane = threadIdx.x % df11::kLanes;
  const int64_t stride = int64_t{gridDim.x} * kWarps;
  int64_t g = int64_t{blockIdx.x} * kWarps + threadIdx.x / df11::kLanes;
  if (g < p.groups) prefetch_signmant(p, g, lane);
  for (; g < p.groups; g += stride) {
    const int j = product_of(p, g);
    const Product& q = p.product[j];
    multiply_group<kRows>(p, q, g - q.first_group, g + stride < p.groups ? g + stride : -1,
                          tables + j * kTableEntries, x_s, lane);
  }
}

// out[r][row] = bias[row] + the row's partials, in group order.
__global__ void sum_partials_kernel(const float* partial, const float* bias, float* out, int64_t n,
                                    int64_t k, int slots, int rows) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n * rows;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t row = i / rows;
    const int r = static_cast<int>(i % rows);
    const int64_t first = row * k / df11::kGroupElements;
    const int64_t last = ((row + 1) * k - 1) / df11::kGroupElements;
    float sum = 0.0f;
    for (int64_t g = first; g <= last; ++g) {
      const int64_t slot = row - g * df11::kGroupElements / k;
      sum += partial[(g * slots + slot) * rows + r];
    }
    out[r * n + row] = bias == nullptr ? sum : sum + bias[row];
  }
}

int64_t shared_bytes(int count, int64_t rows, int64_t k) {
  return count * kTableBytes + rows * k * int64_t{sizeof(float)};
}

int64_t groups_of(const Df11View& w) { return w.groups(); }

template <int kRows>
void launch(const Params& p, int64_t smem, cudaStream_t stream) {
  const auto kernel = matmul_df11_kernel<kRows>;
  SLIMRT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(smem)));
  int device = 0, sms = 0, per_sm = 0;
  SLIMRT_CUDA_CHECK(cudaGetDevice(&device));
  SLIMRT_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
  SLIMRT_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kBlockThreads,
                                                                  static_cast<size_t>(smem)));
  // Persistent: no more blocks than fit at once, each copying the tables and x once.
  const int64_t wanted = (p.groups + kWarps - 1) / kWarps;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(wanted, int64_t{sms} * per_sm));
  kernel<<<static_cast<unsigned>(blocks), kBlockThreads, static_cast<size_t>(smem), stream>>>(p);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace

int64_t matmul_df11_max_rows(int64_t k, int count) {
  if (k <= 0 || k % kStepElements != 0 || count < 1 || count > ops::kMaxDf11Products) return 0;
  int device = 0, optin = 0;
  SLIMRT_CUDA_CHECK(cudaGetDevice(&device));
  SLIMRT_CUDA_CHECK(
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  const int64_t room = optin - count * kTableBytes;
  return std::clamp<int64_t>(room / (k * int64_t{sizeof(float)}), 0, kMaxRows);
}

int64_t matmul_df11_scratch_bytes(const ops::Df11Product* products, int count, int64_t k,
                                  int64_t rows) {
  if (!rows_span_groups(k)) return 0;
  int64_t bytes = 0;
  for (int j = 0; j < count; ++j) {
    bytes += (groups_of(products[j].w) * slots_per_group(k) * rows * int64_t{sizeof(float)} + 255) /
             256 * 256;
  }
  return bytes;
}

void matmul_df11(CudaDevice& device, const MatmulInput& x, const ops::Df11Product* products,
                 int count, void* scratch) {
  const int64_t rows = x.rows;
  const int64_t k = x.k;
  SLIMRT_CHECK(rows >= 1 && rows <= matmul_df11_max_rows(k, count),
               "matmul_df11: the CUDA kernel takes " << matmul_df11_max_rows(k, count)
                                                     << " rows at most for k " << k << " and "
                                                     << count << " products, not " << rows);
  SLIMRT_CHECK(reinterpret_cast<uintptr_t>(x.data) % 16 == 0,
               "matmul_df11: the input is not 16-byte aligned");
  const bool partials = rows_span_groups(k);
  SLIMRT_CHECK(!partials || scratch != nullptr, "matmul_df11: a null scratch");
  Params p{};
  p.count = count;
  p.x = static_cast<const uint16_t*>(x.data);
  p.k = k;
  p.slots = static_cast<int>(slots_per_group(k));
  auto* partial = static_cast<char*>(scratch);
  for (int j = 0; j < count; ++j) {
    const ops::Df11Product& in = products[j];
    SLIMRT_CHECK(reinterpret_cast<uintptr_t>(in.w.signmant) % 8 == 0,
                 "matmul_df11: sign/mantissa bytes not 8-byte aligned");
    const Df11DeviceView view = device.df11_view(in.w);
    Product& q = p.product[j];
    q.bitstream = view.bitstream;
    q.index = view.index;
    q.signmant = view.signmant;
    q.table = view.table;
    q.table_bits = view.table_bits;
    q.bias = in.bias;
    q.out = in.out;
    q.n = in.n;
    q.numel = in.w.numel;
    q.first_group = p.groups;
    p.groups += groups_of(in.w);
    if (partials) {
      q.partial = reinterpret_cast<float*>(partial);
      partial += (groups_of(in.w) * p.slots * rows * int64_t{sizeof(float)} + 255) / 256 * 256;
    }
  }
  if (p.groups == 0) return;
  const int64_t smem = shared_bytes(count, rows, k);
  const cudaStream_t stream = device.stream();
  switch (rows) {
    case 1:
      launch<1>(p, smem, stream);
      break;
    case 2:
      launch<2>(p, smem, stream);
      break;
    case 3:
      launch<3>(p, smem, stream);
      break;
    case 4:
      launch<4>(p, smem, stream);
      break;
    case 5:
      launch<5>(p, smem, stream);
      break;
    case 6:
      launch<6>(p, smem, stream);
      break;
    case 7:
      launch<7>(p, smem, stream);
      break;
    case 8:
      launch<8>(p, smem, stream);
      break;
    default:
      SLIMRT_CHECK(false, "matmul_df11: " << rows << " rows");
  }
  if (!partials) return;
  for (int j = 0; j < count; ++j) {
    const Product& q = p.product[j];
    sum_partials_kernel<<<grid_for(q.n * rows), kThreads, 0, stream>>>(
        q.partial, q.bias, q.out, q.n, k, p.slots, static_cast<int>(rows));
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }
}

}  // namespace slimrt::cuda
