// RMSNorm of each attention head's slice of q or k, in place, before RoPE (Qwen3's q_norm and
// k_norm; cpu/rms_norm.cpp, cuda/head_rms_norm.cu).
//
//   ops::head_rms_norm(device, rows.q, tokens, rows.q_stride, heads, head_dim, w.q_norm, eps);
#pragma once

#include <cstdint>

#include "device.h"

namespace slimrt::ops {

// For every token t < tokens and head h < heads, the head_dim values at
// x + t * stride + h * head_dim become RMSNorm(values) * weight[0 .. head_dim).
void head_rms_norm(Device& device, float* x, int64_t tokens, int64_t stride, int64_t heads,
                   int64_t head_dim, const float* weight, float eps);

}  // namespace slimrt::ops
