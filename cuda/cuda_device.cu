// CudaDevice: the Device backend on one NVIDIA GPU. Every kernel is enqueued on one CUDA stream in
// call order. Activations are FP32 between kernels; matmuls are cuBLAS BF16 GEMMs (tensor cores,
// FP32 accumulation and output) on activations rounded to BF16 by the producers of matmul inputs
// (add_rms_norm_input, silu_mul_input, paged_attention), as in every BF16 inference engine, so
// results differ from the CPU backend's FP32 activations by BF16 rounding (~1e-2 relative), not by
// more. Decode steps (one query token per sequence, BF16 KV) use the split-K paged decode attention
// kernel (paged_decode_attention.cu), other steps with BF16 KV the tensor-core prefill kernel
// (paged_prefill_attention.cu); the rest (FP32 KV, other head sizes) a simple kernel with one warp
// per query token.
// Sampling runs on the GPU (sample.cu), drawing the CPU sampler's ids from the same logits.
// run_graph() records a body as a CUDA graph the second time its key is seen, then replays it.
// decode_df11_ahead() runs on a second stream, ordered against the first by fork_ahead() and
// join_ahead() through events (the fork/join pattern that graph capture also records).
//
// Memory owned outside the arenas:
// - the cuBLAS handle and its workspace (kCublasWorkspaceBytes), made at construction;
// - one decoding table per DF11 tensor (keyed by its `lengths` pointer, shared by df11_groups
//   sub-views), built by prepare_df11() at load (or on first use); deallocate() drops them all,
//   since a freed arena may hand the same address to another tensor;
// - the recorded graphs (at most kMaxGraphs, all dropped when that many exist).
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "attention_cuda.h"
#include "check.h"
#include "cublas_library.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "df11_cuda.h"
#include "df11_groups.h"
#include "sample.h"
#include "slimrt/df11.h"

namespace slimrt {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;  // keeps grid-stride grids well inside any limit
// Kept free for the CUDA context and the kernels' own needs.
constexpr int64_t kReservedDeviceBytes = int64_t{512} << 20;
constexpr int kMaxHeadDim = 256;
constexpr int kAttentionWarps = 4;  // warps per block; each warp handles one query token
constexpr int64_t kCublasWorkspaceBytes = int64_t{32} << 20;  // what cuBLAS advises for Hopper
constexpr size_t kMaxGraphs = 256;

#define SLIMRT_CUBLAS_CHECK(call)                                                                \
  do {                                                                                           \
    const cublasStatus_t slimrt_cublas_status_ = (call);                                         \
    SLIMRT_CHECK(slimrt_cublas_status_ == CUBLAS_STATUS_SUCCESS,                                 \
                 #call << " failed: " << cublas_library().status_name(slimrt_cublas_status_)     \
                       << " (" << cublas_library().status_string(slimrt_cublas_status_) << ")"); \
  } while (0)

int64_t align256(int64_t bytes) { return (bytes + 255) / 256 * 256; }

// Whether paged_attention can use the decode kernel for this cache and head count.
bool decode_kernel_fits(const PagedKv& kv, int64_t heads) {
  if (kv.dtype != KvDtype::kBf16 || kv.kv_heads <= 0 || heads % kv.kv_heads != 0) return false;
  const int64_t group = heads / kv.kv_heads;
  return (kv.head_dim == 64 || kv.head_dim == 128) &&
         (group == 1 || group == 2 || group == 4 || group == 8) && kv.page_size > 0 &&
         (kv.page_size & (kv.page_size - 1)) == 0;
}

PagedDecodeShape decode_shape(const PagedKv& kv, int64_t seqs, int64_t heads) {
  PagedDecodeShape shape;
  shape.num_seqs = seqs;
  shape.heads = heads;
  shape.kv_heads = kv.kv_heads;
  shape.head_dim = kv.head_dim;
  shape.page_size = kv.page_size;
  return shape;
}

int grid_for(int64_t n) {
  return static_cast<int>(
      std::max<int64_t>(1, std::min(kMaxBlocks, (n + kThreads - 1) / kThreads)));
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

__global__ void to_bf16_kernel(const float* in, int64_t n, uint16_t* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] = f32_to_bf16(in[i]);
  }
}

