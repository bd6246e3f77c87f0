// CUDA decode attention against the CPU reference (cpu::paged_attention) on the same BF16 data:
// random q/K/V, page indices shuffled through a pool larger than the batch needs, ragged contexts,
// GQA and plain multi-head, head_dim 128 and 64, page sizes 16 and 1, with and without splits.
// Prefill attention the same way, over ragged query counts: whole prompts and chunks after a
// prefix. The kernel over compressed (bitmap-sparse) pages likewise, against the CPU kernel on
// pages compressed by cpu::kv_compress. The output is poisoned before every run. Without a CUDA
// device the comparisons are skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "attention_cuda.h"
#include "check.h"
#include "cpu/bf16.h"
#include "cpu/kernels.h"
#include "decode_splits.h"
#include "df11_cuda.h"
#include "kv_record.h"
#include "slimrt/version.h"
#include "thread_pool.h"

#ifdef SLIMRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

using slimrt::PagedDecodeArgs;
using slimrt::PagedDecodePlan;
using slimrt::PagedDecodeShape;
using slimrt::PagedPrefillArgs;

#ifdef SLIMRT_WITH_CUDA
void cuda_or_throw(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorString(status));
  }
}
#define TEST_CUDA(call) cuda_or_throw((call), #call)

// A device copy of a host vector (or an uninitialised buffer of n elements).
template <class T>
class Device {
 public:
  explicit Device(size_t n) : n_(n) {
    TEST_CUDA(cudaMalloc(&ptr_, std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit Device(const std::vector<T>& host) : Device(host.size()) {
    TEST_CUDA(cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
  }
  ~Device() { cudaFree(ptr_); }
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;
  T* get() const { return ptr_; }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    TEST_CUDA(cudaMemcpy(host.data(), ptr_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  void fill_bytes(int byte) {
    TEST_CUDA(cudaMemset(ptr_, byte, std::max<size_t>(n_, 1) * sizeof(T)));
  }

 private:
  T* ptr_ = nullptr;
  size_t n_;
};

// Seeded random data: BF16 (or FP32) normal values times a scale.
struct Random {
  std::mt19937 engine{1234};
  std::normal_distribution<float> normal{0.0f, 1.0f};

  std::vector<float> f32(size_t n, float scale) {
    std::vector<float> v(n);
    for (auto& x : v) x = normal(engine) * scale;
    return v;
  }
  std::vector<uint16_t> bf16(size_t n, float scale) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = slimrt::cpu::f32_to_bf16(normal(engine) * scale);
    return v;
  }
};

// Page table: each sequence owns ceil(ctx / page_size) pages drawn from a shuffled pool with
// some pages left over, so that page order and page identity are both exercised; those before
// firsts[s] (when given) are not listed, as the engine frees what a sliding window no longer sees.
struct PageTable {
  std::vector<int32_t> indptr{0};
  std::vector<int32_t> indices;
  std::vector<int32_t> firsts;  // cpu::PagedBatch::first_pages
  int64_t pool_pages = 0;
};

PageTable shuffled_pages(const std::vector<int32_t>& contexts, int64_t page_size, std::mt19937& rng,
                         std::vector<int32_t> firsts = {}) {
  PageTable table;
  firsts.resize(contexts.size(), 0);
  table.firsts = firsts;
  for (size_t s = 0; s < contexts.size(); ++s) {
    table.indptr.push_back(table.indptr.back() +
                           static_cast<int32_t>((contexts[s] + page_size - 1) / page_size) -
                           firsts[s]);
  }
  const int64_t used = table.indptr.back();
  table.pool_pages = used + used / 8 + 3;
  std::vector<int32_t> perm(table.pool_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  table.indices.assign(perm.begin(), perm.begin() + used);
  return table;
}

// With `unlist`, each sequence's first listed page: the first its first query sees through a
// sliding window of `window` tokens.
std::vector<int32_t> unseen_pages(const std::vector<int32_t>& queries,
                                  const std::vector<int32_t>& contexts, int64_t window, bool unlist,
                                  int64_t page_size) {
  std::vector<int32_t> firsts(contexts.size(), 0);
  if (!unlist || window == 0) return firsts;
  for (size_t s = 0; s < contexts.size(); ++s) {
    const int64_t first_pos = contexts[s] - queries[s];
    firsts[s] = static_cast<int32_t>(std::max<int64_t>(0, first_pos - window + 1) / page_size);
  }
  return firsts;
}

// The CPU reference's view of a BF16 page pool.
slimrt::cpu::PagedKv bf16_pool(const std::vector<uint16_t>& k, const std::vector<uint16_t>& v,
                               int64_t page_size, int64_t kv_heads, int64_t head_dim) {
  slimrt::cpu::PagedKv kv;
  kv.k_pages = const_cast<uint16_t*>(k.data());
  kv.v_pages = const_cast<uint16_t*>(v.data());
  kv.dtype = slimrt::cpu::KvDtype::kBf16;
  kv.page_size = page_size;
  kv.kv_heads = kv_heads;
  kv.head_dim = head_dim;
  return kv;
}

// Relative L2 error of one head_dim row of BF16 results against the FP32 reference.
double relative_error(const uint16_t* got, const float* expected, int64_t n) {
  double err = 0.0, norm = 0.0;
  for (int64_t d = 0; d < n; ++d) {
    const double e = expected[d];
    const double g = slimrt::cpu::bf16_to_f32(got[d]);
    err += (g - e) * (g - e);
    norm += e * e;
  }
  return std::sqrt(err / std::max(norm, 1e-30));
}
#endif

struct Case {
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t page_size;
  std::vector<int32_t> contexts;
  int32_t force_splits;  // 0 = the plan's heuristic
  int64_t window = 0;    // sliding window (0: none)
  bool unlist = false;   // pages before the window left out of the table
};

std::string describe(const Case& c) {
  std::string s = "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " d " +
                  std::to_string(c.head_dim) + " page " + std::to_string(c.page_size) + " splits " +
                  std::to_string(c.force_splits) + " window " + std::to_string(c.window) +
                  (c.unlist ? " unlisted" : "") + " contexts";
  for (int32_t ctx : c.contexts) s += " " + std::to_string(ctx);
  return s;
}

// Runs one case on both backends and checks the relative L2 error of every (sequence, head).
void check_against_cpu(const Case& c) {
#ifdef SLIMRT_WITH_CUDA
  SCOPED_TRACE(describe(c));
  using slimrt::cpu::bf16_to_f32;
  const int64_t seqs = static_cast<int64_t>(c.contexts.size());
  const int64_t hd = c.head_dim;
  Random rng;
  const PageTable table = shuffled_pages(c.contexts, c.page_size, rng.engine,
                                         unseen_pages(std::vector<int32_t>(c.contexts.size(), 1),
                                                      c.contexts, c.window, c.unlist, c.page_size));
  const std::vector<int32_t>& page_indptr = table.indptr;
  const std::vector<int32_t>& page_indices = table.indices;

  const size_t pool_elems = static_cast<size_t>(table.pool_pages * c.page_size * c.kv_heads * hd);
  // q scaled up so that the softmax is far from uniform: a wrong position or page shows.
  const std::vector<uint16_t> q = rng.bf16(seqs * c.heads * hd, 2.0f);
  const std::vector<uint16_t> k = rng.bf16(pool_elems, 1.0f);
  const std::vector<uint16_t> v = rng.bf16(pool_elems, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // CPU reference on the same values: q widened to FP32, pages as BF16.
  std::vector<float> q32(q.size());
  for (size_t i = 0; i < q.size(); ++i) q32[i] = bf16_to_f32(q[i]);
  std::vector<int32_t> q_indptr(seqs + 1);
  std::iota(q_indptr.begin(), q_indptr.end(), 0);
  const slimrt::cpu::PagedKv kv = bf16_pool(k, v, c.page_size, c.kv_heads, hd);
  slimrt::cpu::PagedBatch batch;
  batch.q_indptr = q_indptr.data();
  batch.page_indptr = page_indptr.data();
  batch.page_indices = page_indices.data();
  batch.context_lens = c.contexts.data();
  batch.first_pages = table.firsts.data();
  batch.window = c.window;
  batch.num_seqs = seqs;
  std::vector<float> expected(seqs * c.heads * hd);
  slimrt::ThreadPool pool(8);
  slimrt::cpu::paged_attention(q32.data(), kv, batch, c.heads, scale, expected.data(), pool);

  Device<uint16_t> dq(q), dk(k), dv(v);
  Device<int32_t> dindptr(page_indptr), dindices(page_indices), dctx(c.contexts),
      dfirsts(table.firsts);
  Device<uint16_t> dout(q.size());
  const PagedDecodeShape shape{seqs, c.heads, c.kv_heads, hd, c.page_size};
  int64_t max_ctx = *std::max_element(c.contexts.begin(), c.contexts.end());
  if (c.window > 0) max_ctx = std::min(max_ctx, c.window);  // what a query reads
  const PagedDecodePlan plan = slimrt::paged_decode_attention_plan(shape, max_ctx, c.force_splits);
  // A window of one position leaves nothing to split: the plan is sized by what a query reads.
  if (c.force_splits > 1 && max_ctx > 1) {
    EXPECT_GT(plan.splits, 1);
    EXPECT_GT(plan.workspace_bytes, 0);
  }
  Device<char> workspace(static_cast<size_t>(plan.workspace_bytes));
  PagedDecodeArgs args;
  args.q = dq.get();
  args.k_pages = dk.get();
  args.v_pages = dv.get();
  args.page_indptr = dindptr.get();
  args.page_indices = dindices.get();
  args.context_lens = dctx.get();
  args.first_pages = dfirsts.get();
  args.window = c.window;
  args.out = dout.get();
  args.scale = scale;

  for (int poison : {0xFF, 0x5A}) {  // 0xFFFF is a NaN, 0x5A5A a plausible value
    dout.fill_bytes(poison);
    workspace.fill_bytes(poison);
    slimrt::paged_decode_attention_cuda(plan, args, workspace.get(), plan.workspace_bytes, nullptr);
    TEST_CUDA(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = dout.download();
    for (int64_t s = 0; s < seqs; ++s) {
      for (int64_t h = 0; h < c.heads; ++h) {
        const size_t i = static_cast<size_t>((s * c.heads + h) * hd);
        const double rel = relative_error(&got[i], &expected[i], hd);
        ASSERT_LT(rel, 1e-2) << "sequence " << s << " (context " << c.contexts[s] << ") head " << h
                             << " poison " << poison;
      }
    }
  }
#else
  (void)c;
#endif
}

#define SKIP_WITHOUT_CUDA() \
  if (!slimrt::cuda_available()) GTEST_SKIP() << "no CUDA device"

const std::vector<int32_t> kRagged = {1, 15, 16, 17, 1000, 5000};

TEST(PagedDecodeAttentionCuda, MatchesCpuForRaggedGqaBatch) {
  SKIP_WITHOUT_CUDA();
  check_against_cpu({32, 8, 128, 16, kRagged, 0});
}

TEST(PagedDecodeAttentionCuda, MatchesCpuForMultiHeadAttention) {
  SKIP_WITHOUT_CUDA();
  check_against_cpu({8, 8, 128, 16, kRagged, 0});
}

TEST(PagedDecodeAttentionCuda, MatchesCpuForHeadDim64) {
  SKIP_WITHOUT_CUDA();
  check_against_cpu({32, 8, 64, 16, kRagged, 0});
  check_against_cpu({8, 8, 64, 16, kRagged, 0});
}

TEST(PagedDecodeAttentionCuda, MatchesCpuForPageSizeOne) {
  SKIP_WITHOUT_CUDA();
  check_against_cpu({32, 8, 128, 1, kRagged, 0});
  check_against_cpu({8, 8, 64, 1, kRagged, 0});
}

TEST(PagedDecodeAttentionCuda, MatchesCpuForOtherGroupSizes) {
  SKIP_WITHOUT_CUDA();
  check_against_cpu({16, 8, 128, 16, kRagged, 0});
  check_against_cpu({64, 8, 128, 16, kRagged, 0});
  check_against_cpu({32, 4, 64, 32, kRagged, 0});
  // The groups that are not powers of two: SmolLM2's 3, Qwen2.5-14B's 5, Qwen2.5's 6 and 7.
  check_against_cpu({24, 8, 128, 16, kRagged, 0});
  check_against_cpu({9, 3, 64, 16, kRagged, 5});
  check_against_cpu({40, 8, 128, 16, kRagged, 0});
  check_against_cpu({12, 2, 128, 16, kRagged, 3});
  check_against_cpu({28, 4, 128, 16, kRagged, 0});
}

TEST(PagedDecodeAttentionCuda, MergesForcedSplitsOfRaggedContexts) {
  SKIP_WITHOUT_CUDA();
  // 7 splits of 736 positions for the longest sequence: the short ones own fewer splits than the
  // grid has, and their empty splits must be left out of the merge.
  check_against_cpu({32, 8, 128, 16, kRagged, 7});
  check_against_cpu({8, 8, 64, 1, kRagged, 3});
}

TEST(PagedDecodeAttentionCuda, MergesManySplitsOfOneLongContext) {
  SKIP_WITHOUT_CUDA();
  check_against_cpu({32, 8, 128, 16, {32768}, 0});
  check_against_cpu({32, 8, 128, 16, {32768}, 128});
}

// Sliding windows shorter and longer than a split's chunk, over contexts shorter and longer than
// the window; the pages before each window listed, and left out as the engine frees them.
TEST(PagedDecodeAttentionCuda, SlidingWindowMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (int64_t window : {1, 7, 64, 300, 4096}) {
    for (bool unlist : {false, true}) {
      check_against_cpu({32, 8, 128, 16, kRagged, 0, window, unlist});
      check_against_cpu({32, 8, 128, 16, kRagged, 5, window, unlist});
      check_against_cpu({8, 8, 64, 1, kRagged, 3, window, unlist});
    }
  }
}

TEST(PagedDecodeAttentionCuda, PlanSplitsSmallBatchesAndNeedsNoWorkspaceUnsplit) {
  SKIP_WITHOUT_CUDA();
  const auto plan = slimrt::paged_decode_attention_plan({1, 32, 8, 128, 16}, 32768);
  EXPECT_GT(plan.splits, 8);
  EXPECT_GE(static_cast<int64_t>(plan.splits) * plan.chunk_tokens, 32768);
  const auto one = slimrt::paged_decode_attention_plan({1, 32, 8, 128, 16}, 32768, 1);
  EXPECT_EQ(one.splits, 1);
  EXPECT_EQ(one.workspace_bytes, 0);
}

TEST(PagedDecodeAttentionCuda, RejectsUnsupportedShapes) {
  SKIP_WITHOUT_CUDA();
  EXPECT_THROW(slimrt::paged_decode_attention_plan({1, 32, 8, 96, 16}, 100), slimrt::Error);
  EXPECT_THROW(slimrt::paged_decode_attention_plan({1, 32, 8, 128, 12}, 100), slimrt::Error);
  EXPECT_THROW(slimrt::paged_decode_attention_plan({1, 72, 8, 128, 16}, 100), slimrt::Error);
  EXPECT_THROW(slimrt::paged_decode_attention_plan({1, 30, 8, 128, 16}, 100), slimrt::Error);
  const auto plan = slimrt::paged_decode_attention_plan({1, 32, 8, 128, 16}, 32768, 4);
  PagedDecodeArgs args;  // null pointers
  EXPECT_THROW(slimrt::paged_decode_attention_cuda(plan, args, nullptr, 0, nullptr), slimrt::Error);
}

// ---- prefill ------------------------------------------------------------------------------------

struct PrefillCase {
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t page_size;
  std::vector<int32_t> queries;   // query tokens of each sequence
  std::vector<int32_t> contexts;  // its context_lens entry (>= its query tokens)
  int64_t window = 0;             // sliding window (0: none)
  bool unlist = false;            // pages before the window left out of the table
};

std::string describe(const PrefillCase& c) {
  std::string s = "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " d " +
                  std::to_string(c.head_dim) + " page " + std::to_string(c.page_size) + " window " +
                  std::to_string(c.window) + (c.unlist ? " unlisted" : "") + " queries/contexts";
  for (size_t i = 0; i < c.queries.size(); ++i) {
    s += " " + std::to_string(c.queries[i]) + "/" + std::to_string(c.contexts[i]);
  }
  return s;
}

// Runs one prefill case on both backends: the relative L2 error of every (token, head) of every
// sequence, and the output of tokens that no sequence owns left as poisoned.
void check_prefill_against_cpu(const PrefillCase& c) {
#ifdef SLIMRT_WITH_CUDA
  SCOPED_TRACE(describe(c));
  using slimrt::cpu::bf16_to_f32;
  using slimrt::cpu::f32_to_bf16;
  const int64_t seqs = static_cast<int64_t>(c.queries.size());
  const int64_t hd = c.head_dim;
  const int64_t row = c.heads * hd;  // elements of one token in q and out
  Random rng;
  const PageTable table =
      shuffled_pages(c.contexts, c.page_size, rng.engine,
                     unseen_pages(c.queries, c.contexts, c.window, c.unlist, c.page_size));

  // The sequences own tokens [kLead, q_indptr[seqs]); the kLead before and kTrail after belong
  // to none.
  constexpr int32_t kLead = 3;
  constexpr int32_t kTrail = 2;
  std::vector<int32_t> q_indptr{kLead};
  for (int32_t n : c.queries) q_indptr.push_back(q_indptr.back() + n);
  const int64_t tokens = q_indptr.back() + kTrail;
  const int32_t max_queries = *std::max_element(c.queries.begin(), c.queries.end());
  const int32_t max_context = *std::max_element(c.contexts.begin(), c.contexts.end());

  const size_t pool_elems = static_cast<size_t>(table.pool_pages * c.page_size * c.kv_heads * hd);
  // q in FP32, which the kernel rounds to BF16 itself; scaled up so that the softmax is far from
  // uniform: a wrong position or page shows.
  const std::vector<float> q = rng.f32(tokens * row, 2.0f);
  const std::vector<uint16_t> k = rng.bf16(pool_elems, 1.0f);
  const std::vector<uint16_t> v = rng.bf16(pool_elems, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // The reference sees q as the kernel's tensor cores do: rounded to BF16.
  std::vector<float> q_ref(q.size());
  for (size_t i = 0; i < q.size(); ++i) q_ref[i] = bf16_to_f32(f32_to_bf16(q[i]));
  const slimrt::cpu::PagedKv kv = bf16_pool(k, v, c.page_size, c.kv_heads, hd);
  slimrt::cpu::PagedBatch batch;
  batch.q_indptr = q_indptr.data();
  batch.page_indptr = table.indptr.data();
  batch.page_indices = table.indices.data();
  batch.context_lens = c.contexts.data();
  batch.first_pages = table.firsts.data();
  batch.window = c.window;
  batch.num_seqs = seqs;
  batch.num_tokens = q_indptr.back() - kLead;
  batch.max_query_tokens = max_queries;
  batch.max_context = max_context;
  std::vector<float> expected(tokens * row);
  slimrt::ThreadPool pool(8);
  slimrt::cpu::paged_attention(q_ref.data(), kv, batch, c.heads, scale, expected.data(), pool);

  Device<float> dq(q);
  Device<uint16_t> dk(k), dv(v);
  Device<int32_t> dq_indptr(q_indptr), dindptr(table.indptr), dindices(table.indices),
      dctx(c.contexts), dfirsts(table.firsts);
  Device<uint16_t> dout(static_cast<size_t>(tokens * row));
  PagedPrefillArgs args;
  args.q = dq.get();
  args.k_pages = dk.get();
  args.v_pages = dv.get();
  args.q_indptr = dq_indptr.get();
  args.page_indptr = dindptr.get();
  args.page_indices = dindices.get();
  args.context_lens = dctx.get();
  args.first_pages = dfirsts.get();
  args.window = c.window;
  args.out = dout.get();
  args.scale = scale;
  args.num_seqs = seqs;
  args.heads = c.heads;
  args.kv_heads = c.kv_heads;
  args.head_dim = hd;
  args.page_size = c.page_size;
  args.max_query_tokens = max_queries;

  for (int poison : {0xFF, 0x5A}) {  // 0xFFFF is a NaN, 0x5A5A a plausible value
    dout.fill_bytes(poison);
    slimrt::paged_prefill_attention_cuda(args, nullptr);
    TEST_CUDA(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = dout.download();
    for (int64_t s = 0; s < seqs; ++s) {
      for (int64_t i = 0; i < c.queries[s]; ++i) {
        for (int64_t h = 0; h < c.heads; ++h) {
          const size_t at = static_cast<size_t>((q_indptr[s] + i) * row + h * hd);
          ASSERT_LT(relative_error(&got[at], &expected[at], hd), 1e-2)
              << "sequence " << s << " (" << c.queries[s] << " queries, context " << c.contexts[s]
              << ") query " << i << " head " << h << " poison " << poison;
        }
      }
    }
    const uint16_t poisoned = static_cast<uint16_t>(poison * 0x0101);
    for (int64_t token = 0; token < tokens; ++token) {
      if (token >= kLead && token < q_indptr.back()) continue;
      for (int64_t e = 0; e < row; ++e) {
        ASSERT_EQ(got[static_cast<size_t>(token * row + e)], poisoned)
            << "token " << token << " belongs to no sequence";
      }
    }
  }
#else
  (void)c;
#endif
}

// Whole prompts (queries == context) and chunks after an earlier prefix (context > queries),
// among them a sequence with no query tokens and one with nothing at all.
const std::vector<int32_t> kQueries = {1, 17, 64, 200, 0, 1, 17, 64, 200, 0};
const std::vector<int32_t> kContexts = {1, 17, 64, 200, 90, 700, 81, 1000, 333, 0};

TEST(PagedPrefillAttentionCuda, MatchesTheCpuReference) {
  SKIP_WITHOUT_CUDA();
  check_prefill_against_cpu({32, 8, 128, 16, kQueries, kContexts});
}

TEST(PagedPrefillAttentionCuda, MatchesTheCpuReferenceForGroupsOf1And8) {
  SKIP_WITHOUT_CUDA();
  check_prefill_against_cpu({8, 8, 128, 16, kQueries, kContexts});
  check_prefill_against_cpu({64, 8, 128, 16, kQueries, kContexts});
}

TEST(PagedPrefillAttentionCuda, MatchesTheCpuReferenceForHeadDim64) {
  SKIP_WITHOUT_CUDA();
  check_prefill_against_cpu({32, 8, 64, 16, kQueries, kContexts});
  check_prefill_against_cpu({8, 8, 64, 16, kQueries, kContexts});
}

TEST(PagedPrefillAttentionCuda, MatchesTheCpuReferenceForPageSizeOne) {
  SKIP_WITHOUT_CUDA();
  check_prefill_against_cpu({32, 8, 128, 1, kQueries, kContexts});
  check_prefill_against_cpu({64, 8, 64, 1, kQueries, kContexts});
}

TEST(PagedPrefillAttentionCuda, MatchesTheCpuReferenceForOtherGroupSizes) {
  SKIP_WITHOUT_CUDA();
  check_prefill_against_cpu({24, 8, 64, 32, kQueries, kContexts});   // 3: one head per block
  check_prefill_against_cpu({16, 8, 128, 4, kQueries, kContexts});   // 2
  check_prefill_against_cpu({32, 2, 128, 16, kQueries, kContexts});  // 16: two blocks per group
}

TEST(PagedPrefillAttentionCuda, MatchesTheCpuReferenceForALongPromptAndALongChunk) {
  SKIP_WITHOUT_CUDA();
  check_prefill_against_cpu({32, 8, 128, 16, {1500, 300}, {1500, 3000}});
}

// Windows shorter than a tile of 64, between tiles, and longer than most contexts: rows of a
// block start their windows in different tiles.
TEST(PagedPrefillAttentionCuda, SlidingWindowMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (int64_t window : {1, 13, 64, 100, 4096}) {
    for (bool unlist : {false, true}) {
      check_prefill_against_cpu({32, 8, 128, 16, kQueries, kContexts, window, unlist});
      check_prefill_against_cpu({24, 8, 64, 1, kQueries, kContexts, window, unlist});
    }
  }
  check_prefill_against_cpu({32, 8, 128, 16, {1500, 300}, {1500, 3000}, 1024, true});
}

TEST(PagedPrefillAttentionCuda, FitsHeadDim64Or128WholeGroupsAndPowerOfTwoPages) {
  using slimrt::paged_prefill_attention_fits;
#ifdef SLIMRT_WITH_CUDA
  EXPECT_TRUE(paged_prefill_attention_fits(32, 8, 128, 16));
  EXPECT_TRUE(paged_prefill_attention_fits(8, 8, 64, 1));
  EXPECT_TRUE(paged_prefill_attention_fits(24, 8, 128, 16));
  EXPECT_TRUE(paged_prefill_attention_fits(32, 2, 64, 256));
#else
  EXPECT_FALSE(paged_prefill_attention_fits(32, 8, 128, 16));
#endif
  EXPECT_FALSE(paged_prefill_attention_fits(32, 8, 96, 16));
  EXPECT_FALSE(paged_prefill_attention_fits(32, 8, 256, 16));
  EXPECT_FALSE(paged_prefill_attention_fits(32, 8, 128, 12));
  EXPECT_FALSE(paged_prefill_attention_fits(32, 8, 128, 0));
  EXPECT_FALSE(paged_prefill_attention_fits(32, 8, 128, -16));
  EXPECT_FALSE(paged_prefill_attention_fits(30, 8, 128, 16));
  EXPECT_FALSE(paged_prefill_attention_fits(32, 0, 128, 16));
  EXPECT_FALSE(paged_prefill_attention_fits(0, 8, 128, 16));
}

TEST(PagedPrefillAttentionCuda, RejectsUnsupportedShapesAndNullPointers) {
  PagedPrefillArgs args;
  args.num_seqs = 1;
  args.heads = 32;
  args.kv_heads = 8;
  args.head_dim = 96;
  args.page_size = 16;
  args.max_query_tokens = 10;
  args.scale = 0.1f;
  EXPECT_THROW(slimrt::paged_prefill_attention_cuda(args, nullptr), slimrt::Error);
  args.head_dim = 128;  // a shape that fits, but null pointers
  EXPECT_THROW(slimrt::paged_prefill_attention_cuda(args, nullptr), slimrt::Error);
#ifdef SLIMRT_WITH_CUDA
  args.num_seqs = 0;  // an empty batch launches nothing, so needs no pointers
  EXPECT_NO_THROW(slimrt::paged_prefill_attention_cuda(args, nullptr));
#endif
}

// ---- compressed pages ---------------------------------------------------------------------------

struct SparseCase {
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t page_size;
  std::vector<int32_t> queries;   // query tokens of each sequence
  std::vector<int32_t> contexts;  // its context_lens entry (>= its query tokens)
  double k_sparsity;
  double v_sparsity;
  int64_t dense_tail;    // full pages left dense at the end of each sequence (the window)
  int32_t force_splits;  // decode batches: 0 = the heuristic
  int64_t window = 0;    // sliding window (0: none)
  bool unlist = false;   // pages before the window left out of the table
};

std::string describe(const SparseCase& c) {
  std::string s = "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " d " +
                  std::to_string(c.head_dim) + " page " + std::to_string(c.page_size) +
                  " sparsity " + std::to_string(c.k_sparsity) + "/" + std::to_string(c.v_sparsity) +
                  " dense tail " + std::to_string(c.dense_tail) + " splits " +
                  std::to_string(c.force_splits) + " window " + std::to_string(c.window) +
                  (c.unlist ? " unlisted" : "") + " queries/contexts";
  for (size_t i = 0; i < c.queries.size(); ++i) {
    s += " " + std::to_string(c.queries[i]) + "/" + std::to_string(c.contexts[i]);
  }
  return s;
}

// Each sequence's full pages but the last dense_tail are compressed (cpu::kv_compress, into
// shuffled compressed ids) and their dense copies overwritten with NaN, so that reading a dense
// page where its records belong shows; then the CUDA kernel must match the CPU kernel.
void check_sparse_against_cpu(const SparseCase& c) {
#ifdef SLIMRT_WITH_CUDA
  SCOPED_TRACE(describe(c));
  using slimrt::cpu::bf16_to_f32;
  using slimrt::cpu::f32_to_bf16;
  const int64_t seqs = static_cast<int64_t>(c.queries.size());
  const int64_t hd = c.head_dim;
  const int64_t row = c.heads * hd;
  Random rng;
  PageTable table =
      shuffled_pages(c.contexts, c.page_size, rng.engine,
                     unseen_pages(c.queries, c.contexts, c.window, c.unlist, c.page_size));
  std::vector<int32_t> q_indptr{0};
  for (int32_t n : c.queries) q_indptr.push_back(q_indptr.back() + n);
  const int64_t tokens = q_indptr.back();
  const int32_t max_queries = *std::max_element(c.queries.begin(), c.queries.end());
  const int32_t max_context = *std::max_element(c.contexts.begin(), c.contexts.end());

  const int64_t page_elems = c.page_size * c.kv_heads * hd;
  const std::vector<float> q = rng.f32(tokens * row, 2.0f);
  std::vector<uint16_t> k = rng.bf16(table.pool_pages * page_elems, 1.0f);
  std::vector<uint16_t> v = rng.bf16(table.pool_pages * page_elems, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  std::vector<int32_t> src, at;  // dense page ids to compress and where they sit in the table
  for (int64_t s = 0; s < seqs; ++s) {
    const int64_t full = c.contexts[s] / c.page_size - table.firsts[s];  // listed full pages
    for (int64_t i = 0; i < full - c.dense_tail; ++i) {
      at.push_back(table.indptr[s] + static_cast<int32_t>(i));
      src.push_back(table.indices[at.back()]);
    }
  }
  const int64_t compressed_pages = static_cast<int64_t>(src.size()) + 3;  // some left unused
  std::vector<int32_t> dst(compressed_pages);
  std::iota(dst.begin(), dst.end(), static_cast<int32_t>(table.pool_pages));
  std::shuffle(dst.begin(), dst.end(), rng.engine);
  dst.resize(src.size());

  slimrt::cpu::PagedKv kv = bf16_pool(k, v, c.page_size, c.kv_heads, hd);
  kv.dense_pages = table.pool_pages;
  kv.k_kept = slimrt::kv_kept_count(hd, c.k_sparsity);
  kv.v_kept = slimrt::kv_kept_count(hd, c.v_sparsity);
  const int64_t kb = slimrt::kv_record_bytes(hd, kv.k_kept);
  const int64_t vb = slimrt::kv_record_bytes(hd, kv.v_kept);
  const int64_t records = compressed_pages * c.page_size * c.kv_heads;
  std::vector<uint8_t> k_records(records * kb + slimrt::kKvRecordTailPad, 0xAB);
  std::vector<uint8_t> v_records(records * vb + slimrt::kKvRecordTailPad, 0xAB);
  kv.k_records = k_records.data();
  kv.v_records = v_records.data();
  slimrt::ThreadPool pool(8);
  slimrt::cpu::kv_compress(kv, src.data(), dst.data(), static_cast<int64_t>(src.size()), pool);
  for (size_t i = 0; i < src.size(); ++i) {
    table.indices[at[i]] = dst[i];
    std::fill_n(k.begin() + src[i] * page_elems, page_elems, uint16_t{0xFFFF});
    std::fill_n(v.begin() + src[i] * page_elems, page_elems, uint16_t{0xFFFF});
  }

  std::vector<float> q_ref(q.size());  // q as the kernel's tensor cores see it
  for (size_t i = 0; i < q.size(); ++i) q_ref[i] = bf16_to_f32(f32_to_bf16(q[i]));
  slimrt::cpu::PagedBatch batch;
  batch.q_indptr = q_indptr.data();
  batch.page_indptr = table.indptr.data();
  batch.page_indices = table.indices.data();
  batch.context_lens = c.contexts.data();
  batch.first_pages = table.firsts.data();
  batch.window = c.window;
  batch.num_seqs = seqs;
  batch.num_tokens = tokens;
  batch.max_query_tokens = max_queries;
  batch.max_context = max_context;
  std::vector<float> expected(tokens * row);
  slimrt::cpu::paged_attention(q_ref.data(), kv, batch, c.heads, scale, expected.data(), pool);

  Device<float> dq(q);
  Device<uint16_t> dk(k), dv(v);
  Device<uint8_t> dk_records(k_records), dv_records(v_records);
  Device<int32_t> dq_indptr(q_indptr), dindptr(table.indptr), dindices(table.indices),
      dctx(c.contexts), dfirsts(table.firsts);
  Device<uint16_t> dout(static_cast<size_t>(tokens * row));
  const int64_t workspace_bytes = slimrt::split_workspace_bytes(seqs * c.heads, hd, 1024);
  Device<char> workspace(static_cast<size_t>(workspace_bytes));
  slimrt::SparsePagedArgs args;
  args.q = dq.get();
  args.k_pages = dk.get();
  args.v_pages = dv.get();
  args.k_records = dk_records.get();
  args.v_records = dv_records.get();
  args.dense_pages = table.pool_pages;
  args.k_record_bytes = kb;
  args.v_record_bytes = vb;
  args.q_indptr = dq_indptr.get();
  args.page_indptr = dindptr.get();
  args.page_indices = dindices.get();
  args.context_lens = dctx.get();
  args.out = dout.get();
  args.scale = scale;
  args.num_seqs = seqs;
  args.heads = c.heads;
  args.kv_heads = c.kv_heads;
  args.head_dim = hd;
  args.page_size = c.page_size;
  args.max_query_tokens = max_queries;
  args.max_context = max_context;
  args.force_splits = c.force_splits;
  args.first_pages = dfirsts.get();
  args.window = c.window;

  for (int poison : {0xFF, 0x5A}) {
    dout.fill_bytes(poison);
    workspace.fill_bytes(poison);
    slimrt::sparse_paged_attention_cuda(args, workspace.get(), workspace_bytes, nullptr);
    TEST_CUDA(cudaDeviceSynchronize());
    const std::vector<uint16_t> got = dout.download();
    for (int64_t s = 0; s < seqs; ++s) {
      for (int64_t i = 0; i < c.queries[s]; ++i) {
        for (int64_t h = 0; h < c.heads; ++h) {
          const size_t i_at = static_cast<size_t>((q_indptr[s] + i) * row + h * hd);
          ASSERT_LT(relative_error(&got[i_at], &expected[i_at], hd), 1e-2)
              << "sequence " << s << " (" << c.queries[s] << " queries, context " << c.contexts[s]
              << ") query " << i << " head " << h << " poison " << poison;
        }
      }
    }
  }
#else
  (void)c;
#endif
}

const std::vector<int32_t> kDecodeOnes(kRagged.size(), 1);

TEST(SparsePagedAttentionCuda, DecodeMatchesCpuForRaggedGqaBatch) {
  SKIP_WITHOUT_CUDA();
  check_sparse_against_cpu({32, 8, 128, 16, kDecodeOnes, kRagged, 0.7, 0.7, 2, 0});
  check_sparse_against_cpu({32, 8, 128, 16, kDecodeOnes, kRagged, 0.5, 0.7, 2, 0});
  check_sparse_against_cpu({32, 8, 128, 16, kDecodeOnes, kRagged, 0.5, 0.5, 0, 0});
}

TEST(SparsePagedAttentionCuda, DecodeMatchesCpuForGroups1And3And8AndHeadDim64) {
  SKIP_WITHOUT_CUDA();
  check_sparse_against_cpu({8, 8, 128, 16, kDecodeOnes, kRagged, 0.7, 0.7, 1, 0});
  check_sparse_against_cpu({24, 8, 64, 32, kDecodeOnes, kRagged, 0.7, 0.5, 1, 0});
  check_sparse_against_cpu({64, 8, 128, 1, kDecodeOnes, kRagged, 0.7, 0.7, 16, 0});
  check_sparse_against_cpu({32, 8, 64, 16, kDecodeOnes, kRagged, 0.7, 0.7, 2, 0});
  check_sparse_against_cpu({16, 2, 64, 4, kDecodeOnes, kRagged, 0.3, 0.6, 3, 0});
}

TEST(SparsePagedAttentionCuda, DecodeMergesForcedSplits) {
  SKIP_WITHOUT_CUDA();
  check_sparse_against_cpu({32, 8, 128, 16, kDecodeOnes, kRagged, 0.7, 0.7, 2, 7});
  check_sparse_against_cpu({32, 8, 128, 16, {1}, {32768}, 0.7, 0.7, 2, 0});
  check_sparse_against_cpu({8, 8, 64, 1, kDecodeOnes, kRagged, 0.5, 0.5, 4, 3});
}

// Sparsity 0 keeps every value: records wider than a dense row take the wide staging slots.
TEST(SparsePagedAttentionCuda, KeepsEveryValueAtSparsityZero) {
  SKIP_WITHOUT_CUDA();
  check_sparse_against_cpu({32, 8, 128, 16, kDecodeOnes, kRagged, 0.0, 0.0, 1, 0});
  check_sparse_against_cpu({32, 8, 64, 16, kQueries, kContexts, 0.0, 0.05, 1, 0});
}

TEST(SparsePagedAttentionCuda, PrefillMatchesCpuOverCompressedPrefixes) {
  SKIP_WITHOUT_CUDA();
  check_sparse_against_cpu({32, 8, 128, 16, kQueries, kContexts, 0.7, 0.7, 2, 0});
  check_sparse_against_cpu({8, 8, 128, 16, kQueries, kContexts, 0.5, 0.7, 0, 0});
  check_sparse_against_cpu({24, 8, 64, 32, kQueries, kContexts, 0.7, 0.7, 1, 0});
  check_sparse_against_cpu({64, 8, 64, 1, kQueries, kContexts, 0.7, 0.5, 8, 0});
  check_sparse_against_cpu({32, 8, 128, 16, {300, 1}, {3000, 2000}, 0.7, 0.7, 2, 0});
}

TEST(SparsePagedAttentionCuda, WithoutCompressedPagesMatchesTheDenseKernels) {
  SKIP_WITHOUT_CUDA();
  check_sparse_against_cpu({32, 8, 128, 16, kDecodeOnes, kRagged, 0.7, 0.7, 1000, 0});
  check_sparse_against_cpu({32, 8, 128, 16, kQueries, kContexts, 0.7, 0.7, 1000, 0});
}

// Sliding windows over block tables mixing both kinds of page, decode (split and not) and prefill,
// with the pages before each window listed and left out.
TEST(SparsePagedAttentionCuda, SlidingWindowMatchesCpu) {
  SKIP_WITHOUT_CUDA();
  for (int64_t window : {1, 13, 100, 4096}) {
    for (bool unlist : {false, true}) {
      check_sparse_against_cpu(
          {32, 8, 128, 16, kDecodeOnes, kRagged, 0.7, 0.7, 2, 0, window, unlist});
      check_sparse_against_cpu(
          {32, 8, 128, 16, kDecodeOnes, kRagged, 0.5, 0.5, 1, 7, window, unlist});
      check_sparse_against_cpu(
          {32, 8, 64, 16, kQueries, kContexts, 0.7, 0.7, 1, 0, window, unlist});
    }
  }
}

TEST(SparsePagedAttentionCuda, RejectsUnsupportedShapesAndBadRecords) {
  using slimrt::sparse_paged_attention_fits;
#ifdef SLIMRT_WITH_CUDA
  EXPECT_TRUE(sparse_paged_attention_fits(32, 8, 128, 16));
  EXPECT_TRUE(sparse_paged_attention_fits(24, 8, 64, 1));
#endif
  EXPECT_FALSE(sparse_paged_attention_fits(32, 8, 96, 16));
  EXPECT_FALSE(sparse_paged_attention_fits(32, 8, 128, 12));
  EXPECT_FALSE(sparse_paged_attention_fits(30, 8, 128, 16));
  slimrt::SparsePagedArgs args;
  args.num_seqs = 1;
  args.heads = 32;
  args.kv_heads = 8;
  args.head_dim = 96;
  args.page_size = 16;
  args.max_query_tokens = 1;
  args.k_record_bytes = args.v_record_bytes = 92;
  args.scale = 0.1f;
  EXPECT_THROW(slimrt::sparse_paged_attention_cuda(args, nullptr, 0, nullptr), slimrt::Error);
#ifdef SLIMRT_WITH_CUDA
  args.head_dim = 128;
  args.k_record_bytes = 91;  // odd: not a record of BF16 values
  EXPECT_THROW(slimrt::sparse_paged_attention_cuda(args, nullptr, 0, nullptr), slimrt::Error);
  args.k_record_bytes = 92;  // a shape that fits, but null pointers
  EXPECT_THROW(slimrt::sparse_paged_attention_cuda(args, nullptr, 0, nullptr), slimrt::Error);
#endif
}

}  // namespace
