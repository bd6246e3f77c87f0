// Sampling on the GPU, one block of kThreads per row, by the rules of sample_rules.h (the CPU
// sampler's): this file is compiled with --fmad=false so that exp_fast gives the CPU's weights bit
// for bit, and every sum of weights is an integer sum, exact in any order.
//
// A row takes these passes over its vocabulary (in L2 at these sizes):
// 1. argmax of the logits (all a greedy row needs);
// 2. the weights, written to their own buffer (the logits stay for the log-probabilities);
// 3. top-k and top-p: the token where the cut falls, found by radix selection on the weights'
//    bits (they are >= 0, so their bits order like their values): three levels of 10 bits, each
//    a pass that histograms the tokens still in play (count, or fixed-point mass for top-p) into
//    shared memory, then a block scan from the heaviest bin down to the bin where the count or
//    mass reaches the target. Ties of the cut's weight are taken in id order (a scan over ids
//    when only some of them are kept);
// 4. the kept mass, then a scan in id order to the first id whose running mass exceeds the draw.
// Log-probabilities, when asked for, take a pass for the normaliser after the argmax and one per
// top token (the next in the top-n order after the previous), and read the drawn token's logit.
#include <cstdint>
#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "philox.h"
#include "sample_rules.h"

namespace slimrt {
namespace {

constexpr int kThreads = 1024;
constexpr int kRadixBits = 10;
constexpr int kBins = 1 << kRadixBits;
static_assert(kBins == kThreads, "a bin per thread in the scans");
constexpr int kLevels = 3;  // weights in [0, 2) have 30 significant bits
constexpr int kTile = 4;    // consecutive ids per thread in the scans in id order
constexpr int64_t kNoIndex = INT64_MAX;

using U64 = unsigned long long;  // what CUDA's 64-bit atomics take
using ScanU64 = cub::BlockScan<U64, kThreads>;
using ReduceU64 = cub::BlockReduce<U64, kThreads>;
using ReduceF64 = cub::BlockReduce<double, kThreads>;

struct Shared {
  union {
    ScanU64::TempStorage scan;
    ReduceU64::TempStorage reduce;
    ReduceF64::TempStorage reduce_f64;
  } cub;
  uint32_t count[kBins];
  U64 mass[kBins];
  int last_id[kBins];  // the largest id in each bin, at the last level
  float best_value[kThreads / 32];
  int64_t best_index[kThreads / 32];
  int64_t id;  // values broadcast to the block
  U64 value;
  double sum;
  int bin;
};

// The first tokens of the sampling order (weight, then id): every token of weight above `bits`,
// and those of weight `bits` up to id `last`. kEvery is all of them.
struct Prefix {
  uint32_t bits;
  int64_t last;
};
constexpr Prefix kEvery{0, kNoIndex};

__device__ __forceinline__ bool in_prefix(const Prefix& p, uint32_t bits, int64_t i) {
  return bits > p.bits || (bits == p.bits && i <= p.last);
}

__device__ __forceinline__ void take_better(float& value, int64_t& index, float v, int64_t i) {
  if (v > value || (v == value && i < index)) {
    value = v;
    index = i;
  }
}

// The largest logit, ties to the lowest id, NaNs skipped, 0 when no logit is a number: in every
// thread. 16-byte loads where the row allows; each thread visits its ids in increasing order.
__device__ int64_t row_argmax(const float* row, int64_t vocab, Shared& sh) {
  float value = -INFINITY;
  int64_t index = kNoIndex;
  int64_t tail = 0;
  if (vocab % 4 == 0 && reinterpret_cast<uintptr_t>(row) % 16 == 0) {
    const float4* row4 = reinterpret_cast<const float4*>(row);
    for (int64_t c = threadIdx.x; c < vocab / 4; c += kThreads) {
      const float4 v = row4[c];
      take_better(value, index, v.x, 4 * c);
      take_better(value, index, v.y, 4 * c + 1);
      take_better(value, index, v.z, 4 * c + 2);
      take_better(value, index, v.w, 4 * c + 3);
    }
    tail = vocab;
  }
  for (int64_t i = tail + threadIdx.x; i < vocab; i += kThreads)
    take_better(value, index, row[i], i);
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    const int64_t i = __shfl_xor_sync(0xFFFFFFFFu, index, offset);
    take_better(value, index, v, i);
  }
  if (threadIdx.x % 32 == 0) {
    sh.best_value[threadIdx.x / 32] = value;
    sh.best_index[threadIdx.x / 32] = index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      take_better(value, index, sh.best_value[w], sh.best_index[w]);
    sh.id = index == kNoIndex ? 0 : index;
  }
  __syncthreads();
  return sh.id;
}

// The (j >= 1)-th id, in id order, of the tokens of weight bits `bits` within `within`.
__device__ int64_t nth_of_weight(const float* w, int64_t vocab, const Prefix& within, uint32_t bits,
                                 U64 j, Shared& sh) {
  U64 seen = 0;
  for (int64_t base = 0; base < vocab; base += int64_t{kThreads} * kTile) {
    const int64_t first = base + int64_t{threadIdx.x} * kTile;
    U64 mine = 0;
    for (int e = 0; e < kTile; ++e) {
      const int64_t i = first + e;
      if (i < vocab && __float_as_uint(w[i]) == bits && in_prefix(within, bits, i)) ++mine;
    }
    U64 before = 0, tile = 0;
    ScanU64(sh.cub.scan).ExclusiveSum(mine, before, tile);
    if (seen + before < j && j <= seen + before + mine) {
      U64 n = seen + before;
      for (int e = 0; e < kTile; ++e) {
        const int64_t i = first + e;
        if (i < vocab && __float_as_uint(w[i]) == bits && in_prefix(within, bits, i) && ++n == j) {
          sh.id = i;
        }
      }
    }
    __syncthreads();
    seen += tile;
    if (seen >= j) break;
  }
  const int64_t id = sh.id;
  __syncthreads();
  return id;
}

// The shortest prefix of `within` whose token count (by_mass false) or fixed-point mass (true)
// reaches `target` (at least 1, at most what `within` holds).
__device__ Prefix find_prefix(const float* w, int64_t vocab, const Prefix& within, bool by_mass,
                              U64 target, Shared& sh) {
  const int lane = threadIdx.x % 32;
  uint32_t high = 0;  // the bits fixed by the levels so far
  U64 above = 0;      // count or mass of the tokens in play in heavier bins
  int bin = 0;
  for (int level = 0; level < kLevels; ++level) {
    const int shift = (kLevels - 1 - level) * kRadixBits;
    sh.count[threadIdx.x] = 0;
    sh.mass[threadIdx.x] = 0;
    sh.last_id[threadIdx.x] = -1;
    __syncthreads();
    // Weight 0 (often most of a row) lies in bin 0 at every level and has no mass: counted in
    // registers, not by contended atomics.
    uint32_t zeros = 0;
    int zero_last = -1;
    for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
      const uint32_t bits = __float_as_uint(w[i]);
      if (bits >> (shift + kRadixBits) != high || !in_prefix(within, bits, i)) continue;
      if (bits == 0) {
        ++zeros;
        zero_last = static_cast<int>(i);
        continue;
      }
      const int b = static_cast<int>(bits >> shift) & (kBins - 1);
      atomicAdd(&sh.count[b], 1u);
      if (by_mass) atomicAdd(&sh.mass[b], static_cast<U64>(fixed_weight(w[i])));
      if (level == kLevels - 1) atomicMax(&sh.last_id[b], static_cast<int>(i));
    }
    zeros = __reduce_add_sync(0xFFFFFFFFu, zeros);
    zero_last = __reduce_max_sync(0xFFFFFFFFu, zero_last);
    if (lane == 0 && zeros > 0) {
      atomicAdd(&sh.count[0], zeros);
      atomicMax(&sh.last_id[0], zero_last);
    }
    __syncthreads();
    // Thread t holds bin kBins - 1 - t: its inclusive sum is everything from that bin up.
    const int b = kBins - 1 - static_cast<int>(threadIdx.x);
    const U64 v = by_mass ? sh.mass[b] : sh.count[b];
    U64 through = 0;
    ScanU64(sh.cub.scan).InclusiveSum(v, through);
    if (above + through - v < target && target <= above + through) {
      sh.bin = b;
      sh.value = through - v;
    }
    __syncthreads();
    bin = sh.bin;
    above += sh.value;
    high = high << kRadixBits | static_cast<uint32_t>(bin);
    __syncthreads();
  }
  // `high` is now the cut's weight: the cut takes the first j tokens of that weight.
  U64 j = target - above;
  if (by_mass) {
    const U64 q = fixed_weight(__uint_as_float(high));  // > 0: the bin has mass
    j = (j + q - 1) / q;
  }
  const int64_t last =
      j == sh.count[bin] ? sh.last_id[bin] : nth_of_weight(w, vocab, within, high, j, sh);
  __syncthreads();
  return {high, last};
}

