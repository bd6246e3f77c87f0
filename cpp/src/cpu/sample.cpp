#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "../philox.h"
#include "../sample_rules.h"
#include "kernels.h"

namespace slimrt::cpu {
namespace {

// Weights are binned by their top bits (sign 0, 8 exponent bits, 3 mantissa bits: bins 9 %
// wide) to find, in one pass, the bin where a top-k or top-p cut falls; only that bin is
// sorted. A full sort of a 150K vocabulary would cost milliseconds.
constexpr int kBinShift = 20;
constexpr int kBins = 1 << (31 - kBinShift);
// The draw sums weights a block at a time to find the block where it falls.
constexpr int64_t kSumBlock = 256;
constexpr int kLanes = 8;  // argmax's independent lanes

int32_t argmax(const float* x, int64_t n) {
  // The maximum first (independent lanes vectorise), then its first occurrence: ties go to
  // the lowest id. NaNs never compare greater, so they are skipped.
  float lanes[kLanes];
  for (int l = 0; l < kLanes; ++l) lanes[l] = -std::numeric_limits<float>::infinity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] = x[i + l] > lanes[l] ? x[i + l] : lanes[l];
  }
  float best = lanes[0];
  for (int l = 1; l < kLanes; ++l) best = lanes[l] > best ? lanes[l] : best;
  for (; i < n; ++i) best = x[i] > best ? x[i] : best;
  for (i = 0; i < n; ++i) {
    if (x[i] == best) return static_cast<int32_t>(i);
  }
  return 0;  // no logit above -inf
}

inline uint32_t bin_of(float w) {
  uint32_t bits;
  std::memcpy(&bits, &w, sizeof bits);
  return bits >> kBinShift;  // monotonic in w for w >= 0
}

// The order in which top-k and top-p take tokens: by weight, ties to the lower id, so the kept
// set is always a prefix of one total order and does not depend on how it was found.
struct Before {
  const float* w;
  bool operator()(int32_t a, int32_t b) const { return w[a] > w[b] || (w[a] == w[b] && a < b); }
};

// The kept mass of ids [begin, end) (weights of dropped ids are 0).
uint64_t mass_of(const float* w, int64_t begin, int64_t end) {
  uint64_t mass = 0;
  for (int64_t i = begin; i < end; ++i) mass += fixed_weight(w[i]);
  return mass;
}

// The last id kept by top-k and top-p (a prefix of the Before order), or -1 when they keep all.
// Only the bin where a cut falls is sorted: bins are disjoint ranges of weight, so every id in a
// heavier bin precedes it.
int32_t last_kept(const float* w, int64_t vocab, int64_t k, float top_p, int32_t* idx) {
  uint32_t count[kBins] = {};
  uint64_t mass[kBins] = {};
  for (int64_t i = 0; i < vocab; ++i) {
    const uint32_t b = bin_of(w[i]);
    ++count[b];
    mass[b] += fixed_weight(w[i]);
  }
  auto sort_bin = [&](int bin) {
    int64_t n = 0;
    for (int32_t i = 0; i < vocab; ++i) {
      if (bin_of(w[i]) == static_cast<uint32_t>(bin)) idx[n++] = i;
    }
    std::sort(idx, idx + n, Before{w});
    return n;
  };
  // The id at which the running mass (cum, over bins from the heaviest, then in order within a
  // bin) first reaches target, searching bins down to `floor` and the first `floor_len` ids of
  // the floor bin (already sorted in idx when floor_len > 0). Sums are exact, and target is at
  // most the mass searched, so it is reached.
  auto reach = [&](uint64_t target, int floor, int64_t floor_len) {
    uint64_t cum = 0;
    int bin = kBins - 1;
    for (; bin > floor; --bin) {
      if (cum + mass[bin] >= target) break;
      cum += mass[bin];
    }
    const int64_t n = bin == floor && floor_len > 0 ? floor_len : sort_bin(bin);
    int64_t i = 0;
    for (; i + 1 < n; ++i) {
      cum += fixed_weight(w[idx[i]]);
      if (cum >= target) break;
    }
    return idx[i];
  };

  if (k == vocab) {
    uint64_t total = 0;
    for (uint64_t m : mass) total += m;
    return reach(top_p_target(top_p, total), 0, 0);
  }
  int cut = kBins - 1;
  int64_t above = 0;
  uint64_t above_mass = 0;
  for (; above + count[cut] < k; --cut) {
    above += count[cut];
    above_mass += mass[cut];
  }
  const int64_t in_cut = k - above;  // the top k end this many ids into bin `cut`
  sort_bin(cut);
  if (top_p >= 1.0f) return idx[in_cut - 1];
  uint64_t in_k = above_mass;
  for (int64_t i = 0; i < in_cut; ++i) in_k += fixed_weight(w[idx[i]]);
  return reach(top_p_target(top_p, in_k), cut, in_cut);
}

