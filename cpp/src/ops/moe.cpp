#include "ops/moe.h"

#include <algorithm>

#include "arena.h"
#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "ops/matmul_bf16.h"
#include "ops/matmul_df11.h"
#include "ops/silu_mul.h"

namespace slimrt::ops {
namespace {

// The most experts a token may take (cpu::moe_combine, cuda/moe.cu).
constexpr int64_t kMaxTopK = 64;

void check_layer(const MoeLayer& l) {
  SLIMRT_CHECK(l.router != nullptr && l.gate != nullptr && l.up != nullptr && l.down != nullptr,
               "moe: a null pointer");
  SLIMRT_CHECK(
      l.experts > 0 && l.top_k > 0 && l.top_k <= l.experts && l.hidden > 0 && l.inter > 0,
      "moe: " << l.top_k << " of " << l.experts << " experts of " << l.hidden << " x " << l.inter);
  SLIMRT_CHECK_AS(
      ErrorCategory::kUnsupported, l.top_k <= kMaxTopK,
      "moe: " << l.top_k << " experts per token; at most " << kMaxTopK << " are supported");
  SLIMRT_CHECK(l.router->rows == l.experts && l.router->cols == l.hidden,
               "moe: the router is " << l.router->rows << " x " << l.router->cols << ", not "
                                     << l.experts << " x " << l.hidden);
  for (int64_t e = 0; e < l.experts; ++e) {
    SLIMRT_CHECK(l.gate[e].rows == l.inter && l.gate[e].cols == l.hidden &&
                     l.up[e].rows == l.inter && l.up[e].cols == l.hidden &&
                     l.down[e].rows == l.hidden && l.down[e].cols == l.inter,
                 "moe: expert " << e << " does not have the layer's shapes");
  }
}

// The CPU's scratch, carved in this order.
struct CpuScratch {
  float* logits;   // [T][E]
  int32_t* ids;    // [A]: A = T * top_k assignments, token-major
  float* weights;  // [A]
  int32_t* rows;   // [A]: the row of each assignment in the grouped buffers below
  int32_t* order;  // [A]: the assignments, grouped by expert (ascending), tokens ascending
  int32_t* start;  // [E + 1]: expert e's rows are [start[e], start[e + 1])
  float* xs;       // [A][H]: the routed tokens' inputs
  float* gate_up;  // [A][2I]
  float* act;      // [A][I]
  float* ys;       // [A][H]: each expert's output for its tokens
  uint16_t* df11;  // cpu::matmul_df11 scratch
};

int64_t df11_elements(Device& device, const MoeLayer& l) {
  ThreadPool& pool = cpu_device(device).pool();
  return std::max(cpu::matmul_df11_scratch_elements(l.hidden, pool),
                  cpu::matmul_df11_scratch_elements(l.inter, pool));
}

CpuScratch carve(Device& device, void* base, int64_t tokens, const MoeLayer& l, int64_t* bytes) {
  const int64_t a = tokens * l.top_k;
  char* at = static_cast<char*>(base);
  int64_t used = 0;
  auto take = [&](int64_t n) {
    void* p = at == nullptr ? nullptr : at + used;
    used += align_up(n);
    return p;
  };
  CpuScratch s;
  s.logits = static_cast<float*>(take(tokens * l.experts * 4));
  s.ids = static_cast<int32_t*>(take(a * 4));
  s.weights = static_cast<float*>(take(a * 4));
  s.rows = static_cast<int32_t*>(take(a * 4));
  s.order = static_cast<int32_t*>(take(a * 4));
  s.start = static_cast<int32_t*>(take((l.experts + 1) * 4));
  s.xs = static_cast<float*>(take(a * l.hidden * 4));
  s.gate_up = static_cast<float*>(take(a * 2 * l.inter * 4));
  s.act = static_cast<float*>(take(a * l.inter * 4));
  s.ys = static_cast<float*>(take(a * l.hidden * 4));
  s.df11 = static_cast<uint16_t*>(take(df11_elements(device, l) * 2));
  if (bytes != nullptr) *bytes = used;
  return s;
}

// out = x · mᵀ for a matrix in either form (DF11 multiplied as it decodes).
void multiply(Device& device, const MatmulInput& x, const Matrix& m, float* out, uint16_t* df11) {
  if (m.is_df11) {
    const Df11Product product{m.df11, m.rows, nullptr, out};
    matmul_df11(device, x, &product, 1, df11);
  } else {
    matmul_bf16(device, x, m.dense, m.rows, nullptr, out);
  }
}

void moe_cpu(Device& device, const MatmulInput& x, const MoeLayer& l, float* out, void* scratch) {
  const int64_t T = x.rows, H = l.hidden, I = l.inter, K = l.top_k, E = l.experts;
  const int64_t A = T * K;
  const CpuScratch s = carve(device, scratch, T, l, nullptr);
  ThreadPool& pool = cpu_device(device).pool();
  multiply(device, x, *l.router, s.logits, s.df11);
  cpu::moe_route(s.logits, T, E, K, l.renormalize, s.ids, s.weights);

  // Counting sort of the assignments by expert, tokens in order within each.
  std::fill(s.start, s.start + E + 1, 0);
  for (int64_t a = 0; a < A; ++a) ++s.start[s.ids[a] + 1];
  for (int64_t e = 0; e < E; ++e) s.start[e + 1] += s.start[e];
  for (int64_t a = 0; a < A; ++a) {
    const int32_t row = s.start[s.ids[a]]++;
    s.rows[a] = row;
    s.order[row] = static_cast<int32_t>(a / K);  // the token whose input the row takes
  }
  for (int64_t e = E; e > 0; --e) s.start[e] = s.start[e - 1];
  s.start[0] = 0;
  cpu::gather_rows(static_cast<const float*>(x.data), s.order, A, H, s.xs);

  for (int64_t e = 0; e < E; ++e) {
    const int64_t first = s.start[e], n = s.start[e + 1] - first;
    if (n == 0) continue;
    const Matrix& gate = l.gate[e];
    const Matrix& up = l.up[e];
    const MatmulInput in{s.xs + first * H, n, H};
    float* gu = s.gate_up + first * 2 * I;
    MatmulInput activated;
    if (!gate.is_df11 && !up.is_df11 && up.dense == gate.dense + I * H) {
      matmul_bf16(device, in, gate.dense, 2 * I, nullptr, gu);  // back to back: one matmul
      activated = silu_mul_input(device, gu, gu + I, 2 * I, n, I, s.act + first * I, nullptr);
    } else {
      multiply(device, in, gate, gu, s.df11);
      multiply(device, in, up, gu + n * I, s.df11);
      activated = silu_mul_input(device, gu, gu + n * I, I, n, I, s.act + first * I, nullptr);
    }
    multiply(device, activated, l.down[e], s.ys + first * H, s.df11);
  }
  cpu::moe_combine(s.ys, s.ids, s.weights, s.rows, T, K, H, out, pool);
}

// CUDA takes dense experts at one stride: expert e's gate at gate[0] + e * stride, and so on.
int64_t expert_stride(const MoeLayer& l) {
  bool dense = !l.router->is_df11;
  for (int64_t e = 0; e < l.experts; ++e) {
    dense = dense && !l.gate[e].is_df11 && !l.up[e].is_df11 && !l.down[e].is_df11;
  }
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, dense,
                  "moe: DF11 experts or routers on CUDA are not implemented; load the model "
                  "with weights=\"bf16\"");
  const int64_t stride = l.experts > 1 ? l.gate[1].dense - l.gate[0].dense : 0;
  for (int64_t e = 0; e < l.experts; ++e) {
    SLIMRT_CHECK_AS(ErrorCategory::kUnsupported,
                    l.gate[e].dense == l.gate[0].dense + e * stride &&
                        l.up[e].dense == l.up[0].dense + e * stride &&
                        l.down[e].dense == l.down[0].dense + e * stride,
                    "moe: the experts' matrices do not lie at one stride");
  }
  return stride;
}

}  // namespace

