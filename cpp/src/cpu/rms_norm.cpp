#include <cmath>

#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {
namespace {

// One row: the sum of squares in double, as accurate as the FP32 reference for any width, and
// independent lanes let the compiler vectorise it.
void normalize_row(const float* xr, const float* weight, int64_t cols, float eps, float* o) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= cols; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) {
      lanes[l] += static_cast<double>(xr[i + l]) * static_cast<double>(xr[i + l]);
    }
  }
  for (; i < cols; ++i) lanes[0] += static_cast<double>(xr[i]) * static_cast<double>(xr[i]);
  double sum = 0.0;
  for (double v : lanes) sum += v;
  const float inv = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(cols) + eps));
  for (int64_t j = 0; j < cols; ++j) o[j] = xr[j] * inv * weight[j];
}

}  // namespace

void rms_norm(const float* x, const float* weight, int64_t rows, int64_t cols, float eps,
              float* out, ThreadPool& pool) {
  parallel_over(pool, rows, 3 * cols, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      normalize_row(x + r * cols, weight, cols, eps, out + r * cols);
    }
  });
}

void head_rms_norm(float* x, int64_t tokens, int64_t stride, int64_t heads, int64_t head_dim,
                   const float* weight, float eps, ThreadPool& pool) {
  parallel_over(pool, tokens * heads, 3 * head_dim, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* row = x + (r / heads) * stride + (r % heads) * head_dim;
      normalize_row(row, weight, head_dim, eps, row);
    }
  });
}

}  // namespace slimrt::cpu