int32_t sample_row(const float* logits, int64_t vocab, const SampleParams& p, float* w,
                   int32_t* idx) {
  const int32_t best = argmax(logits, vocab);
  if (p.temperature <= 0.0f || p.top_k == 1) return best;
  const float max_logit = logits[best];
  if (!std::isfinite(max_logit)) return best;
  const float inv_t = 1.0f / p.temperature;
  for (int64_t i = 0; i < vocab; ++i) w[i] = sample_weight(logits[i], max_logit, inv_t);

  const int64_t k = p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;
  const int32_t last = k < vocab || p.top_p < 1.0f ? last_kept(w, vocab, k, p.top_p, idx) : -1;
  if (last >= 0 || p.min_p > 0.0f) {
    const float w_last = last >= 0 ? w[last] : 0.0f;
    for (int32_t i = 0; i < vocab; ++i) {
      const bool in_prefix = last < 0 || w[i] > w_last || (w[i] == w_last && i <= last);
      w[i] = in_prefix && w[i] >= p.min_p ? w[i] : 0.0f;
    }
  }

  // The draw walks ids in order, a block of kSumBlock at a time.
  const uint64_t total = mass_of(w, 0, vocab);
  if (total == 0) return best;  // nothing kept: only for invalid params (min_p > 1)
  const uint64_t target = draw_target(philox_bits53(p.seed, p.counter), total);
  uint64_t cum = 0;
  int64_t b = 0;
  for (;; b += kSumBlock) {
    const uint64_t s = mass_of(w, b, std::min(vocab, b + kSumBlock));
    if (cum + s > target) break;
    cum += s;
  }
  for (int64_t i = b;; ++i) {
    cum += fixed_weight(w[i]);
    if (cum > target) return static_cast<int32_t>(i);
  }
}

// Row r's log-probabilities (sample_rules.h). The top n are kept sorted as the ids go by: a
// token enters only when it precedes the n-th, so a typical row costs one comparison per id.
void row_logprobs(const float* x, int64_t vocab, int32_t drawn, const SampleLogprobs& lp,
                  int64_t r) {
  float max_key = -INFINITY;
  for (int64_t i = 0; i < vocab; ++i) max_key = std::max(max_key, logprob_key(x[i]));
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += logprob_term(logprob_key(x[i]), max_key);
  const double log_sum = std::log(sum);
  lp.sampled[r] = token_logprob(logprob_key(x[drawn]), max_key, log_sum);

  const int32_t n = lp.top_n;
  int32_t* ids = lp.top_ids + r * n;
  int32_t held = 0;
  for (int64_t i = 0; n > 0 && i < vocab; ++i) {
    const float key = logprob_key(x[i]);
    if (held == n && !logprob_before(key, i, logprob_key(x[ids[n - 1]]), ids[n - 1])) continue;
    int32_t at = held < n ? held++ : n - 1;
    for (; at > 0 && logprob_before(key, i, logprob_key(x[ids[at - 1]]), ids[at - 1]); --at) {
      ids[at] = ids[at - 1];
    }
    ids[at] = static_cast<int32_t>(i);
  }
  for (int32_t k = 0; k < n; ++k) {
    lp.top_logprobs[r * n + k] = token_logprob(logprob_key(x[ids[k]]), max_key, log_sum);
  }
}

}  // namespace

void sample(const float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
            int32_t* out, void* scratch, ThreadPool& pool, const SampleLogprobs* logprobs) {
  if (rows <= 0) return;
  pool.run(rows, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* w = static_cast<float*>(scratch) + r * vocab * 2;
      int32_t* idx = reinterpret_cast<int32_t*>(w + vocab);
      out[r] = sample_row(logits + r * vocab, vocab, params[r], w, idx);
      if (logprobs != nullptr) row_logprobs(logits + r * vocab, vocab, out[r], *logprobs, r);
    }
  });
}

}  // namespace slimrt::cpu
