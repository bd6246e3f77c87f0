#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void rope(float* x, int64_t row_stride, const int32_t* positions, int64_t tokens, int64_t heads,
          int64_t head_dim, const float* inv_freq, ThreadPool& pool, const int32_t* freq_sets) {
  const int64_t half = head_dim / 2;
  parallel_over(pool, tokens, 4 * heads * head_dim, [&](int64_t begin, int64_t end) {
    // cos/sin are computed once per token and pair, then applied to every head.
    constexpr int64_t kPairs = 128;
    float cs[kPairs];
    float sn[kPairs];
    for (int64_t t = begin; t < end; ++t) {
      // The angle is rounded to FP32 before cos/sin, as Hugging Face computes it: at positions
      // in the thousands that rounding moves the result by more than FP32 noise.
      const float pos = static_cast<float>(positions[t]);
      const float* freq = inv_freq + (freq_sets != nullptr ? freq_sets[t] * half : 0);
      for (int64_t i0 = 0; i0 < half; i0 += kPairs) {
        const int64_t np = std::min(kPairs, half - i0);
        for (int64_t i = 0; i < np; ++i) {
          const float angle = pos * freq[i0 + i];
          cs[i] = std::cos(angle);
          sn[i] = std::sin(angle);
        }
        for (int64_t h = 0; h < heads; ++h) {
          float* a = x + t * row_stride + h * head_dim + i0;
          float* b = a + half;
          for (int64_t i = 0; i < np; ++i) {
            const float x1 = a[i];
            const float x2 = b[i];
            a[i] = x1 * cs[i] - x2 * sn[i];
            b[i] = x2 * cs[i] + x1 * sn[i];
          }
        }
      }
    }
  });
}

}  // namespace slimrt::cpu
