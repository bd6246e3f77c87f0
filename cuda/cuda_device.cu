// CudaDevice: the Device backend on one NVIDIA GPU. Every kernel is enqueued on one CUDA stream in
// call order. The kernels are plain CUDA with FP32 activations and FP32 accumulation (matmul_bf16
// is a shared-memory tiled GEMM that widens the BF16 weights as it loads them: simple and exact
// rather than fast, except for rows <= 8 (decode), where a GEMV-style kernel streams W once at
// close to memory bandwidth; no cuBLAS, which this build's toolkit may lack), and sample() runs the
// CPU's sampler on the host (copying the logits there), so that it draws exactly the CPU's ids.
//
// Memory owned outside the arenas, allocated on first use and reused:
// - one decoding table per DF11 tensor (keyed by its `lengths` pointer, shared by df11_groups
//   sub-views), built on first use; deallocate() drops them all, since a freed arena may hand
//   the same address to another tensor;
// - host buffers for embed_df11's ids and for sample()'s logits and scratch.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "../cpp/src/cpu/kernels.h"
#include "../cpp/src/cuda_device.h"
#include "../cpp/src/df11_groups.h"
#include "cuda_check.h"
#include "slimrt/df11.h"
#include "slimrt/df11_cuda.h"
#include "slimrt/error.h"
#include "slimrt/thread_pool.h"

namespace slimrt {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // keeps grid-stride grids well inside any limit
// Kept free for the CUDA context and the kernels' own needs.
constexpr int64_t kReservedDeviceBytes = int64_t{512} << 20;
constexpr int kMaxHeadDim = 256;
constexpr int kAttentionWarps = 4;  // warps per block; each warp handles one query token

int grid_for(int64_t n) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
}

// Groups one embedding row can touch: its own span plus one when it straddles a boundary.
int64_t groups_per_row(int64_t hidden) {
  return (hidden + df11::kGroupElements - 1) / df11::kGroupElements + 1;
}

__device__ __forceinline__ float bf16_to_f32(uint16_t b) {
  return __uint_as_float(static_cast<uint32_t>(b) << 16);
}

// Round to nearest even, NaN kept quiet: the same bits as cpu::f32_to_bf16.
__device__ __forceinline__ uint16_t f32_to_bf16(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((u >> 16) | 0x0040u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

__global__ void embed_kernel(const int32_t* ids, int64_t tokens, const uint16_t* table,
                             int64_t hidden, float* out) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / hidden, c = i % hidden;
    out[i] = bf16_to_f32(table[int64_t{ids[t]} * hidden + c]);
  }
}

__global__ void widen_kernel(const uint16_t* in, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = bf16_to_f32(in[i]);
  }
}

// out[r][j] = sum_k x[r][k] * bf16(w[j][k]) (+ bias[j]): 64 x 64 outputs per block of 256
// threads, 4 x 4 per thread, k in tiles of 16 staged in shared memory (x as is, w widened).
constexpr int kTileM = 64, kTileN = 64, kTileK = 16;

