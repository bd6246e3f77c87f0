#include <algorithm>

#include "../fast_exp.h"
#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void silu_mul(const float* gate, const float* up, int64_t row_stride, int64_t tokens, int64_t width,
              float* out, ThreadPool& pool) {
  // Chunks of a row, not tokens, are split: one decode token is as wide as the MLP gets.
  constexpr int64_t kChunk = 1024;
  const int64_t per_row = (width + kChunk - 1) / kChunk;
  parallel_over(pool, tokens * per_row, 16 * kChunk, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const int64_t t = c / per_row;
      const int64_t first = c % per_row * kChunk;
      const int64_t last = std::min(width, first + kChunk);
      const float* g = gate + t * row_stride;
      const float* u = up + t * row_stride;
      float* o = out + t * width;
      for (int64_t i = first; i < last; ++i) o[i] = g[i] / (1.0f + exp_fast(-g[i])) * u[i];
    }
  });
}

}  // namespace slimrt::cpu
