#include <cstring>

#include "kernels.h"

namespace slimrt::cpu {

void gather_rows(const float* src, const int32_t* rows, int64_t count, int64_t width, float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(dst + i * width, src + int64_t{rows[i]} * width,
                static_cast<size_t>(width) * sizeof(float));
  }
}

void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride, int64_t rows,
                int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * dst_stride, src + r * src_stride,
                static_cast<size_t>(cols) * sizeof(float));
  }
}

}  // namespace slimrt::cpu