__global__ void __launch_bounds__(256)
    matmul_bf16_kernel(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t n,
                       const float* bias, float* out) {
  __shared__ float xs[kTileK][kTileM + 1];
  __shared__ float ws[kTileK][kTileN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % 16, ty = tid / 16;
  const int64_t r0 = int64_t{blockIdx.y} * kTileM;
  const int64_t c0 = int64_t{blockIdx.x} * kTileN;
  float acc[4][4] = {};
  for (int64_t k0 = 0; k0 < k; k0 += kTileK) {
    for (int e = tid; e < kTileM * kTileK; e += 256) {
      const int row = e / kTileK, kk = e % kTileK;
      const int64_t r = r0 + row, kx = k0 + kk;
      xs[kk][row] = (r < rows && kx < k) ? x[r * k + kx] : 0.0f;
    }
    for (int e = tid; e < kTileN * kTileK; e += 256) {
      const int col = e / kTileK, kk = e % kTileK;
      const int64_t c = c0 + col, kx = k0 + kk;
      ws[kk][col] = (c < n && kx < k) ? bf16_to_f32(w[c * k + kx]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = xs[kk][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = ws[kk][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int64_t r = r0 + ty + 16 * i;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t c = c0 + tx + 16 * j;
      if (c < n) out[r * n + c] = acc[i][j] + (bias != nullptr ? bias[c] : 0.0f);
    }
  }
}

// One block per row; FP32 sum of squares reduced over the block.
// Decode-sized matmul_bf16 (rows <= kGemvMaxRows): memory-bound, so W is streamed once. Each warp
// computes kGemvCols output columns j for all R rows: every lane loads 16 bytes (8 BF16) of each
// of those W rows per step, two steps in flight (8 x 16 bytes per lane), reads the matching x
// (FP32, small and cache-resident) through the read-only path, accumulates in FP32 and the warp
// reduces with shuffles. kVec needs k % 8 == 0 and 16-byte aligned x and w (every W and x row is
// then 16-byte aligned); otherwise the scalar variant handles any k one element per lane per step.
constexpr int kGemvMaxRows = 8;
constexpr int kGemvWarps = 8;  // warps per block
constexpr int kGemvCols = 4;   // output columns per warp

// acc[r][c] += x[r][e0 .. e0+8) . bf16(w_c[e0 .. e0+8)), in element order.
template <int R>
__device__ __forceinline__ void gemv_step(const float* __restrict__ x, int64_t k, int64_t e0,
                                          const uint4 (&wv)[kGemvCols],
                                          float (&acc)[R][kGemvCols]) {
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const float4* xr = reinterpret_cast<const float4*>(x + r * k + e0);
    const float4 a = __ldg(xr), b = __ldg(xr + 1);
    const float xv[8] = {a.x, a.y, a.z, a.w, b.x, b.y, b.z, b.w};
#pragma unroll
    for (int c = 0; c < kGemvCols; ++c) {
      const uint32_t q[4] = {wv[c].x, wv[c].y, wv[c].z, wv[c].w};
      float s = acc[r][c];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s = fmaf(xv[2 * i], __uint_as_float(q[i] << 16), s);
        s = fmaf(xv[2 * i + 1], __uint_as_float(q[i] & 0xFFFF0000u), s);
      }
      acc[r][c] = s;
    }
  }
}

template <int R, bool kVec>
__global__ void __launch_bounds__(kGemvWarps * 32)
    matmul_bf16_gemv_kernel(const float* __restrict__ x, int64_t k, const uint16_t* __restrict__ w,
                            int64_t n, const float* __restrict__ bias, float* __restrict__ out) {
  const int lane = threadIdx.x & 31;
  const int64_t j0 = (int64_t{blockIdx.x} * kGemvWarps + threadIdx.x / 32) * kGemvCols;
  if (j0 >= n) return;  // whole warp; no block-level synchronisation below
  // Columns past n re-read row n - 1 (results dropped), keeping the loop free of branches.
  const uint16_t* wr[kGemvCols];
#pragma unroll
  for (int c = 0; c < kGemvCols; ++c) wr[c] = w + (j0 + c < n ? j0 + c : n - 1) * k;
  float acc[R][kGemvCols];
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < kGemvCols; ++c) acc[r][c] = 0.0f;
  }
  if (kVec) {
    const int64_t chunks = k / 8;  // 16-byte chunks per W row
    int64_t q = lane;
    for (; q + 32 < chunks; q += 64) {
      uint4 a[kGemvCols], b[kGemvCols];
#pragma unroll
      for (int c = 0; c < kGemvCols; ++c) {
        a[c] = __ldcs(reinterpret_cast<const uint4*>(wr[c]) + q);
        b[c] = __ldcs(reinterpret_cast<const uint4*>(wr[c]) + q + 32);
      }
      gemv_step<R>(x, k, q * 8, a, acc);
      gemv_step<R>(x, k, (q + 32) * 8, b, acc);
    }
    if (q < chunks) {
      uint4 a[kGemvCols];
#pragma unroll
      for (int c = 0; c < kGemvCols; ++c) a[c] = __ldcs(reinterpret_cast<const uint4*>(wr[c]) + q);
      gemv_step<R>(x, k, q * 8, a, acc);
    }
  } else {
    for (int64_t e = lane; e < k; e += 32) {
      float wv[kGemvCols];
#pragma unroll
      for (int c = 0; c < kGemvCols; ++c) wv[c] = bf16_to_f32(__ldg(wr[c] + e));
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float xv = __ldg(x + r * k + e);
#pragma unroll
        for (int c = 0; c < kGemvCols; ++c) acc[r][c] = fmaf(xv, wv[c], acc[r][c]);
      }
    }
  }
  // Butterfly: every lane ends with all R * kGemvCols (<= 32) sums; lane r * kGemvCols + c writes.
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < kGemvCols; ++c) {
#pragma unroll
      for (int off = 16; off > 0; off >>= 1)
        acc[r][c] += __shfl_xor_sync(0xFFFFFFFFu, acc[r][c], off);
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
#pragma unroll
    for (int c = 0; c < kGemvCols; ++c) {
      const int64_t j = j0 + c;
      if (lane == r * kGemvCols + c && j < n)
        out[r * n + j] = acc[r][c] + (bias != nullptr ? bias[j] : 0.0f);
    }
  }
}
static_assert(kGemvMaxRows * kGemvCols <= 32, "one output per lane in the final write");

