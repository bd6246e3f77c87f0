#include <algorithm>

#include "fast_exp.h"
#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void silu_mul(const float* gate, const float* up, int64_t tokens, int64_t width, float* out,
              ThreadPool& pool) {
  const int64_t n = tokens * width;
  // Elements, not tokens, are split: one decode token is as wide as the MLP gets.
  constexpr int64_t kChunk = 1024;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_over(pool, chunks, 16 * kChunk, [&](int64_t begin, int64_t end) {
    const int64_t last = std::min(n, end * kChunk);
    for (int64_t i = begin * kChunk; i < last; ++i) {
      const float g = gate[i];
      out[i] = g / (1.0f + exp_fast(-g)) * up[i];
    }
  });
}

}  // namespace slimrt::cpu
