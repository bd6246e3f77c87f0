#include "bf16.h"
#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden, float* out,
           ThreadPool& pool) {
  parallel_over(pool, tokens, hidden, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const uint16_t* row = table + static_cast<int64_t>(ids[t]) * hidden;
      float* o = out + t * hidden;
      for (int64_t i = 0; i < hidden; ++i) o[i] = bf16_to_f32(row[i]);
    }
  });
}

}  // namespace slimrt::cpu