template <int R>
void launch_gemv(const float* x, int64_t k, const uint16_t* w, int64_t n, const float* bias,
                 float* out, cudaStream_t stream) {
  constexpr int64_t kColsPerBlock = int64_t{kGemvWarps} * kGemvCols;
  const int64_t blocks = (n + kColsPerBlock - 1) / kColsPerBlock;
  SLIMRT_CHECK(blocks <= 0x7FFFFFFF, "matmul_bf16: n " << n << " out of range");
  const bool vec = k % 8 == 0 && reinterpret_cast<uintptr_t>(x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(w) % 16 == 0;
  if (vec) {
    matmul_bf16_gemv_kernel<R, true>
        <<<static_cast<unsigned>(blocks), kGemvWarps * 32, 0, stream>>>(x, k, w, n, bias, out);
  } else {
    matmul_bf16_gemv_kernel<R, false>
        <<<static_cast<unsigned>(blocks), kGemvWarps * 32, 0, stream>>>(x, k, w, n, bias, out);
  }
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

__global__ void rms_norm_kernel(const float* x, const float* weight, int64_t cols, float eps,
                                float* out) {
  const float* row = x + blockIdx.x * cols;
  float* dst = out + blockIdx.x * cols;
  float sum = 0.0f;
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) sum += row[i] * row[i];
  __shared__ float partial[kThreads / 32];
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, offset);
  if (threadIdx.x % 32 == 0) partial[threadIdx.x / 32] = sum;
  __syncthreads();
  __shared__ float inv;
  if (threadIdx.x == 0) {
    float total = 0.0f;
    for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w) total += partial[w];
    inv = 1.0f / sqrtf(total / static_cast<float>(cols) + eps);
  }
  __syncthreads();
  // Each element is read and written by the same thread, after the reduction: out may equal x.
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) dst[i] = row[i] * inv * weight[i];
}

__global__ void rope_kernel(float* x, const int32_t* positions, int64_t tokens, int64_t heads,
                            int64_t head_dim, const float* inv_freq) {
  const int64_t half = head_dim / 2;
  const int64_t n = tokens * heads * half;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t pair = i % half;
    const int64_t th = i / half;  // token * heads + head
    const int64_t t = th / heads;
    // FP32 angle, as the CPU (and Hugging Face) computes it; accurate sinf/cosf.
    const float angle = static_cast<float>(positions[t]) * inv_freq[pair];
    const float c = cosf(angle), s = sinf(angle);
    float* a = x + th * head_dim + pair;
    float* b = a + half;
    const float x1 = *a, x2 = *b;
    *a = x1 * c - x2 * s;
    *b = x2 * c + x1 * s;
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t n, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const float g = gate[i];
    out[i] = g / (1.0f + expf(-g)) * up[i];
  }
}

__global__ void add_inplace_kernel(float* x, const float* y, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    x[i] += y[i];
  }
}

__global__ void kv_write_kernel(PagedKv kv, const float* k, const float* v, const int32_t* slots,
                                int64_t tokens) {
  const int64_t width = kv.kv_heads * kv.head_dim;
  const int64_t n = tokens * width;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / width, c = i % width;
    const int32_t slot = slots[t];
    if (slot < 0) continue;  // padding
    const int64_t at = int64_t{slot} * width + c;
    if (kv.dtype == KvDtype::kBf16) {
      static_cast<uint16_t*>(kv.k_pages)[at] = f32_to_bf16(k[i]);
      static_cast<uint16_t*>(kv.v_pages)[at] = f32_to_bf16(v[i]);
    } else {
      static_cast<float*>(kv.k_pages)[at] = k[i];
      static_cast<float*>(kv.v_pages)[at] = v[i];
    }
  }
}

