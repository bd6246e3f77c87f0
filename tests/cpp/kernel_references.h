// Double-precision references of the kernels, written straight from the contracts of
// cpu/kernels.h and sample_rules.h, and the seeded random inputs they are checked on: the CPU
// kernels are tested against them (test_cpu_kernels.cpp), and so is every op on the CPU backend
// (test_backend_ops.cpp).
//
//   std::mt19937_64 rng(12);
//   const std::vector<float> x = test::random_floats(rng, rows * cols, -3.0f, 3.0f);
//   EXPECT_LT(test::rel_l2(out, test::reference_rms_norm(x, w, rows, cols, eps)), 1e-6);
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <vector>

#include "df11_test_data.h"
#include "kernel_args.h"
#include "philox.h"
#include "sample_rules.h"

namespace slimrt::test {

inline double from_bf16(uint16_t b) {
  const uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::vector<float> random_floats(std::mt19937_64& rng, size_t n, float lo = -1.0f,
                                        float hi = 1.0f) {
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> v(n);
  for (auto& x : v) x = u(rng);
  return v;
}

inline std::vector<uint16_t> random_bf16(std::mt19937_64& rng, size_t n) {
  std::vector<uint16_t> v(n);
  for (auto& b : v) b = to_bf16(std::uniform_real_distribution<float>(-1.0f, 1.0f)(rng));
  return v;
}

// sqrt(sum (got - ref)^2 / sum ref^2); a non-finite value in got where ref is finite gives
// infinity (elements both leave NaN, such as untouched poison, count as equal).
template <class T>
double rel_l2(const std::vector<T>& got, const std::vector<double>& ref) {
  if (got.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double err = 0.0, norm = 0.0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double g = static_cast<double>(got[i]);
    if (std::isnan(g) && std::isnan(ref[i])) continue;
    if (!std::isfinite(g)) return std::numeric_limits<double>::infinity();
    err += (g - ref[i]) * (g - ref[i]);
    norm += ref[i] * ref[i];
  }
  return norm > 0.0 ? std::sqrt(err / norm) : std::sqrt(err);
}

// out[r][:] = x[r][:] / sqrt(mean(x[r]^2) + eps) * w[:].
inline std::vector<double> reference_rms_norm(const std::vector<float>& x,
                                              const std::vector<float>& w, int64_t rows,
                                              int64_t cols, float eps) {
  std::vector<double> ref(rows * cols);
  for (int64_t r = 0; r < rows; ++r) {
    double ss = 0.0;
    for (int64_t i = 0; i < cols; ++i) ss += double(x[r * cols + i]) * x[r * cols + i];
    const double inv = 1.0 / std::sqrt(ss / cols + eps);
    for (int64_t i = 0; i < cols; ++i) ref[r * cols + i] = x[r * cols + i] * inv * w[i];
  }
  return ref;
}

// silu(gate) * up over [tokens][width], gate and up rows row_stride floats apart.
inline std::vector<double> reference_silu_mul(const float* gate, const float* up,
                                              int64_t row_stride, int64_t tokens, int64_t width) {
  std::vector<double> ref(tokens * width);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < width; ++i) {
      const double g = gate[t * row_stride + i];
      ref[t * width + i] = g / (1.0 + std::exp(-g)) * up[t * row_stride + i];
    }
  }
  return ref;
}

struct MatmulReference {
  std::vector<double> out;        // x · wᵀ (+ bias)
  std::vector<double> magnitude;  // sum |x w| per output: what FP32 rounding error scales with
};

inline MatmulReference reference_matmul(const std::vector<float>& x, int64_t rows, int64_t k,
                                        const std::vector<uint16_t>& w, int64_t n,
                                        const float* bias) {
  MatmulReference ref{std::vector<double>(rows * n), std::vector<double>(rows * n)};
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t j = 0; j < n; ++j) {
      double s = bias != nullptr ? bias[j] : 0.0, a = 0.0;
      for (int64_t i = 0; i < k; ++i) {
        const double p = double(x[r * k + i]) * from_bf16(w[j * k + i]);
        s += p;
        a += std::abs(p);
      }
      ref.out[r * n + j] = s;
      ref.magnitude[r * n + j] = a;
    }
  }
  return ref;
}

