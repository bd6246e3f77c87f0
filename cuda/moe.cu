// The CUDA kernel of ops::moe: dense BF16 experts at one stride. A fixed set of launches for any
// routing (a decode step records it as a graph): routing, one warp per output row of each
// (token, expert) pair for gate|up and for down, then the weighted sum per token in ascending
// expert order. The input rows are the BF16 matmul input, as cuBLAS would read them.
#include <cuda_runtime.h>

#include <cstdint>

#include "arena.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

constexpr int kWarps = kThreads / 32;

struct Scratch {
  float* logits;   // [T][E]
  int32_t* ids;    // [T][K], descending probability
  float* weights;  // [T][K]
  float* act;      // [T * K][I]
  float* ys;       // [T * K][H]
};

Scratch carve(void* base, int64_t tokens, int64_t experts, int64_t top_k, int64_t hidden,
              int64_t inter, int64_t* bytes) {
  const int64_t a = tokens * top_k;
  char* at = static_cast<char*>(base);
  int64_t used = 0;
  auto take = [&](int64_t n) {
    void* p = at == nullptr ? nullptr : at + used;
    used += align_up(n);
    return p;
  };
  Scratch s;
  s.logits = static_cast<float*>(take(tokens * experts * 4));
  s.ids = static_cast<int32_t*>(take(a * 4));
  s.weights = static_cast<float*>(take(a * 4));
  s.act = static_cast<float*>(take(a * inter * 4));
  s.ys = static_cast<float*>(take(a * hidden * 4));
  if (bytes != nullptr) *bytes = used;
  return s;
}

// The dot product of a BF16 input row and a BF16 weight row, summed by one warp.
__device__ float warp_dot(const uint16_t* x, const uint16_t* w, int64_t k) {
  float sum = 0.0f;
  for (int64_t i = threadIdx.x % 32; i < k; i += 32) sum += bf16_to_f32(x[i]) * bf16_to_f32(w[i]);
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  return sum;
}