__device__ __forceinline__ float load_kv(const void* pages, KvDtype dtype, int64_t at) {
  return dtype == KvDtype::kBf16 ? bf16_to_f32(static_cast<const uint16_t*>(pages)[at])
                                 : static_cast<const float*>(pages)[at];
}

// Grid (num_seqs, heads, splits); each warp takes query tokens warp_id, warp_id + warps, ... of
// its sequence and walks the cache positions [0, causal limit] with an online softmax in FP32.
// Lane l holds dimensions l, l + 32, ... (head_dim <= 256).
__global__ void paged_attention_kernel(const float* q, PagedKv kv, PagedBatch batch, int64_t heads,
                                       float scale, float* out) {
  constexpr int kPerLane = kMaxHeadDim / 32;
  const int64_t s = blockIdx.x;
  const int64_t h = blockIdx.y;
  const int lane = threadIdx.x % 32;
  const int64_t warp = int64_t{blockIdx.z} * (blockDim.x / 32) + threadIdx.x / 32;
  const int64_t warps = int64_t{gridDim.z} * (blockDim.x / 32);
  const int64_t head_dim = kv.head_dim;
  const int64_t kvh = h / (heads / kv.kv_heads);
  const int64_t q_begin = batch.q_indptr[s];
  const int64_t nq = batch.q_indptr[s + 1] - q_begin;
  const int64_t ctx = batch.context_lens[s];
  const int32_t* pages = batch.page_indices + batch.page_indptr[s];

  for (int64_t i = warp; i < nq; i += warps) {
    const int64_t token = q_begin + i;
    const int64_t pos = ctx - nq + i;  // attends to cache positions [0, pos]
    const float* qrow = q + (token * heads + h) * head_dim;
    float qv[kPerLane], acc[kPerLane];
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int64_t d = lane + 32 * j;
      qv[j] = d < head_dim ? qrow[d] : 0.0f;
      acc[j] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t p = 0; p <= pos; ++p) {
      const int64_t page = pages[p / kv.page_size];
      const int64_t base =
          ((page * kv.page_size + p % kv.page_size) * kv.kv_heads + kvh) * head_dim;
      float dot = 0.0f;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t d = lane + 32 * j;
        if (d < head_dim) dot += qv[j] * load_kv(kv.k_pages, kv.dtype, base + d);
      }
      for (int offset = 16; offset > 0; offset /= 2) {
        dot += __shfl_xor_sync(0xFFFFFFFFu, dot, offset);
      }
      const float score = dot * scale;
      const float m_new = fmaxf(m, score);
      const float correction = expf(m - m_new);  // exp(-inf) = 0 on the first position
      const float weight = expf(score - m_new);
      l = l * correction + weight;
#pragma unroll
      for (int j = 0; j < kPerLane; ++j) {
        const int64_t d = lane + 32 * j;
        const float vv = d < head_dim ? load_kv(kv.v_pages, kv.dtype, base + d) : 0.0f;
        acc[j] = acc[j] * correction + weight * vv;
      }
      m = m_new;
    }
    float* orow = out + (token * heads + h) * head_dim;
    const float inv_l = l > 0.0f ? 1.0f / l : 0.0f;
#pragma unroll
    for (int j = 0; j < kPerLane; ++j) {
      const int64_t d = lane + 32 * j;
      if (d < head_dim) orow[d] = acc[j] * inv_l;
    }
  }
}

struct DeviceTable {
  uint16_t* entries = nullptr;
  int bits = 0;
};

class CudaDevice final : public Device {
 public:
  explicit CudaDevice(int num_threads) : pool_(num_threads) {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) cudaGetLastError();
    SLIMRT_CHECK(status == cudaSuccess && count > 0,
                 "options: device \"cuda\": no usable CUDA device ("
                     << (status == cudaSuccess ? "none found" : cudaGetErrorString(status))
                     << "); use device \"cpu\"");
    SLIMRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~CudaDevice() override {
    // Errors here (typically a context already torn down at exit) cannot be acted upon.
    cudaStreamSynchronize(stream_);
    release();
  }