// Hugging Face's rotate_half RoPE of [tokens][heads][head_dim] rows (token t's at
// x + t * row_stride), as [tokens][heads][head_dim]. The angle in FP32, as the contract (and
// Hugging Face) computes it.
inline std::vector<double> reference_rope(const float* x, int64_t row_stride,
                                          const int32_t* positions, int64_t tokens, int64_t heads,
                                          int64_t head_dim, const std::vector<float>& inv_freq) {
  const int64_t half = head_dim / 2;
  std::vector<double> ref(tokens * heads * head_dim);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t h = 0; h < heads; ++h) {
      const float* a = x + t * row_stride + h * head_dim;
      double* o = ref.data() + (t * heads + h) * head_dim;
      for (int64_t i = 0; i < half; ++i) {
        const double angle = static_cast<float>(positions[t]) * inv_freq[i];
        o[i] = a[i] * std::cos(angle) - a[i + half] * std::sin(angle);
        o[i + half] = a[i + half] * std::cos(angle) + a[i] * std::sin(angle);
      }
    }
  }
  return ref;
}

// Hugging Face's inverse frequencies for RoPE base 10000.
inline std::vector<float> rope_inv_freq(int64_t head_dim) {
  std::vector<float> inv_freq(head_dim / 2);
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    inv_freq[i] = static_cast<float>(1.0 / std::pow(10000.0, 2.0 * i / head_dim));
  }
  return inv_freq;
}

// ---- paged attention ------------------------------------------------------------------------

struct SeqSpec {
  int64_t context;  // tokens in the cache after this step
  int64_t queries;  // new tokens this step (the last `queries` positions)
};

// A ragged batch over a paged KV cache whose pages are handed out in shuffled order from a pool
// with a few pages nobody owns (garbage there: NaN must not leak into any output), with random
// K, V (as stored: BF16 or F32 bytes) and q. With a sliding window, a sequence's pages that no
// query of the step sees can be left out (first_pages: as the engine frees them).
struct PagedCache {
  std::vector<SeqSpec> seqs;
  std::vector<int32_t> q_indptr{0}, page_indptr{0}, page_indices, context_lens, first_pages;
  std::vector<uint8_t> k_pool, v_pool;
  std::vector<float> q;  // [tokens][heads][head_dim]
  int64_t kv_heads = 0, heads = 0, head_dim = 0, page_size = 0, pool_pages = 0;
  int64_t window = 0;  // 0: full causal attention
  KvDtype dtype = KvDtype::kBf16;

  int64_t tokens() const { return q_indptr.back(); }
  // The first position a query at `pos` sees (PagedBatch::window).
  int64_t window_start(int64_t pos) const {
    return window > 0 ? std::max<int64_t>(0, pos - window + 1) : 0;
  }
  // The stored K (or V) element e of KV head kvh at position p of sequence s, widened.
  double stored(const std::vector<uint8_t>& pool, size_t s, int64_t p, int64_t kvh,
                int64_t e) const {
    const int64_t page = page_indices[page_indptr[s] + p / page_size - first_pages[s]];
    const int64_t at = ((page * page_size + p % page_size) * kv_heads + kvh) * head_dim + e;
    return dtype == KvDtype::kF32 ? reinterpret_cast<const float*>(pool.data())[at]
                                  : from_bf16(reinterpret_cast<const uint16_t*>(pool.data())[at]);
  }
};