__global__ void add_bias_kernel(float* out, const float* bias, int64_t rows, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < rows * n;
       i += int64_t{gridDim.x} * blockDim.x) {
    out[i] += bias[i % n];
  }
}

__global__ void gather_rows_kernel(const float* src, const int32_t* rows, int64_t count,
                                   int64_t width, float* dst) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < count * width;
       i += int64_t{gridDim.x} * blockDim.x) {
    dst[i] = src[int64_t{rows[i / width]} * width + i % width];
  }
}

// A row is one block of kRowThreads: at batch 1 a row is all the work there is, and one
// 256-thread block walking a 4096-wide norm serially was latency-bound (ncu, H100: 17 us).
constexpr int kRowThreads = 1024;

// One block of kRowThreads per row: x += residual (when given), then out = bf16(x *
// rsqrt(mean(x^2) + eps) * weight). Each element of x is read and written by the same thread.
__global__ void __launch_bounds__(kRowThreads)
    add_rms_norm_kernel(float* x, const float* residual, const float* weight, int64_t cols,
                        float eps, uint16_t* out) {
  float* row = x + blockIdx.x * cols;
  const float* add = residual != nullptr ? residual + blockIdx.x * cols : nullptr;
  uint16_t* dst = out + blockIdx.x * cols;
  float sum = 0.0f;
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    float v = row[i];
    if (add != nullptr) {
      v += add[i];
      row[i] = v;
    }
    sum += v * v;
  }
  __shared__ float partial[kRowThreads / 32];
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
#pragma unroll 4
  for (int64_t i = threadIdx.x; i < cols; i += blockDim.x) {
    dst[i] = f32_to_bf16(row[i] * inv * weight[i]);
  }
}

__global__ void silu_mul_kernel(const float* gate, const float* up, int64_t row_stride,
                                int64_t tokens, int64_t width, uint16_t* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < tokens * width;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t at = i / width * row_stride + i % width;
    const float g = gate[at];
    out[i] = f32_to_bf16(g / (1.0f + expf(-g)) * up[at]);
  }
}

template <class T>
__device__ __forceinline__ T to_cache(float v);
template <>
__device__ __forceinline__ uint16_t to_cache<uint16_t>(float v) {
  return f32_to_bf16(v);
}
template <>
__device__ __forceinline__ float to_cache<float>(float v) {
  return v;
}

