// The mixture-of-experts MLP of one layer (Mixtral, Qwen3-MoE), fused: the router's logits, each
// token's top-k experts, every expert's SwiGLU over the tokens routed to it, and the weighted
// sum (cpu/moe.cpp, cuda/moe.cu).
//
//   const MoeLayer layer = {&w.router, w.expert_gate.data(), ..., experts, top_k, H, I, true};
//   ops::moe(device, normed, layer, h, scratch);   // scratch: moe_scratch_bytes(device, T, layer)
//
// Routing is transformers': p = softmax(x · routerᵀ) in FP32, the top_k largest (ties to the
// lower expert), divided by their sum if `renormalize`. The CPU gathers the tokens of each
// expert and runs one gate|up matmul and one down matmul per expert that has any (dense BF16,
// or DF11 multiplied as it decodes), then adds each token's expert outputs in ascending expert
// order, as transformers' index_add_ does. CUDA (dense BF16 only: a layer's experts lie at one
// stride in the weights arena) runs a fixed set of launches for any routing, so a decode step
// can be recorded as a graph: one warp per output row of each (token, expert) pair.
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"
#include "weights.h"

namespace slimrt::ops {

struct MoeLayer {
  const Matrix* router = nullptr;  // [experts][hidden]
  const Matrix* gate = nullptr;    // [experts] of [inter][hidden]
  const Matrix* up = nullptr;      // [experts] of [inter][hidden]
  const Matrix* down = nullptr;    // [experts] of [hidden][inter]
  int64_t experts = 0;
  int64_t top_k = 0;
  int64_t hidden = 0;
  int64_t inter = 0;
  bool renormalize = true;
};

// Bytes of scratch moe() needs for up to `tokens` rows. Throws kUnsupported for a layer the
// device cannot run (CUDA: DF11 matrices, or experts not at one stride).
int64_t moe_scratch_bytes(Device& device, int64_t tokens, const MoeLayer& layer);

// out[t] = sum over token t's chosen experts e of p_e * down_e(silu(gate_e x_t) * up_e x_t), FP32.
// x is the matmul input (ops/matmul_bf16.h) of x.rows tokens of layer.hidden; out may be the
// buffer x was produced into (x is read before out is written).
void moe(Device& device, const MatmulInput& x, const MoeLayer& layer, float* out, void* scratch);

}  // namespace slimrt::ops