// Token i's fixed-point mass if it is in `kept` with weight >= min_p, else 0.
__device__ __forceinline__ U64 kept_weight(const float* w, int64_t i, const Prefix& kept,
                                           float min_p) {
  const float x = w[i];
  return in_prefix(kept, __float_as_uint(x), i) && x >= min_p ? fixed_weight(x) : 0;
}

// The fixed-point mass of `kept` with weight >= min_p, in every thread.
__device__ U64 kept_mass(const float* w, int64_t vocab, const Prefix& kept, float min_p,
                         Shared& sh) {
  U64 mine = 0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) mine += kept_weight(w, i, kept, min_p);
  const U64 total = ReduceU64(sh.cub.reduce).Sum(mine);
  if (threadIdx.x == 0) sh.value = total;
  __syncthreads();
  const U64 result = sh.value;
  __syncthreads();
  return result;
}

// The first id whose running kept mass, in id order, exceeds target (< the kept mass).
__device__ int64_t draw(const float* w, int64_t vocab, const Prefix& kept, float min_p, U64 target,
                        Shared& sh) {
  U64 cum = 0;
  for (int64_t base = 0; base < vocab; base += int64_t{kThreads} * kTile) {
    const int64_t first = base + int64_t{threadIdx.x} * kTile;
    U64 m[kTile];
    U64 mine = 0;
    for (int e = 0; e < kTile; ++e) {
      mine += m[e] = first + e < vocab ? kept_weight(w, first + e, kept, min_p) : 0;
    }
    U64 before = 0, tile = 0;
    ScanU64(sh.cub.scan).ExclusiveSum(mine, before, tile);
    U64 running = cum + before;
    if (running <= target && target < running + mine) {
      for (int e = 0; e < kTile; ++e) {
        running += m[e];
        if (running > target) {
          sh.id = first + e;
          break;
        }
      }
    }
    __syncthreads();
    cum += tile;
    if (cum > target) break;
  }
  return sh.id;
}