// RoPE and the cache write in one pass. Work items per token: heads * half rotations of q (to
// q_out), kv_heads * half rotations of k (to the cache), kv_heads * head_dim copies of v (to the
// cache). FP32 angles and accurate sinf/cosf, as the CPU (and Hugging Face) compute them.
template <class T>
__global__ void rope_and_cache_kernel(QkvRows in, const int32_t* positions, int64_t tokens,
                                      int64_t heads, const float* inv_freq, PagedKv kv,
                                      const int32_t* slots, float* q_out) {
  const int64_t d = kv.head_dim, half = d / 2, width = kv.kv_heads * d;
  const int64_t q_items = heads * half, k_items = kv.kv_heads * half;
  const int64_t per_token = q_items + k_items + width;
  T* k_cache = static_cast<T*>(kv.k_pages);
  T* v_cache = static_cast<T*>(kv.v_pages);
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < tokens * per_token;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / per_token;
    int64_t item = i % per_token;
    const int32_t slot = slots[t];
    if (item >= q_items + k_items) {  // v
      item -= q_items + k_items;
      if (slot >= 0) {
        v_cache[int64_t{slot} * width + item] = to_cache<T>(in.v[t * in.kv_stride + item]);
      }
      continue;
    }
    const bool is_q = item < q_items;
    if (!is_q) item -= q_items;
    const int64_t head = item / half, pair = item % half;
    const float angle = static_cast<float>(positions[t]) * inv_freq[pair];
    const float c = cosf(angle), s = sinf(angle);
    const float* src =
        is_q ? in.q + t * in.q_stride + head * d : in.k + t * in.kv_stride + head * d;
    const float x1 = src[pair], x2 = src[pair + half];
    const float a = x1 * c - x2 * s, b = x2 * c + x1 * s;
    if (is_q) {
      float* dst = q_out + (t * heads + head) * d;
      dst[pair] = a;
      dst[pair + half] = b;
    } else if (slot >= 0) {
      T* dst = k_cache + int64_t{slot} * width + head * d;
      dst[pair] = to_cache<T>(a);
      dst[pair + half] = to_cache<T>(b);
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
  CudaDevice() {
    int count = 0;
    const cudaError_t status = cudaGetDeviceCount(&count);
    if (status != cudaSuccess) cudaGetLastError();
    SLIMRT_CHECK(status == cudaSuccess && count > 0,
                 "options: device \"cuda\": no usable CUDA device ("
                     << (status == cudaSuccess ? "none found" : cudaGetErrorString(status))
                     << "); use device \"cpu\"");
    SLIMRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    try {
      SLIMRT_CUDA_CHECK(cudaStreamCreateWithFlags(&ahead_, cudaStreamNonBlocking));
      SLIMRT_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
      SLIMRT_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
      const CublasLibrary& cublas = cublas_library();
      SLIMRT_CUBLAS_CHECK(cublas.create(&cublas_));
      SLIMRT_CUBLAS_CHECK(cublas.set_stream(cublas_, stream_));
      // An explicit workspace: cuBLAS then allocates nothing per call, as graph capture needs.
      SLIMRT_CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
      SLIMRT_CUBLAS_CHECK(cublas.set_workspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
    } catch (...) {
      release();
      throw;
    }
  }

  ~CudaDevice() override {
    // Errors here (typically a context already torn down at exit) cannot be acted upon.
    cudaStreamSynchronize(ahead_);
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

  // One kernel decodes just the groups each row touches, straight to FP32: no host round trip of
  // the ids, so decode steps capture it in their graph. No scratch.
  void embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table, int64_t hidden,
                  float* out, uint16_t* /*scratch*/) override {
    if (tokens <= 0 || hidden <= 0) return;
    df11_gather_rows_cuda(device_view(table), ids, tokens, hidden, out, stream_);
  }

  int64_t embed_df11_scratch_elements(int64_t) const override { return 0; }

  void prepare_df11(const Df11View& view) override { table_for(view.lengths); }

  void decode_df11(const Df11View& view, uint16_t* out) override { decode_on(view, out, stream_); }

  bool overlaps_decode() const override { return true; }

  void fork_ahead() override {
    SLIMRT_CUDA_CHECK(cudaEventRecord(fork_, stream_));
    SLIMRT_CUDA_CHECK(cudaStreamWaitEvent(ahead_, fork_, 0));
  }

  void decode_df11_ahead(const Df11View& view, uint16_t* out) override {
    decode_on(view, out, ahead_);
  }

  void join_ahead() override {
    SLIMRT_CUDA_CHECK(cudaEventRecord(join_, ahead_));
    SLIMRT_CUDA_CHECK(cudaStreamWaitEvent(stream_, join_, 0));
  }

  void gather_rows(const float* src, const int32_t* rows, int64_t count, int64_t width,
                   float* dst) override {
    if (count <= 0 || width <= 0) return;
    gather_rows_kernel<<<grid_for(count * width), kThreads, 0, stream_>>>(src, rows, count, width,
                                                                          dst);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols) override {
    if (rows <= 0 || cols <= 0) return;
    SLIMRT_CUDA_CHECK(cudaMemcpy2DAsync(
        dst, static_cast<size_t>(dst_stride) * sizeof(float), src,
        static_cast<size_t>(src_stride) * sizeof(float), static_cast<size_t>(cols) * sizeof(float),
        static_cast<size_t>(rows), cudaMemcpyDeviceToDevice, stream_));
  }

  MatmulInput add_rms_norm_input(float* x, const float* residual, const float* weight, int64_t rows,
                                 int64_t cols, float eps, float* /*out*/, void* scratch) override {
    if (rows > 0 && cols > 0) {
      SLIMRT_CHECK(rows <= 0x7FFFFFFF, "add_rms_norm_input: too many rows " << rows);
      add_rms_norm_kernel<<<static_cast<unsigned>(rows), kRowThreads, 0, stream_>>>(
          x, residual, weight, cols, eps, static_cast<uint16_t*>(scratch));
      SLIMRT_CUDA_CHECK(cudaGetLastError());
    }
    return {scratch, rows, cols};
  }

  MatmulInput silu_mul_input(const float* gate, const float* up, int64_t row_stride, int64_t tokens,
                             int64_t width, float* /*out*/, void* scratch) override {
    const int64_t n = tokens * width;
    if (n > 0) {
      silu_mul_kernel<<<grid_for(n), kThreads, 0, stream_>>>(gate, up, row_stride, tokens, width,
                                                             static_cast<uint16_t*>(scratch));
      SLIMRT_CUDA_CHECK(cudaGetLastError());
    }
    return {scratch, tokens, width};
  }

  int64_t matmul_input_bytes(int64_t rows, int64_t k) const override {
    return rows * k * static_cast<int64_t>(sizeof(uint16_t));
  }

  // Row-major out[rows][n] = x[rows][k] . w[n][k]^T is, column-major, out^T = w^T(T) . x^T: one
  // cublasGemmEx with A = w transposed, B = x, both BF16, FP32 compute and output.
  void matmul_bf16(const MatmulInput& x, const uint16_t* w, int64_t n, const float* bias,
                   float* out) override {
    if (x.rows <= 0 || n <= 0) return;
    SLIMRT_CHECK(x.rows <= INT32_MAX && n <= INT32_MAX && x.k <= INT32_MAX,
                 "matmul_bf16: shape " << x.rows << " x " << x.k << " x " << n << " out of range");
    const int m = static_cast<int>(n), cols = static_cast<int>(x.rows), k = static_cast<int>(x.k);
    const float alpha = 1.0f, beta = 0.0f;
    SLIMRT_CUBLAS_CHECK(cublas_library().gemm_ex(
        cublas_, CUBLAS_OP_T, CUBLAS_OP_N, m, cols, k, &alpha, w, CUDA_R_16BF, std::max(k, 1),
        x.data, CUDA_R_16BF, std::max(k, 1), &beta, out, CUDA_R_32F, m, CUBLAS_COMPUTE_32F,
        CUBLAS_GEMM_DEFAULT));
    if (bias != nullptr) {
      add_bias_kernel<<<grid_for(x.rows * n), kThreads, 0, stream_>>>(out, bias, x.rows, n);
      SLIMRT_CUDA_CHECK(cudaGetLastError());
    }
  }

  void rope_and_cache(const QkvRows& in, const int32_t* positions, int64_t tokens, int64_t heads,
                      const float* inv_freq, const PagedKv& kv, const int32_t* slots,
                      float* q_out) override {
    SLIMRT_CHECK(kv.head_dim % 2 == 0, "rope: head_dim must be even, got " << kv.head_dim);
    const int64_t n = tokens * (heads * kv.head_dim / 2 + kv.kv_heads * kv.head_dim * 3 / 2);
    if (n <= 0) return;
    if (kv.dtype == KvDtype::kBf16) {
      rope_and_cache_kernel<uint16_t><<<grid_for(n), kThreads, 0, stream_>>>(
          in, positions, tokens, heads, inv_freq, kv, slots, q_out);
    } else {
      rope_and_cache_kernel<float><<<grid_for(n), kThreads, 0, stream_>>>(
          in, positions, tokens, heads, inv_freq, kv, slots, q_out);
    }
    SLIMRT_CUDA_CHECK(cudaGetLastError());
  }

  // The batch arrays are device memory and are not read back: the engine builds them
  // consistent (the CPU backend's per-call checks of them are not repeated here).
  MatmulInput paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch,
                              int64_t heads, float scale, float* out, void* scratch,
                              void* input_scratch) override {
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
    const int64_t width = heads * kv.head_dim;
    if (batch.num_seqs <= 0) return {input_scratch, 0, width};
    if (batch.max_query_tokens == 1 && scratch != nullptr && decode_kernel_fits(kv, heads)) {
      return {decode_attention(q, kv, batch, heads, scale, scratch), batch.num_seqs, width};
    }
    if (kv.dtype == KvDtype::kBf16 &&
        paged_prefill_attention_fits(heads, kv.kv_heads, kv.head_dim, kv.page_size)) {
      PagedPrefillArgs args;
      args.q = q;
      args.k_pages = static_cast<const uint16_t*>(kv.k_pages);
      args.v_pages = static_cast<const uint16_t*>(kv.v_pages);
      args.q_indptr = batch.q_indptr;
      args.page_indptr = batch.page_indptr;
      args.page_indices = batch.page_indices;
      args.context_lens = batch.context_lens;
      args.out = static_cast<uint16_t*>(input_scratch);
      args.scale = scale;
      args.num_seqs = batch.num_seqs;
      args.heads = heads;
      args.kv_heads = kv.kv_heads;
      args.head_dim = kv.head_dim;
      args.page_size = kv.page_size;
      args.max_query_tokens = batch.max_query_tokens;
      paged_prefill_attention_cuda(args, stream_);
      return {input_scratch, batch.num_tokens, width};
    }
    constexpr unsigned kSplits = 8;  // blocks per (sequence, head): 32 query tokens at a time
    const dim3 grid(static_cast<unsigned>(batch.num_seqs), static_cast<unsigned>(heads), kSplits);
    paged_attention_kernel<<<grid, 32 * kAttentionWarps, 0, stream_>>>(q, kv, batch, heads, scale,
                                                                       out);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
    const int64_t n = batch.num_tokens * width;
    if (n > 0) {
      to_bf16_kernel<<<grid_for(n), kThreads, 0, stream_>>>(out, n,
                                                            static_cast<uint16_t*>(input_scratch));
      SLIMRT_CUDA_CHECK(cudaGetLastError());
    }
    return {input_scratch, batch.num_tokens, width};
  }

  // Layout: q and out in BF16 (align256 each), then the split-K workspace of the largest plan any
  // batch within the bounds gets (decode_attention re-plans with fewer splits past it).
  int64_t attention_scratch_bytes(int64_t max_seqs, int64_t heads, const PagedKv& kv,
                                  int64_t max_context) const override {
    if (!decode_kernel_fits(kv, heads) || max_seqs <= 0) return 0;
    int64_t workspace = 0;
    for (int64_t s = 1; s <= max_seqs; ++s) {
      workspace = std::max(
          workspace,
          paged_decode_attention_plan(decode_shape(kv, s, heads), max_context).workspace_bytes);
    }
    attention_q_bytes_ = align256(max_seqs * heads * kv.head_dim * 2);
    attention_workspace_bytes_ = workspace;
    return 2 * attention_q_bytes_ + workspace;
  }

  void sample(float* logits, int64_t rows, int64_t vocab, const SampleParams* params, int32_t* out,
              void* /*scratch*/) override {
    sample_cuda(logits, rows, vocab, params, out, stream_);
  }

  int64_t sample_scratch_bytes(int64_t, int64_t) const override { return 0; }

  // First call of a key: runs `body` (warming up whatever it builds on first use). Second: records
  // it as a CUDA graph and launches that. Later: launches the recording.
  void run_graph(uint64_t key, const std::function<void()>& body) override {
    const auto found = graphs_.find(key);
    if (found != graphs_.end() && found->second != nullptr) {
      SLIMRT_CUDA_CHECK(cudaGraphLaunch(found->second, stream_));
      return;
    }
    if (found == graphs_.end()) {
      if (graphs_.size() >= kMaxGraphs) drop_graphs();
      graphs_.emplace(key, nullptr);
      body();
      return;
    }
    SLIMRT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    cudaGraph_t graph = nullptr;
    try {
      body();
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);  // ends the capture; the error is body's
      if (graph != nullptr) cudaGraphDestroy(graph);
      throw;
    }
    SLIMRT_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    cudaGraphExec_t exec = nullptr;
    const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    SLIMRT_CUDA_CHECK(status);
    found->second = exec;
    SLIMRT_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
  }

 private:
  Df11DeviceView device_view(const Df11View& view) {
    const DeviceTable& table = table_for(view.lengths);
    Df11DeviceView d;
    d.bitstream = view.bitstream;
    d.index = view.index;
    d.signmant = view.signmant;
    d.table = table.entries;
    d.table_bits = table.bits;
    d.numel = view.numel;
    return d;
  }

  void decode_on(const Df11View& view, uint16_t* out, cudaStream_t stream) {
    if (view.numel <= 0) return;
    df11_decode_cuda(device_view(view), out, stream);
  }

  // paged_attention for decode steps: q to BF16, the split-K decode kernel; returns its BF16
  // output (in scratch).
  const uint16_t* decode_attention(const float* q, const PagedKv& kv, const PagedBatch& batch,
                                   int64_t heads, float scale, void* scratch) {
    const int64_t n = batch.num_seqs * heads * kv.head_dim;
    SLIMRT_CHECK(
        n * 2 <= attention_q_bytes_,
        "paged_attention: " << batch.num_seqs << " sequences exceed the scratch planned at load");
    auto* q16 = static_cast<uint16_t*>(scratch);
    auto* out16 = reinterpret_cast<uint16_t*>(static_cast<char*>(scratch) + attention_q_bytes_);
    void* workspace = static_cast<char*>(scratch) + 2 * attention_q_bytes_;
    const PagedDecodeShape shape = decode_shape(kv, batch.num_seqs, heads);
    PagedDecodePlan plan = paged_decode_attention_plan(shape, batch.max_context);
    while (plan.workspace_bytes > attention_workspace_bytes_ && plan.splits > 1) {
      plan = paged_decode_attention_plan(shape, batch.max_context, plan.splits / 2);
    }
    to_bf16_kernel<<<grid_for(n), kThreads, 0, stream_>>>(q, n, q16);
    SLIMRT_CUDA_CHECK(cudaGetLastError());
    PagedDecodeArgs args;
    args.q = q16;
    args.k_pages = static_cast<const uint16_t*>(kv.k_pages);
    args.v_pages = static_cast<const uint16_t*>(kv.v_pages);
    args.page_indptr = batch.page_indptr;
    args.page_indices = batch.page_indices;
    args.context_lens = batch.context_lens;
    args.out = out16;
    args.scale = scale;
    paged_decode_attention_cuda(plan, args, workspace, plan.workspace_bytes, stream_);
    return out16;
  }

  void drop_graphs() {
    for (auto& [key, exec] : graphs_) {
      if (exec != nullptr) cudaGraphExecDestroy(exec);
    }
    graphs_.clear();
  }

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
    // On this device's stream, waited for: a plain cudaMemcpy from pageable memory may return
    // before its DMA lands, and the legacy stream it uses does not order this device's
    // non-blocking streams, so a decode could read the table half written.
    try {
      copy_to_device(entry.entries, table.entries.data(), static_cast<int64_t>(bytes));
    } catch (...) {
      cudaFree(entry.entries);
      throw;
    }
    return tables_.emplace(lengths, entry).first->second;
  }

  void drop_tables() {
    for (auto& [key, table] : tables_) cudaFree(table.entries);
    tables_.clear();
  }

  void release() {
    drop_graphs();
    drop_tables();
    if (cublas_ != nullptr) cublas_library().destroy(cublas_);
    cublas_ = nullptr;
    if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
    cublas_workspace_ = nullptr;
    if (join_ != nullptr) cudaEventDestroy(join_);
    if (fork_ != nullptr) cudaEventDestroy(fork_);
    if (ahead_ != nullptr) cudaStreamDestroy(ahead_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    join_ = fork_ = nullptr;
    ahead_ = stream_ = nullptr;
  }

  cudaStream_t stream_ = nullptr;
  cudaStream_t ahead_ = nullptr;  // decode_df11_ahead's stream
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  std::map<uint64_t, cudaGraphExec_t> graphs_;  // null: seen once, not recorded yet
  // The scratch layout of the last attention_scratch_bytes() call (one executor per device):
  // q and out of max_seqs sequences in BF16, then the split-K workspace.
  mutable int64_t attention_q_bytes_ = 0;
  mutable int64_t attention_workspace_bytes_ = 0;
  std::map<const uint8_t*, DeviceTable> tables_;
};

}  // namespace

std::unique_ptr<Device> make_cuda_device() { return std::make_unique<CudaDevice>(); }

}  // namespace slimrt