int64_t moe_scratch_bytes(Device& device, int64_t tokens, const MoeLayer& layer) {
  check_layer(layer);
  switch (device.backend()) {
    case Backend::kCpu: {
      int64_t bytes = 0;
      carve(device, nullptr, tokens, layer, &bytes);
      return bytes;
    }
    case Backend::kCuda:
      expert_stride(layer);
      return SLIMRT_CUDA(
          cuda::moe_scratch_bytes(tokens, layer.experts, layer.top_k, layer.hidden, layer.inter));
  }
  return 0;
}

void moe(Device& device, const MatmulInput& x, const MoeLayer& layer, float* out, void* scratch) {
  check_layer(layer);
  SLIMRT_CHECK(x.rows >= 0 && x.k == layer.hidden,
               "moe: input rows of " << x.k << ", the layer takes " << layer.hidden);
  if (x.rows == 0) return;
  SLIMRT_CHECK(x.data != nullptr && out != nullptr && scratch != nullptr, "moe: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return moe_cpu(device, x, layer, out, scratch);
    case Backend::kCuda: {
      const int64_t stride = expert_stride(layer);
      return SLIMRT_CUDA(cuda::moe(cuda_device(device), x, layer.router->dense, layer.gate[0].dense,
                                   layer.up[0].dense, layer.down[0].dense, stride, layer.experts,
                                   layer.top_k, layer.hidden, layer.inter, layer.renormalize, out,
                                   scratch));
    }
  }
}

}  // namespace slimrt::ops
