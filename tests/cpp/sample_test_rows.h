// Rows of logits and sampling parameters that stress the sampling rules (sample_rules.h): the
// CPU sampler is checked against the rules on them (test_cpu_kernels.cpp) and ops::sample on
// every backend against the rules and the CPU backend (test_backend_ops.cpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "kernel_args.h"

namespace slimrt::test {

// Appends, for every shape of row times every parameter set, two rows (two counters) to
// `logits` ([rows][vocab]) and `params`.
inline void sample_test_rows(int64_t vocab, uint64_t seed, std::vector<float>& logits,
                             std::vector<SampleParams>& params) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 3.0f);
  auto shape = [&](int kind, int64_t i) -> float {
    switch (kind) {
      case 0:
        return normal(rng);  // spread
      case 1:
        return std::round(normal(rng) * 2.0f) / 2.0f;  // ties on a grid of 0.5
      case 2:
        return i % 7 == 3 ? nan : i % 11 == 5 ? -inf : normal(rng);
      case 3:
        return 0.0f;  // flat: every token tied
      case 4:
        return i == vocab / 3 ? 30.0f : normal(rng) / 3.0f;  // one dominant token
      case 5:
        return -inf;  // no finite logit
      case 6:
        return i == vocab / 2 ? inf : normal(rng);  // an infinite logit
      default:
        return static_cast<float>(rng() % 4);  // four values, heavy ties
    }
  };
  struct Set {
    float temperature;
    int32_t top_k;
    float top_p;
    float min_p;
  };
  const int32_t almost_all = static_cast<int32_t>(vocab - 1);
  const Set sets[] = {
      {1.0f, 0, 1.0f, 0.0f},   {0.7f, 40, 1.0f, 0.0f},         {1.3f, 0, 0.9f, 0.0f},
      {0.8f, 50, 0.95f, 0.0f}, {1.0f, 0, 1.0f, 0.05f},         {0.6f, 200, 0.5f, 0.02f},
      {2.0f, 0, 0.3f, 0.0f},   {1.0f, almost_all, 1.0f, 0.0f}, {0.0f, 0, 1.0f, 0.0f},
      {1.0f, 1, 1.0f, 0.0f},   {1.0f, 0, 1e-6f, 0.0f},         {0.05f, 0, 0.99f, 0.0f},
      {1.0f, 7, 0.5f, 0.5f},   {1.0f, 8, 0.5f, 0.0f},  // (a flat row reaches top_p exactly)
      {1e-40f, 0, 0.9f, 0.0f},                         // 1 / temperature is infinite
  };
  for (int kind = 0; kind <= 7; ++kind) {
    for (const Set& set : sets) {
      for (uint64_t counter : {uint64_t{0}, uint64_t{1} << 40 | 17}) {
        for (int64_t i = 0; i < vocab; ++i) logits.push_back(shape(kind, i));
        SampleParams p;
        p.temperature = set.temperature;
        p.top_k = set.top_k;
        p.top_p = set.top_p;
        p.min_p = set.min_p;
        p.seed = seed + params.size();
        p.counter = counter;
        params.push_back(p);
      }
    }
  }
}

}  // namespace slimrt::test
