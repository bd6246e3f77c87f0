#include <algorithm>
#include <cmath>

#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {

void moe_route(const float* logits, int64_t tokens, int64_t experts, int64_t top_k,
               bool renormalize, int32_t* ids, float* weights) {
  for (int64_t t = 0; t < tokens; ++t) {
    const float* row = logits + t * experts;
    const float top = *std::max_element(row, row + experts);
    float sum = 0.0f;
    for (int64_t e = 0; e < experts; ++e) sum += std::exp(row[e] - top);
    int32_t* id = ids + t * top_k;
    float* w = weights + t * top_k;
    // Selection by logit: softmax is monotonic, so the same experts as by probability.
    for (int64_t j = 0; j < top_k; ++j) {
      int32_t best = -1;
      for (int64_t e = 0; e < experts; ++e) {
        if (std::find(id, id + j, static_cast<int32_t>(e)) != id + j) continue;
        if (best < 0 || row[e] > row[best]) best = static_cast<int32_t>(e);
      }
      id[j] = best;
      w[j] = std::exp(row[best] - top) / sum;
    }
    if (!renormalize) continue;
    float chosen = 0.0f;
    for (int64_t j = 0; j < top_k; ++j) chosen += w[j];
    for (int64_t j = 0; j < top_k; ++j) w[j] /= chosen;
  }
}

void moe_combine(const float* expert_out, const int32_t* ids, const float* weights,
                 const int32_t* rows, int64_t tokens, int64_t top_k, int64_t hidden, float* out,
                 ThreadPool& pool) {
  parallel_over(pool, tokens, top_k * hidden, [&](int64_t begin, int64_t end) {
    constexpr int64_t kMaxTopK = 64;
    int64_t by_expert[kMaxTopK];
    for (int64_t t = begin; t < end; ++t) {
      const int32_t* id = ids + t * top_k;
      for (int64_t j = 0; j < top_k; ++j) by_expert[j] = j;
      std::sort(by_expert, by_expert + top_k, [&](int64_t a, int64_t b) { return id[a] < id[b]; });
      float* o = out + t * hidden;
      std::fill(o, o + hidden, 0.0f);
      for (int64_t n = 0; n < top_k; ++n) {
        const int64_t j = by_expert[n];
        const float w = weights[t * top_k + j];
        const float* y = expert_out + int64_t{rows[t * top_k + j]} * hidden;
        for (int64_t i = 0; i < hidden; ++i) o[i] += y[i] * w;
      }
    }
  });
}

}  // namespace slimrt::cpu
