// CUDA decode attention against the CPU reference (cpu::paged_attention) on the same BF16 data:
// random q/K/V, page indices shuffled through a pool larger than the batch needs, ragged contexts,
// GQA and plain multi-head, head_dim 128 and 64, page sizes 16 and 1, with and without splits.
// The output is poisoned before every run. Without a CUDA device every test is skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "cpu/bf16.h"
#include "cpu/kernels.h"
#include "slimrt/attention_cuda.h"
#include "slimrt/df11_cuda.h"
#include "slimrt/error.h"
#include "slimrt/thread_pool.h"

#ifdef SLIMRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

using slimrt::PagedDecodeArgs;
using slimrt::PagedDecodePlan;
using slimrt::PagedDecodeShape;

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
#endif

struct Case {
  int64_t heads;
  int64_t kv_heads;
  int64_t head_dim;
  int64_t page_size;
  std::vector<int32_t> contexts;
  int32_t force_splits;  // 0 = the plan's heuristic
};

std::string describe(const Case& c) {
  std::string s = "heads " + std::to_string(c.heads) + "/" + std::to_string(c.kv_heads) + " d " +
                  std::to_string(c.head_dim) + " page " + std::to_string(c.page_size) + " splits " +
                  std::to_string(c.force_splits) + " contexts";
  for (int32_t ctx : c.contexts) s += " " + std::to_string(ctx);
  return s;
}

// Runs one case on both backends and checks the relative L2 error of every (sequence, head).
void check_against_cpu(const Case& c) {
#ifdef SLIMRT_WITH_CUDA
  SCOPED_TRACE(describe(c));
  using slimrt::cpu::bf16_to_f32;
  using slimrt::cpu::f32_to_bf16;
  const int64_t seqs = static_cast<int64_t>(c.contexts.size());
  const int64_t hd = c.head_dim;
  std::mt19937 rng(1234);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto random_bf16 = [&](size_t n, float scale) {
    std::vector<uint16_t> v(n);
    for (auto& x : v) x = f32_to_bf16(normal(rng) * scale);
    return v;
  };

  // Page table: each sequence owns ceil(ctx / page_size) pages drawn from a shuffled pool with
  // some pages left over, so that page order and page identity are both exercised.
  std::vector<int32_t> page_indptr{0};
  for (int32_t ctx : c.contexts) {
    page_indptr.push_back(page_indptr.back() +
                          static_cast<int32_t>((ctx + c.page_size - 1) / c.page_size));
  }
  const int64_t used = page_indptr.back();
  const int64_t pool_pages = used + used / 8 + 3;
  std::vector<int32_t> perm(pool_pages);
  std::iota(perm.begin(), perm.end(), 0);
  std::shuffle(perm.begin(), perm.end(), rng);
  const std::vector<int32_t> page_indices(perm.begin(), perm.begin() + used);

  const size_t pool_elems = static_cast<size_t>(pool_pages * c.page_size * c.kv_heads * hd);
  // q scaled up so that the softmax is far from uniform: a wrong position or page shows.
  const std::vector<uint16_t> q = random_bf16(seqs * c.heads * hd, 2.0f);
  const std::vector<uint16_t> k = random_bf16(pool_elems, 1.0f);
  const std::vector<uint16_t> v = random_bf16(pool_elems, 1.0f);
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));

  // CPU reference on the same values: q widened to FP32, pages as BF16.
  std::vector<float> q32(q.size());
  for (size_t i = 0; i < q.size(); ++i) q32[i] = bf16_to_f32(q[i]);
  std::vector<int32_t> q_indptr(seqs + 1);
  std::iota(q_indptr.begin(), q_indptr.end(), 0);
  slimrt::cpu::PagedKv kv;
  kv.k_pages = const_cast<uint16_t*>(k.data());
  kv.v_pages = const_cast<uint16_t*>(v.data());
  kv.dtype = slimrt::cpu::KvDtype::kBf16;
  kv.page_size = c.page_size;
  kv.kv_heads = c.kv_heads;
  kv.head_dim = hd;
  slimrt::cpu::PagedBatch batch;
  batch.q_indptr = q_indptr.data();
  batch.page_indptr = page_indptr.data();
  batch.page_indices = page_indices.data();
  batch.context_lens = c.contexts.data();
  batch.num_seqs = seqs;
  std::vector<float> expected(seqs * c.heads * hd);
  slimrt::ThreadPool pool(8);
  slimrt::cpu::paged_attention(q32.data(), kv, batch, c.heads, scale, expected.data(), pool);

  Device<uint16_t> dq(q), dk(k), dv(v);
  Device<int32_t> dindptr(page_indptr), dindices(page_indices), dctx(c.contexts);
  Device<uint16_t> dout(q.size());
  const PagedDecodeShape shape{seqs, c.heads, c.kv_heads, hd, c.page_size};
  const int32_t max_ctx = *std::max_element(c.contexts.begin(), c.contexts.end());
  const PagedDecodePlan plan = slimrt::paged_decode_attention_plan(shape, max_ctx, c.force_splits);
  if (c.force_splits > 1) {
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
        double err = 0.0, norm = 0.0;
        for (int64_t d = 0; d < hd; ++d) {
          const size_t i = static_cast<size_t>((s * c.heads + h) * hd + d);
          const double e = expected[i];
          const double g = bf16_to_f32(got[i]);
          err += (g - e) * (g - e);
          norm += e * e;
        }
        const double rel = std::sqrt(err / std::max(norm, 1e-30));
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
  EXPECT_THROW(slimrt::paged_decode_attention_plan({1, 24, 8, 128, 16}, 100), slimrt::Error);
  EXPECT_THROW(slimrt::paged_decode_attention_plan({1, 30, 8, 128, 16}, 100), slimrt::Error);
  const auto plan = slimrt::paged_decode_attention_plan({1, 32, 8, 128, 16}, 32768, 4);
  PagedDecodeArgs args;  // null pointers
  EXPECT_THROW(slimrt::paged_decode_attention_cuda(plan, args, nullptr, 0, nullptr), slimrt::Error);
}

}  // namespace