__device__ float warp_dot(const float* x, const uint16_t* w, int64_t k) {
  float sum = 0.0f;
  for (int64_t i = threadIdx.x % 32; i < k; i += 32) {
    sum += bf16_to_f32(f32_to_bf16(x[i])) * bf16_to_f32(w[i]);
  }
  for (int offset = 16; offset > 0; offset /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
  return sum;
}

// logits[t][e]: one warp per (token, expert).
__global__ void router_kernel(const uint16_t* x, const uint16_t* router, int64_t tokens,
                              int64_t experts, int64_t hidden, float* logits) {
  const int64_t item = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  if (item >= tokens * experts) return;
  const int64_t t = item / experts, e = item % experts;
  const float sum = warp_dot(x + t * hidden, router + e * hidden, hidden);
  if (threadIdx.x % 32 == 0) logits[item] = sum;
}

// One thread per token: cpu::moe_route's rule.
__global__ void route_kernel(const float* logits, int64_t tokens, int64_t experts, int64_t top_k,
                             bool renormalize, int32_t* ids, float* weights) {
  const int64_t t = blockIdx.x * int64_t{blockDim.x} + threadIdx.x;
  if (t >= tokens) return;
  const float* row = logits + t * experts;
  float top = row[0];
  for (int64_t e = 1; e < experts; ++e) top = fmaxf(top, row[e]);
  float sum = 0.0f;
  for (int64_t e = 0; e < experts; ++e) sum += expf(row[e] - top);
  int32_t* id = ids + t * top_k;
  float* w = weights + t * top_k;
  float chosen = 0.0f;
  for (int64_t j = 0; j < top_k; ++j) {
    int32_t best = -1;
    for (int64_t e = 0; e < experts; ++e) {
      bool taken = false;
      for (int64_t i = 0; i < j; ++i) taken = taken || id[i] == e;
      if (!taken && (best < 0 || row[e] > row[best])) best = static_cast<int32_t>(e);
    }
    id[j] = best;
    w[j] = expf(row[best] - top) / sum;
    chosen += w[j];
  }
  if (renormalize) {
    for (int64_t j = 0; j < top_k; ++j) w[j] /= chosen;
  }
}

// act[a][i] = silu(gate_e[i] · x_t) * (up_e[i] · x_t), a = t * K + j, e = ids[a].
__global__ void gate_up_kernel(const uint16_t* x, const int32_t* ids, const uint16_t* gate,
                               const uint16_t* up, int64_t stride, int64_t assignments,
                               int64_t top_k, int64_t hidden, int64_t inter, float* act) {
  const int64_t item = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  if (item >= assignments * inter) return;
  const int64_t a = item / inter, i = item % inter;
  const int64_t e = ids[a];
  const uint16_t* row = x + a / top_k * hidden;
  const float g = warp_dot(row, gate + e * stride + i * hidden, hidden);
  const float u = warp_dot(row, up + e * stride + i * hidden, hidden);
  if (threadIdx.x % 32 == 0) act[item] = g / (1.0f + expf(-g)) * u;
}

// ys[a][h] = down_e[h] · act[a] (act rounded to BF16, as a matmul input would be).
__global__ void down_kernel(const float* act, const int32_t* ids, const uint16_t* down,
                            int64_t stride, int64_t assignments, int64_t hidden, int64_t inter,
                            float* ys) {
  const int64_t item = blockIdx.x * int64_t{kWarps} + threadIdx.x / 32;
  if (item >= assignments * hidden) return;
  const int64_t a = item / hidden, h = item % hidden;
  const float sum = warp_dot(act + a * inter, down + ids[a] * stride + h * inter, inter);
  if (threadIdx.x % 32 == 0) ys[item] = sum;
}

// out[t][h] = sum of weights * ys over token t's experts, in ascending expert order.
__global__ void combine_kernel(const float* ys, const int32_t* ids, const float* weights,
                               int64_t tokens, int64_t top_k, int64_t hidden, float* out) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < tokens * hidden;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / hidden, h = i % hidden;
    const int32_t* id = ids + t * top_k;
    float sum = 0.0f;
    int32_t last = -1;
    for (int64_t n = 0; n < top_k; ++n) {
      int64_t next = -1;  // the choice with the smallest expert above `last`
      for (int64_t j = 0; j < top_k; ++j) {
        if (id[j] > last && (next < 0 || id[j] < id[next])) next = j;
      }
      last = id[next];
      sum += ys[(t * top_k + next) * hidden + h] * weights[t * top_k + next];
    }
    out[i] = sum;
  }
}

int blocks_for_warps(int64_t items) { return static_cast<int>((items + kWarps - 1) / kWarps); }

}  // namespace

int64_t moe_scratch_bytes(int64_t tokens, int64_t experts, int64_t top_k, int64_t hidden,
                          int64_t inter) {
  int64_t bytes = 0;
  carve(nullptr, tokens, experts, top_k, hidden, inter, &bytes);
  return bytes;
}

void moe(CudaDevice& device, const MatmulInput& x, const uint16_t* router, const uint16_t* gate,
         const uint16_t* up, const uint16_t* down, int64_t expert_stride, int64_t experts,
         int64_t top_k, int64_t hidden, int64_t inter, bool renormalize, float* out,
         void* scratch) {
  const int64_t T = x.rows, A = T * top_k;
  const Scratch s = carve(scratch, T, experts, top_k, hidden, inter, nullptr);
  const auto* in = static_cast<const uint16_t*>(x.data);
  cudaStream_t stream = device.stream();
  router_kernel<<<blocks_for_warps(T * experts), kThreads, 0, stream>>>(in, router, T, experts,
                                                                        hidden, s.logits);
  route_kernel<<<static_cast<int>((T + kThreads - 1) / kThreads), kThreads, 0, stream>>>(
      s.logits, T, experts, top_k, renormalize, s.ids, s.weights);
  gate_up_kernel<<<blocks_for_warps(A * inter), kThreads, 0, stream>>>(
      in, s.ids, gate, up, expert_stride, A, top_k, hidden, inter, s.act);
  down_kernel<<<blocks_for_warps(A * hidden), kThreads, 0, stream>>>(
      s.act, s.ids, down, expert_stride, A, hidden, inter, s.ys);
  combine_kernel<<<grid_for(T * hidden), kThreads, 0, stream>>>(s.ys, s.ids, s.weights, T, top_k,
                                                                hidden, out);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace slimrt::cuda