// The block-wide first key after (after_key, after) in the top-n order, in every thread:
// ((key, id) of it). Keys are never NaN, so some id qualifies while ids remain.
__device__ void next_in_order(const float* row, int64_t vocab, float after_key, int64_t after,
                              float& key, int64_t& id, Shared& sh) {
  float value = -INFINITY;
  int64_t index = kNoIndex;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    const float k = logprob_key(row[i]);
    if (logprob_before(after_key, after, k, i)) take_better(value, index, k, i);
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const float v = __shfl_xor_sync(0xFFFFFFFFu, value, offset);
    const int64_t i = __shfl_xor_sync(0xFFFFFFFFu, index, offset);
    take_better(value, index, v, i);
  }
  if (threadIdx.x % 32 == 0) {
    sh.best_value[threadIdx.x / 32] = value;
    sh.best_index[threadIdx.x / 32] = index;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w)
      take_better(value, index, sh.best_value[w], sh.best_index[w]);
    sh.id = index;
    sh.best_value[0] = value;
  }
  __syncthreads();
  id = sh.id;
  key = sh.best_value[0];
  __syncthreads();
}

// The row's log-probability normaliser and its top n (sample_rules.h); returns log(sum), in
// every thread. max_key: the largest key, the argmax's.
__device__ double row_logprobs(const float* row, int64_t vocab, float max_key,
                               const SampleLogprobs& lp, Shared& sh) {
  double mine = 0.0;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    mine += logprob_term(logprob_key(row[i]), max_key);
  }
  const double sum = ReduceF64(sh.cub.reduce_f64).Sum(mine);
  if (threadIdx.x == 0) sh.sum = sum;
  __syncthreads();
  const double log_sum = log(sh.sum);
  __syncthreads();
  // n passes, each the first token after the previous one: n <= 20 reads of a row in L2.
  float key = INFINITY;
  int64_t id = -1;
  for (int32_t k = 0; k < lp.top_n; ++k) {
    next_in_order(row, vocab, key, id, key, id, sh);
    if (threadIdx.x == 0) {
      lp.top_ids[blockIdx.x * lp.top_n + k] = static_cast<int32_t>(id);
      lp.top_logprobs[blockIdx.x * lp.top_n + k] = token_logprob(key, max_key, log_sum);
    }
  }
  return log_sum;
}

