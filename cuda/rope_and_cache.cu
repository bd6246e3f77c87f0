// The CUDA kernel of ops::rope_and_cache: RoPE and the cache write in one pass.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

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

// Work items per token: heads * half rotations of q (to q_out), kv_heads * half rotations of k
// (to the cache), kv_heads * head_dim copies of v (to the cache). FP32 angles and accurate
// sinf/cosf, as the CPU (and Hugging Face) compute them.
template <class T>
__global__ void rope_and_cache_kernel(QkvRows in, const int32_t* positions, int64_t tokens,
                                      int64_t heads, const float* inv_freq, PagedKv kv,
                                      const int32_t* slots, float* q_out,
                                      const int32_t* freq_sets) {
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
    const float* freq = inv_freq + (freq_sets != nullptr ? freq_sets[t] * half : 0);
    const float angle = static_cast<float>(positions[t]) * freq[pair];
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

}  // namespace

void rope_and_cache(CudaDevice& device, const QkvRows& in, const int32_t* positions, int64_t tokens,
                    int64_t heads, const float* inv_freq, const PagedKv& kv, const int32_t* slots,
                    float* q_out, const int32_t* freq_sets) {
  const int64_t n = tokens * (heads * kv.head_dim / 2 + kv.kv_heads * kv.head_dim * 3 / 2);
  if (n <= 0) return;
  if (kv.dtype == KvDtype::kBf16) {
    rope_and_cache_kernel<uint16_t><<<grid_for(n), kThreads, 0, device.stream()>>>(
        in, positions, tokens, heads, inv_freq, kv, slots, q_out, freq_sets);
  } else {
    rope_and_cache_kernel<float><<<grid_for(n), kThreads, 0, device.stream()>>>(
        in, positions, tokens, heads, inv_freq, kv, slots, q_out, freq_sets);
  }
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace slimrt::cuda
