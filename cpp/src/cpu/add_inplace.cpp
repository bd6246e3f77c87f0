#include <algorithm>

#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void add_inplace(float* x, const float* y, int64_t n, ThreadPool& pool) {
  constexpr int64_t kChunk = 4096;
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  parallel_over(pool, chunks, kChunk, [&](int64_t begin, int64_t end) {
    const int64_t last = std::min(n, end * kChunk);
    for (int64_t i = begin * kChunk; i < last; ++i) x[i] += y[i];
  });
}

}  // namespace slimrt::cpu