__global__ void __launch_bounds__(kThreads)
    sample_kernel(const float* logits, int64_t vocab, const SampleParams* params, int32_t* out,
                  float* weights, SampleLogprobs lp, bool with_logprobs) {
  __shared__ Shared sh;
  const float* row = logits + blockIdx.x * vocab;
  float* w = weights + blockIdx.x * vocab;
  const SampleParams p = params[blockIdx.x];
  const int64_t best = row_argmax(row, vocab, sh);
  // The largest key is the argmax's logit (a NaN there: no logit is a number).
  const float max_key = logprob_key(row[best]);
  const double log_sum = with_logprobs ? row_logprobs(row, vocab, max_key, lp, sh) : 0.0;
  auto finish = [&](int64_t id) {
    if (threadIdx.x != 0) return;
    out[blockIdx.x] = static_cast<int32_t>(id);
    if (with_logprobs)
      lp.sampled[blockIdx.x] = token_logprob(logprob_key(row[id]), max_key, log_sum);
  };
  const float max_logit = row[best];
  if (p.temperature <= 0.0f || p.top_k == 1 || !isfinite(max_logit)) return finish(best);
  const float inv_t = 1.0f / p.temperature;
  for (int64_t i = threadIdx.x; i < vocab; i += kThreads) {
    w[i] = sample_weight(row[i], max_logit, inv_t);
  }
  __syncthreads();

  Prefix kept = kEvery;
  if (p.top_k > 0 && p.top_k < vocab) {
    kept = find_prefix(w, vocab, kept, false, static_cast<U64>(p.top_k), sh);
  }
  if (p.top_p < 1.0f) {
    const U64 mass = kept_mass(w, vocab, kept, 0.0f, sh);
    kept = find_prefix(w, vocab, kept, true, top_p_target(p.top_p, mass), sh);
  }
  const U64 total = kept_mass(w, vocab, kept, p.min_p, sh);
  // Nothing kept: only for invalid params (min_p > 1).
  if (total == 0) return finish(best);
  const U64 target = draw_target(philox_bits53(p.seed, p.counter), total);
  finish(draw(w, vocab, kept, p.min_p, target, sh));
}

}  // namespace

namespace cuda {

void sample(CudaDevice& device, const float* logits, int64_t rows, int64_t vocab,
            const SampleParams* params, int32_t* out, float* weights,
            const SampleLogprobs* logprobs) {
  if (rows <= 0) return;
  SLIMRT_CHECK(rows <= 0x7FFFFFFF, "sample: too many rows " << rows);
  sample_kernel<<<static_cast<unsigned>(rows), kThreads, 0, device.stream()>>>(
      logits, vocab, params, out, weights, logprobs != nullptr ? *logprobs : SampleLogprobs{},
      logprobs != nullptr);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

}  // namespace cuda
}  // namespace slimrt