inline PagedCache make_paged_cache(uint64_t seed, const std::vector<SeqSpec>& seqs,
                                   int64_t kv_heads, int64_t group, int64_t head_dim,
                                   int64_t page_size, KvDtype dtype, float q_scale = 1.0f,
                                   int64_t window = 0, bool unlist_unseen = false) {
  std::mt19937_64 rng(seed);
  PagedCache c;
  c.seqs = seqs;
  c.kv_heads = kv_heads;
  c.heads = kv_heads * group;
  c.head_dim = head_dim;
  c.page_size = page_size;
  c.window = window;
  c.dtype = dtype;
  int64_t total_pages = 0;
  for (const auto& s : seqs) {
    c.q_indptr.push_back(c.q_indptr.back() + static_cast<int32_t>(s.queries));
    const int64_t first = unlist_unseen ? c.window_start(s.context - s.queries) / page_size : 0;
    c.first_pages.push_back(static_cast<int32_t>(first));
    const int64_t pages = (s.context + page_size - 1) / page_size - first;
    c.page_indptr.push_back(c.page_indptr.back() + static_cast<int32_t>(pages));
    c.context_lens.push_back(static_cast<int32_t>(s.context));
    total_pages += pages;
  }
  c.pool_pages = total_pages + 3;
  c.page_indices.resize(c.pool_pages);
  std::iota(c.page_indices.begin(), c.page_indices.end(), 0);
  std::shuffle(c.page_indices.begin(), c.page_indices.end(), rng);
  c.page_indices.resize(total_pages);

  const int64_t row = kv_heads * head_dim;
  const int64_t elem = dtype == KvDtype::kF32 ? 4 : 2;
  c.k_pool.assign(c.pool_pages * page_size * row * elem, 0xFF);  // NaN in every unowned slot
  c.v_pool.assign(c.k_pool.size(), 0xFF);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (size_t s = 0; s < seqs.size(); ++s) {
    for (int64_t p = c.first_pages[s] * page_size; p < seqs[s].context; ++p) {
      const int64_t page = c.page_indices[c.page_indptr[s] + p / page_size - c.first_pages[s]];
      const int64_t slot = page * page_size + p % page_size;
      for (int64_t i = 0; i < row; ++i) {
        const float kf = u(rng), vf = u(rng);
        if (dtype == KvDtype::kF32) {
          reinterpret_cast<float*>(c.k_pool.data())[slot * row + i] = kf;
          reinterpret_cast<float*>(c.v_pool.data())[slot * row + i] = vf;
        } else {
          reinterpret_cast<uint16_t*>(c.k_pool.data())[slot * row + i] = to_bf16(kf);
          reinterpret_cast<uint16_t*>(c.v_pool.data())[slot * row + i] = to_bf16(vf);
        }
      }
    }
  }
  c.q = random_floats(rng, c.tokens() * c.heads * head_dim, -q_scale, q_scale);
  return c;
}

// softmax(q·k * scale) · v over each query token's causal window (positions window_start(pos)
// through pos), query head h reading KV head h / (heads / kv_heads), in double over the stored K
// and V. [tokens][heads][head_dim].
inline std::vector<double> reference_paged_attention(const PagedCache& c, float scale) {
  const int64_t hd = c.head_dim, group = c.heads / c.kv_heads;
  std::vector<double> ref(c.tokens() * c.heads * hd, 0.0);
  for (size_t s = 0; s < c.seqs.size(); ++s) {
    for (int64_t i = 0; i < c.seqs[s].queries; ++i) {
      const int64_t token = c.q_indptr[s] + i;
      const int64_t pos = c.seqs[s].context - c.seqs[s].queries + i;
      for (int64_t h = 0; h < c.heads; ++h) {
        const int64_t kvh = h / group;
        const float* qr = c.q.data() + (token * c.heads + h) * hd;
        const int64_t lo = c.window_start(pos);
        std::vector<double> score(pos + 1 - lo);
        double mx = -1e300;
        for (int64_t p = lo; p <= pos; ++p) {
          double d = 0.0;
          for (int64_t e = 0; e < hd; ++e) d += qr[e] * c.stored(c.k_pool, s, p, kvh, e);
          score[p - lo] = d * scale;
          mx = std::max(mx, score[p - lo]);
        }
        double z = 0.0;
        for (auto& x : score) z += (x = std::exp(x - mx));
        double* o = ref.data() + (token * c.heads + h) * hd;
        for (int64_t p = lo; p <= pos; ++p) {
          for (int64_t e = 0; e < hd; ++e) {
            o[e] += score[p - lo] / z * c.stored(c.v_pool, s, p, kvh, e);
          }
        }
      }
    }
  }
  return ref;
}