  std::string name() const override { return "cuda"; }

  void* allocate(int64_t bytes) override {
    SLIMRT_CHECK(bytes >= 0, "allocate: negative size " << bytes);
    void* memory = nullptr;
    // cudaMalloc returns 256-byte aligned memory (more than the 64 the arenas need).
    const cudaError_t status =
        cudaMalloc(&memory, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
    if (status != cudaSuccess) cudaGetLastError();
    SLIMRT_CHECK(
        status == cudaSuccess && memory != nullptr,
        "could not allocate " << bytes << " bytes of GPU memory: " << cudaGetErrorString(status));
    return memory;
  }

  void deallocate(void* memory) override {
    if (memory == nullptr) return;
    drop_tables();  // the freed memory may have held `lengths` arrays the tables are keyed by
    SLIMRT_CUDA_CHECK(cudaFree(memory));  // waits for work in flight
  }

  int64_t available_memory() const override {
    size_t free_bytes = 0, total_bytes = 0;
    SLIMRT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    return std::max<int64_t>(0, static_cast<int64_t>(free_bytes) - kReservedDeviceBytes);
  }

  void copy_to_device(void* dst, const void* host_src, int64_t bytes) override {
    if (bytes <= 0) return;
    SLIMRT_CUDA_CHECK(cudaMemcpyAsync(dst, host_src, static_cast<size_t>(bytes),
                                      cudaMemcpyHostToDevice, stream_));
    // The caller may reuse host_src at once (the executor rewrites its staging every step).
    SLIMRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void copy_to_host(void* host_dst, const void* src, int64_t bytes) override {
    if (bytes <= 0) return;
    SLIMRT_CUDA_CHECK(cudaMemcpyAsync(host_dst, src, static_cast<size_t>(bytes),
                                      cudaMemcpyDeviceToHost, stream_));
    SLIMRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden,
             float* out) override {
    if (tokens <= 0 || hidden <= 0) return;
    embed_kernel<<<grid_for(tokens * hidden), kThreads, 0, stream_>>>(ids, tokens, table, hidden,
                                                                      out);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  // Decodes each token's groups into the one scratch slot, then widens its row: two launches a
  // token, ordered by the stream. The ids are read back to the host to find the groups.
  void embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table, int64_t hidden,
                  float* out, uint16_t* scratch) override {
    if (tokens <= 0 || hidden <= 0) return;
    if (static_cast<int64_t>(host_ids_.size()) < tokens) host_ids_.resize(tokens);
    copy_to_host(host_ids_.data(), ids, tokens * static_cast<int64_t>(sizeof(int32_t)));
    for (int64_t t = 0; t < tokens; ++t) {
      const int64_t first = int64_t{host_ids_[t]} * hidden;
      const int64_t g0 = first / df11::kGroupElements;
      const int64_t g1 = (first + hidden - 1) / df11::kGroupElements + 1;
      decode_df11(df11_groups(table, g0, g1), scratch);
      widen_kernel<<<grid_for(hidden), kThreads, 0, stream_>>>(
          scratch + (first - g0 * df11::kGroupElements), hidden, out + t * hidden);
      SLIMRT_CUDA_CHECK(cudaGetLastError());
    }
  }

  int64_t embed_df11_scratch_elements(int64_t hidden) const override {
    return groups_per_row(hidden) * df11::kGroupElements;
  }

  void decode_df11(const Df11View& view, uint16_t* out) override {
    if (view.numel <= 0) return;
    const DeviceTable& table = table_for(view.lengths);
    Df11DeviceView d;
    d.bitstream = view.bitstream;
    d.index = view.index;
    d.signmant = view.signmant;
    d.table = table.entries;
    d.table_bits = table.bits;
    d.numel = view.numel;
    df11_decode_cuda(d, out, stream_);
  }

  void gather_rows(const float* src, const int32_t* host_rows, int64_t count, int64_t width,
                   float* dst) override {
    for (int64_t i = 0; i < count; ++i) {
      SLIMRT_CUDA_CHECK(cudaMemcpyAsync(dst + i * width, src + int64_t{host_rows[i]} * width,
                                        static_cast<size_t>(width) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, stream_));
    }
  }

  void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols) override {
    if (rows <= 0 || cols <= 0) return;
    SLIMRT_CUDA_CHECK(cudaMemcpy2DAsync(
        dst, static_cast<size_t>(dst_stride) * sizeof(float), src,
        static_cast<size_t>(src_stride) * sizeof(float), static_cast<size_t>(cols) * sizeof(float),
        static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream_));
  }

  void rms_norm(const float* x, const float* weight, int64_t rows, int64_t cols, float eps,
                float* out) override {
    if (rows <= 0 || cols <= 0) return;
    SLIMRT_CHECK(rows <= 0x7FFFFFFF, "rms_norm: too many rows " << rows);
    rms_norm_kernel<<<static_cast<unsigned>(rows), kThreads, 0, stream_>>>(x, weight, cols, eps,
                                                                           out);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  void matmul_bf16(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t n,
                   const float* bias, float* out) override {
    if (rows <= 0 || n <= 0) return;
    if (rows <= kGemvMaxRows) {  // decode: stream W once, GEMV-style
      switch (rows) {
        case 1:
          return launch_gemv<1>(x, k, w, n, bias, out, stream_);
        case 2:
          return launch_gemv<2>(x, k, w, n, bias, out, stream_);
        case 3:
          return launch_gemv<3>(x, k, w, n, bias, out, stream_);
        case 4:
          return launch_gemv<4>(x, k, w, n, bias, out, stream_);
        case 5:
          return launch_gemv<5>(x, k, w, n, bias, out, stream_);
        case 6:
          return launch_gemv<6>(x, k, w, n, bias, out, stream_);
        case 7:
          return launch_gemv<7>(x, k, w, n, bias, out, stream_);
        default:
          return launch_gemv<8>(x, k, w, n, bias, out, stream_);
      }
    }
    const int64_t row_tiles = (rows + kTileM - 1) / kTileM;
    const int64_t col_tiles = (n + kTileN - 1) / kTileN;
    SLIMRT_CHECK(row_tiles <= 65535 && col_tiles <= 0x7FFFFFFF,
                 "matmul_bf16: shape " << rows << " x " << k << " x " << n << " out of range");
    const dim3 grid(static_cast<unsigned>(col_tiles), static_cast<unsigned>(row_tiles));
    matmul_bf16_kernel<<<grid, 256, 0, stream_>>>(x, rows, k, w, n, bias, out);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  void rope(float* x, const int32_t* positions, int64_t tokens, int64_t heads, int64_t head_dim,
            const float* inv_freq) override {
    SLIMRT_CHECK(head_dim % 2 == 0, "rope: head_dim must be even, got " << head_dim);
    const int64_t n = tokens * heads * (head_dim / 2);
    if (n <= 0) return;
    rope_kernel<<<grid_for(n), kThreads, 0, stream_>>>(x, positions, tokens, heads, head_dim,
                                                       inv_freq);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  void silu_mul(const float* gate, const float* up, int64_t tokens, int64_t width,
                float* out) override {
    const int64_t n = tokens * width;
    if (n <= 0) return;
    silu_mul_kernel<<<grid_for(n), kThreads, 0, stream_>>>(gate, up, n, out);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  void add_inplace(float* x, const float* y, int64_t n) override {
    if (n <= 0) return;
    add_inplace_kernel<<<grid_for(n), kThreads, 0, stream_>>>(x, y, n);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  void kv_write(const PagedKv& kv, const float* k, const float* v, const int32_t* slots,
                int64_t tokens) override {
    const int64_t n = tokens * kv.kv_heads * kv.head_dim;
    if (n <= 0) return;
    kv_write_kernel<<<grid_for(n), kThreads, 0, stream_>>>(kv, k, v, slots, tokens);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  // The batch arrays are device memory and are not read back: the engine builds them
  // consistent (the CPU backend's per-call checks of them are not repeated here).
  void paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch, int64_t heads,
                       float scale, float* out) override {
    SLIMRT_CHECK(kv.kv_heads > 0 && heads > 0 && heads % kv.kv_heads == 0,
                 "paged_attention: " << heads << " query heads do not divide into " << kv.kv_heads
                                     << " KV heads");
    SLIMRT_CHECK(
        kv.head_dim > 0 && kv.head_dim <= kMaxHeadDim,
        "paged_attention: head_dim " << kv.head_dim << " outside [1, " << kMaxHeadDim << "]");
    SLIMRT_CHECK(kv.page_size > 0, "paged_attention: page_size " << kv.page_size);
    SLIMRT_CHECK(batch.num_seqs <= 0x7FFFFFFF && heads <= 65535,
                 "paged_attention: " << batch.num_seqs << " sequences x " << heads
                                     << " heads is too large a grid");
    if (batch.num_seqs <= 0) return;
    constexpr unsigned kSplits = 8;  // blocks per (sequence, head): 32 query tokens at a time
    const dim3 grid(static_cast<unsigned>(batch.num_seqs), static_cast<unsigned>(heads), kSplits);
    paged_attention_kernel<<<grid, 32 * kAttentionWarps, 0, stream_>>>(q, kv, batch, heads, scale,
                                                                       out);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  // The CPU sampler on a host copy of the logits: the same ids as device "cpu" for the same
  // logits. `scratch` (device memory) is unused; the host scratch is owned here.
  void sample(const float* logits, int64_t rows, int64_t vocab, const SampleParams* host_params,
              int32_t* out, void* /*scratch*/) override {
    if (rows <= 0) return;
    const int64_t n = rows * vocab;
    if (static_cast<int64_t>(host_logits_.size()) < n) host_logits_.resize(n);
    if (static_cast<int64_t>(host_scratch_.size()) < n) host_scratch_.resize(n);  // 8 bytes each
    if (static_cast<int64_t>(host_sampled_.size()) < rows) host_sampled_.resize(rows);
    copy_to_host(host_logits_.data(), logits, n * static_cast<int64_t>(sizeof(float)));
    cpu::sample(host_logits_.data(), rows, vocab, host_params, host_sampled_.data(),
                host_scratch_.data(), pool_);
    copy_to_device(out, host_sampled_.data(), rows * static_cast<int64_t>(sizeof(int32_t)));
  }

  int64_t sample_scratch_bytes(int64_t, int64_t) const override { return 64; }

 private:
  // The decoding table of the DF11 tensor whose (device) lengths array is `lengths`, built and
  // uploaded on first use.
  const DeviceTable& table_for(const uint8_t* lengths) {
    const auto found = tables_.find(lengths);
    if (found != tables_.end()) return found->second;
    uint8_t host_lengths[df11::kSymbols];
    copy_to_host(host_lengths, lengths, df11::kSymbols);
    const Df11Table table = df11_build_table(host_lengths);
    SLIMRT_CHECK(table.table_bits >= 1 && table.table_bits <= df11::kMaxCodeLength &&
                     table.entries.size() == (size_t{1} << table.table_bits),
                 "df11_build_table returned " << table.entries.size() << " entries for table_bits "
                                              << table.table_bits);
    const size_t bytes = table.entries.size() * sizeof(uint16_t);
    DeviceTable entry;
    SLIMRT_CUDA_CHECK(cudaMalloc(&entry.entries, bytes));
    entry.bits = table.table_bits;
    const cudaError_t status =
        cudaMemcpy(entry.entries, table.entries.data(), bytes, cudaMemcpyHostToDevice);
    if (status != cudaSuccess) {
      cudaFree(entry.entries);
      SLIMRT_CUDA_CHECK(status);
    }
    return tables_.emplace(lengths, entry).first->second;
  }

  void drop_tables() {
    for (auto& [key, table] : tables_) cudaFree(table.entries);
    tables_.clear();
  }

  void release() {
    drop_tables();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    stream_ = nullptr;
  }

  ThreadPool pool_;  // host threads for sample()
  cudaStream_t stream_ = nullptr;
  std::map<const uint8_t*, DeviceTable> tables_;
  std::vector<int32_t> host_ids_;
  std::vector<float> host_logits_;
  std::vector<uint64_t> host_scratch_;
  std::vector<int32_t> host_sampled_;
};

}  // namespace

std::unique_ptr<Device> make_cuda_device(int num_threads) {
  return std::make_unique<CudaDevice>(num_threads);
}

}  // namespace slimrt
