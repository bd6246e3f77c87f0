// The arithmetic that defines which token a sampled row draws, shared by the CPU sampler
// (cpu/sample.cpp) and the CUDA one (cuda/sample.cu) so that both draw the same id from the same
// logits, bit for bit (host_device.h; both files are compiled without FMA contraction).
//
// A greedy row (temperature 0 or top_k 1) draws the argmax: the first largest logit, NaNs
// skipped, id 0 when no logit is a number. So does a row whose largest logit is not finite.
// Otherwise a row's weights are w_i = exp((logit_i - max logit) / temperature) by exp_fast, 1
// for the largest logits and 0 for NaNs: probabilities up to a common factor, with the most
// likely token's exactly 1, so min_p compares against them directly. Every sum of weights is over
// their fixed-point values, fixed_weight(w) = floor(w * 2^40): integers, whose sums are exact in
// any order, so the kept set and the drawn token never depend on how a backend splits the work. A
// token whose probability is below 2^-40 of the most likely one's therefore has no mass and is
// never drawn (nor counted towards top_p). Sums fit in 64 bits for vocabularies up to
// kMaxSampleVocab.
//
// Order: by w, then by id (ties to the lower id). top-k keeps the first k tokens of that order;
// top-p the shortest prefix of what top-k kept whose mass reaches top_p_target(top_p, its mass);
// min-p then drops tokens with w < min_p. The draw: target = draw_target(philox_bits53(seed,
// counter), total kept mass), and the token is the first id, in id order, whose running kept
// mass exceeds target.
//
// Log-probabilities (when asked for) are of the raw logits, before temperature, top-k, top-p and
// min-p: log_softmax over the whole vocabulary, with a NaN logit counted as -inf. The top-n
// order is by logit, ties to the lower id; a row's normaliser is summed in double.
#pragma once

#include <cmath>
#include <cstdint>

#include "check.h"
#include "fast_exp.h"
#include "host_device.h"

namespace slimrt {

constexpr int kWeightFractionBits = 40;
constexpr int64_t kMaxSampleVocab = int64_t{1} << 23;  // kMaxSampleVocab << 40 < 2^64

constexpr int32_t kMaxTopLogprobs = 20;  // OpenAI's largest top_logprobs

// Host: throws slimrt::Error when a vocabulary is too large for the fixed-point sums.
inline void check_sample_vocab(int64_t vocab) {
  SLIMRT_CHECK(vocab > 0 && vocab <= kMaxSampleVocab, "sample: vocabulary of "
                                                          << vocab << " tokens; at most "
                                                          << kMaxSampleVocab << " can be sampled");
}

// max_logit finite; inv_t = 1 / temperature may be infinite (a denormal temperature).
SLIMRT_HOST_DEVICE inline float sample_weight(float logit, float max_logit, float inv_t) {
  const float d = logit - max_logit;
  const float w = d == 0.0f ? 1.0f : exp_fast(d * inv_t);
  return w == w ? w : 0.0f;
}

SLIMRT_HOST_DEVICE inline uint64_t fixed_weight(float w) {
  // w in [0, 1]: scaling by a power of two is exact, and the conversion truncates (through a
  // signed integer, which the value fits and hosts convert to in one instruction).
  return static_cast<uint64_t>(
      static_cast<int64_t>(w * static_cast<float>(int64_t{1} << kWeightFractionBits)));
}

// The mass a top-p prefix must reach: ceil(top_p * mass), at least 1 and at most mass (the
// double product can round past it).
SLIMRT_HOST_DEVICE inline uint64_t top_p_target(float top_p, uint64_t mass) {
  const double t = ceil(static_cast<double>(top_p) * static_cast<double>(mass));
  const uint64_t target = t < 1.0 ? 1 : static_cast<uint64_t>(t);
  return target < mass ? target : mass;
}

// floor(bits / 2^53 * total), in [0, total) for total > 0: a 64 x 64 -> 128-bit product.
SLIMRT_HOST_DEVICE inline uint64_t draw_target(uint64_t bits53, uint64_t total) {
#if defined(__CUDA_ARCH__)
  const uint64_t hi = __umul64hi(bits53, total);
  const uint64_t lo = bits53 * total;
#else
  const unsigned __int128 product = static_cast<unsigned __int128>(bits53) * total;
  const uint64_t hi = static_cast<uint64_t>(product >> 64);
  const uint64_t lo = static_cast<uint64_t>(product);
#endif
  return hi << 11 | lo >> 53;
}

// The logit that log-probabilities and their order see: a NaN is -inf.
SLIMRT_HOST_DEVICE inline float logprob_key(float logit) {
  return logit == logit ? logit : -INFINITY;
}

// exp(key - max_key): one term of the row's normaliser (max_key the largest key).
SLIMRT_HOST_DEVICE inline double logprob_term(float key, float max_key) {
  return static_cast<double>(expf(key - max_key));
}

// log_softmax of one token: (key - max_key) - log(sum of the row's terms).
SLIMRT_HOST_DEVICE inline float token_logprob(float key, float max_key, double log_sum) {
  return static_cast<float>(static_cast<double>(key - max_key) - log_sum);
}

// The top-n order: a before b.
SLIMRT_HOST_DEVICE inline bool logprob_before(float key_a, int64_t a, float key_b, int64_t b) {
  return key_a > key_b || (key_a == key_b && a < b);
}

}  // namespace slimrt