// ---- sampling -------------------------------------------------------------------------------

// sample_rules.h's log-probabilities in double: log_softmax of the logits (a NaN counts as
// -inf) of every id, and every id in the top-n order (by logit, ties to the lower id).
struct ReferenceLogprobs {
  std::vector<double> logprob;  // [vocab]
  std::vector<int32_t> order;   // [vocab]
};

inline ReferenceLogprobs reference_logprobs(const float* logits, int64_t vocab) {
  std::vector<double> key(vocab);
  double max_key = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < vocab; ++i) {
    key[i] = std::isnan(logits[i]) ? -std::numeric_limits<double>::infinity() : logits[i];
    max_key = std::max(max_key, key[i]);
  }
  double sum = 0.0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(key[i] - max_key);
  const double log_sum = std::log(sum);
  ReferenceLogprobs ref;
  for (int64_t i = 0; i < vocab; ++i) ref.logprob.push_back(key[i] - max_key - log_sum);
  ref.order.resize(vocab);
  std::iota(ref.order.begin(), ref.order.end(), 0);
  std::stable_sort(ref.order.begin(), ref.order.end(),
                   [&](int32_t a, int32_t b) { return key[a] > key[b]; });
  return ref;
}

// sample_rules.h written out the slow way: a full sort, then integer sums in order.
inline int32_t reference_sample(const float* logits, int64_t vocab, const SampleParams& p) {
  int32_t argmax = -1;  // the first largest logit, NaNs skipped
  for (int32_t i = 0; i < vocab; ++i) {
    if (!std::isnan(logits[i]) && (argmax < 0 || logits[i] > logits[argmax])) argmax = i;
  }
  if (argmax < 0) argmax = 0;  // no logit is a number
  if (p.temperature <= 0.0f || p.top_k == 1) return argmax;
  const float max_logit = logits[argmax];
  if (!std::isfinite(max_logit)) return argmax;
  std::vector<float> w(vocab);
  for (int64_t i = 0; i < vocab; ++i) {
    w[i] = sample_weight(logits[i], max_logit, 1.0f / p.temperature);
  }
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(),
            [&](int32_t a, int32_t b) { return w[a] > w[b] || (w[a] == w[b] && a < b); });
  int64_t keep = p.top_k > 0 && p.top_k < vocab ? p.top_k : vocab;
  if (p.top_p < 1.0f) {
    uint64_t mass = 0;
    for (int64_t i = 0; i < keep; ++i) mass += fixed_weight(w[order[i]]);
    const uint64_t target = top_p_target(p.top_p, mass);
    uint64_t cum = 0;
    for (int64_t i = 0; i < keep; ++i) {
      cum += fixed_weight(w[order[i]]);
      if (cum >= target) {
        keep = i + 1;
        break;
      }
    }
  }
  std::vector<uint64_t> kept(vocab, 0);
  uint64_t total = 0;
  for (int64_t i = 0; i < keep; ++i) {
    if (w[order[i]] >= p.min_p) total += kept[order[i]] = fixed_weight(w[order[i]]);
  }
  if (total == 0) return argmax;
  const uint64_t target = draw_target(philox_bits53(p.seed, p.counter), total);
  uint64_t cum = 0;
  for (int32_t i = 0; i < vocab; ++i) {
    cum += kept[i];
    if (cum > target) return i;
  }
  return -1;
}

}  // namespace slimrt::test
