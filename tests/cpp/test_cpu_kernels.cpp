// CPU kernels against naive double-precision references (kernel_references.h), on fresh seeded
// random inputs, for every instruction-set variant this machine can run (isa.h). Outputs are
// poisoned with NaN first, so an element a kernel forgets to write fails the comparison.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "check.h"
#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "error_message.h"
#include "kernel_references.h"
#include "philox.h"
#include "sample_rules.h"
#include "sample_test_rows.h"
#include "thread_pool.h"

namespace {

using slimrt::Philox4x32;
using slimrt::philox4x32_10;
using slimrt::ThreadPool;
using slimrt::test::from_bf16;
using slimrt::test::make_paged_cache;
using slimrt::test::PagedCache;
using slimrt::test::random_bf16;
using slimrt::test::random_floats;
using slimrt::test::reference_matmul;
using slimrt::test::reference_paged_attention;
using slimrt::test::reference_rms_norm;
using slimrt::test::reference_rope;
using slimrt::test::reference_sample;
using slimrt::test::reference_silu_mul;
using slimrt::test::rel_l2;
using slimrt::test::sample_test_rows;
using slimrt::test::SeqSpec;
using slimrt::test::to_bf16;
namespace cpu = slimrt::cpu;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

// Runs body once per instruction-set variant available here, each under a trace naming it.
template <class Body>
void for_each_isa(Body body) {
  const cpu::Isa previous = cpu::set_isa_cap(cpu::Isa::kAvx512);
  for (cpu::Isa isa : {cpu::Isa::kScalar, cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
    if (static_cast<int>(isa) > static_cast<int>(cpu::detected_isa())) break;
    cpu::set_isa_cap(isa);
    SCOPED_TRACE(cpu::isa_name(isa));
    body();
  }
  cpu::set_isa_cap(previous);
}

// ---------------------------------------------------------------------------------------------
// ThreadPool

TEST(ThreadPool, RangesCoverEveryIndexExactlyOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {1, 2, 3, 7, 8, 9, 100, 12345}) {
      std::vector<std::atomic<int>> hits(n);
      std::atomic<int> calls{0};
      pool.run(n, [&](int64_t begin, int64_t end) {
        EXPECT_LT(begin, end);
        calls.fetch_add(1);
        for (int64_t i = begin; i < end; ++i) hits[i].fetch_add(1);
      });
      EXPECT_LE(calls.load(), std::min<int64_t>(n, threads)) << n;
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
    }
  }
}

TEST(ThreadPool, ZeroItemsCallsNothing) {
  ThreadPool pool(4);
  bool called = false;
  pool.run(0, [&](int64_t, int64_t) { called = true; });
  pool.run(-5, [&](int64_t, int64_t) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ThreadPool, FewerItemsThanThreadsGivesOneItemPerRange) {
  ThreadPool pool(8);
  std::vector<std::atomic<int>> hits(3);
  pool.run(3, [&](int64_t begin, int64_t end) {
    EXPECT_EQ(end - begin, 1);
    hits[begin].fetch_add(1);
  });
  for (auto& h : hits) EXPECT_EQ(h.load(), 1);
}

TEST(ThreadPool, ExceptionIsRethrownAfterEveryRangeFinished) {
  ThreadPool pool(4);
  for (int64_t thrower : {0, 2, 3}) {  // the caller's own range, and workers' ranges
    std::vector<std::atomic<int>> done(4);
    EXPECT_THROW(pool.run(4,
                          [&](int64_t begin, int64_t) {
                            if (begin == thrower) throw std::runtime_error("boom");
                            std::this_thread::sleep_for(std::chrono::milliseconds(5));
                            done[begin].fetch_add(1);
                          }),
                 std::runtime_error);
    for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(done[i].load(), i == thrower ? 0 : 1);
  }
  // The pool still works, and a failure does not leak into the next run.
  std::atomic<int64_t> sum{0};
  pool.run(1000, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum += i;
  });
  EXPECT_EQ(sum.load(), 999 * 1000 / 2);
}

TEST(ThreadPool, SlimrtErrorKeepsItsType) {
  ThreadPool pool(2);
  EXPECT_THROW(pool.run(2, [](int64_t b, int64_t) { SLIMRT_CHECK(b != 1, "range " << b); }),
               slimrt::Error);
}

TEST(ThreadPool, ReusedManyTimesStaysCorrect) {
  ThreadPool pool(0);
  std::vector<int64_t> partial(pool.size());
  for (int rep = 0; rep < 20000; ++rep) {
    const int64_t n = 1 + rep % 37;
    std::atomic<int64_t> sum{0};
    pool.run(n, [&](int64_t b, int64_t e) {
      int64_t s = 0;
      for (int64_t i = b; i < e; ++i) s += i + rep;
      sum += s;
    });
    ASSERT_EQ(sum.load(), n * (n - 1) / 2 + n * rep) << rep;
  }
}

TEST(ThreadPool, MoreThreadsThanCoresStayCorrect) {
  // Workers the OS has not scheduled yet must neither lose nor repeat a range.
  ThreadPool pool(4 * static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  for (int rep = 0; rep < 2000; ++rep) {
    const int64_t n = 1 + rep % 101;
    std::vector<std::atomic<int>> hits(n);
    pool.run(n, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[i].fetch_add(1);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "rep " << rep;
  }
}

TEST(ThreadPool, WorkersWakeAfterSleeping) {
  ThreadPool pool(3);
  for (int rep = 0; rep < 3; ++rep) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the spin: workers sleep
    std::vector<std::atomic<int>> hits(3);
    pool.run(3, [&](int64_t b, int64_t) { hits[b].fetch_add(1); });
    for (auto& h : hits) EXPECT_EQ(h.load(), 1);
  }
}

TEST(ThreadPool, RunInsideATaskRunsInline) {
  ThreadPool pool(4);
  std::atomic<int64_t> inner{0};
  pool.run(4, [&](int64_t, int64_t) {
    int calls = 0;
    pool.run(10, [&](int64_t b, int64_t e) {
      ++calls;
      inner += e - b;
    });
    EXPECT_EQ(calls, 1);
  });
  EXPECT_EQ(inner.load(), 40);
}

TEST(ThreadPool, ConcurrentCallersAreSerialised) {
  ThreadPool pool(3);
  auto client = [&](int64_t offset, std::atomic<bool>* ok) {
    for (int rep = 0; rep < 2000; ++rep) {
      std::atomic<int64_t> sum{0};
      pool.run(50, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) sum += i + offset;
      });
      if (sum.load() != 49 * 50 / 2 + 50 * offset) ok->store(false);
    }
  };
  std::atomic<bool> ok{true};
  std::thread a(client, 0, &ok), b(client, 1000, &ok);
  a.join();
  b.join();
  EXPECT_TRUE(ok.load());
}

TEST(ThreadPool, AcceptsNamedAndConstCallables) {
  ThreadPool pool(2);
  std::atomic<int64_t> n{0};
  auto named = [&](int64_t b, int64_t e) { n += e - b; };
  pool.run(10, named);
  const auto constant = named;
  pool.run(10, constant);
  EXPECT_EQ(n.load(), 20);
}

TEST(ThreadPool, RejectsImpossibleThreadCounts) {
  EXPECT_THROW(ThreadPool(-1), slimrt::Error);
  EXPECT_THROW(ThreadPool(1 << 20), slimrt::Error);
}

// ---------------------------------------------------------------------------------------------
// Elementwise kernels

TEST(CpuEmbed, RowsAreTheWidenedTableRows) {
  std::mt19937_64 rng(11);
  ThreadPool pool(2);
  for (int64_t hidden : {1, 7, 576}) {
    for (int64_t tokens : {1, 3, 300}) {
      const int64_t vocab = 1000;
      const auto table = random_bf16(rng, vocab * hidden);
      std::vector<int32_t> ids(tokens);
      for (auto& id : ids) id = static_cast<int32_t>(rng() % vocab);
      std::vector<float> out(tokens * hidden, kNaN);
      cpu::embed(ids.data(), tokens, table.data(), hidden, out.data(), pool);
      for (int64_t t = 0; t < tokens; ++t) {
        for (int64_t i = 0; i < hidden; ++i) {
          ASSERT_EQ(out[t * hidden + i], from_bf16(table[ids[t] * hidden + i]));
        }
      }
    }
  }
}

TEST(CpuRmsNorm, MatchesDoubleReferenceAlsoInPlace) {
  std::mt19937_64 rng(12);
  ThreadPool pool(2);
  for (int64_t rows : {1, 3, 37, 300}) {
    for (int64_t cols : {1, 7, 576, 1001}) {
      const auto x = random_floats(rng, rows * cols, -3.0f, 3.0f);
      const auto w = random_floats(rng, cols, 0.5f, 1.5f);
      const float eps = 1e-5f;
      const std::vector<double> ref = reference_rms_norm(x, w, rows, cols, eps);
      std::vector<float> out(rows * cols, kNaN);
      cpu::rms_norm(x.data(), w.data(), rows, cols, eps, out.data(), pool);
      EXPECT_LT(rel_l2(out, ref), 1e-6) << rows << "x" << cols;
      std::vector<float> inplace = x;
      cpu::rms_norm(inplace.data(), w.data(), rows, cols, eps, inplace.data(), pool);
      EXPECT_LT(rel_l2(inplace, ref), 1e-6) << rows << "x" << cols << " in place";
    }
  }
}

TEST(CpuRope, MatchesHuggingFaceRotateHalf) {
  std::mt19937_64 rng(13);
  ThreadPool pool(2);
  for (int64_t head_dim : {2, 64, 80, 128}) {
    for (int64_t tokens : {1, 3, 37}) {
      for (int64_t heads : {1, 9}) {
        const std::vector<float> inv_freq = slimrt::test::rope_inv_freq(head_dim);
        std::vector<int32_t> pos(tokens);
        for (auto& p : pos) p = static_cast<int32_t>(rng() % 4000);
        const auto x = random_floats(rng, tokens * heads * head_dim);
        const std::vector<double> ref = reference_rope(x.data(), heads * head_dim, pos.data(),
                                                       tokens, heads, head_dim, inv_freq);
        std::vector<float> got = x;
        cpu::rope(got.data(), heads * head_dim, pos.data(), tokens, heads, head_dim,
                  inv_freq.data(), pool);
        EXPECT_LT(rel_l2(got, ref), 1e-6) << head_dim << " " << tokens << " " << heads;
      }
    }
  }
}

TEST(CpuSiluMul, MatchesDoubleReference) {
  std::mt19937_64 rng(14);
  ThreadPool pool(2);
  for (int64_t tokens : {1, 3, 37}) {
    for (int64_t width : {1, 17, 1536, 2049}) {
      const auto g = random_floats(rng, tokens * width, -20.0f, 20.0f);
      const auto u = random_floats(rng, tokens * width, -2.0f, 2.0f);
      const std::vector<double> ref = reference_silu_mul(g.data(), u.data(), width, tokens, width);
      std::vector<float> out(g.size(), kNaN);
      cpu::silu_mul(g.data(), u.data(), width, tokens, width, out.data(), pool);
      EXPECT_LT(rel_l2(out, ref), 1e-6) << tokens << "x" << width;
      for (size_t i = 0; i < g.size(); ++i) {
        ASSERT_NEAR(out[i], ref[i], 1e-6 * std::abs(ref[i]) + 1e-30) << g[i];
      }
    }
  }
  // Saturation: silu(-100) is -0 up to denormals, silu(100) = 100.
  const float g[2] = {-100.0f, 100.0f}, u[2] = {1.0f, 1.0f};
  float out[2];
  cpu::silu_mul(g, u, 2, 1, 2, out, pool);
  EXPECT_NEAR(out[0], 0.0f, 1e-30f);
  EXPECT_EQ(out[1], 100.0f);
}

TEST(CpuAddInplace, AddsExactly) {
  std::mt19937_64 rng(15);
  ThreadPool pool(2);
  for (int64_t n : {0, 1, 577, 100003}) {
    auto x = random_floats(rng, n);
    const auto y = random_floats(rng, n);
    const auto x0 = x;
    cpu::add_inplace(x.data(), y.data(), n, pool);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(x[i], x0[i] + y[i]);
  }
}

// ---------------------------------------------------------------------------------------------
// matmul_bf16

void check_matmul(std::mt19937_64& rng, ThreadPool& pool, int64_t rows, int64_t k, int64_t n,
                  bool with_bias) {
  const auto x = random_floats(rng, rows * k);
  const auto w = random_bf16(rng, n * k);
  const auto bias = random_floats(rng, n);
  const auto [ref, magnitude] =
      reference_matmul(x, rows, k, w, n, with_bias ? bias.data() : nullptr);
  std::vector<float> out(rows * n, kNaN);
  cpu::matmul_bf16(x.data(), rows, k, w.data(), n, with_bias ? bias.data() : nullptr, out.data(),
                   pool);
  const std::string where = std::to_string(rows) + "x" + std::to_string(k) + " @ " +
                            std::to_string(n) + "x" + std::to_string(k) +
                            (with_bias ? " + bias" : "");
  EXPECT_LT(rel_l2(out, ref), 1e-5) << where;
  for (int64_t i = 0; i < rows * n; ++i) {
    ASSERT_NEAR(out[i], ref[i], 1e-6 * magnitude[i] + 1e-6) << where << " element " << i;
  }
}

TEST(CpuMatmul, OddShapesMatchDoubleReference) {
  std::mt19937_64 rng(16);
  ThreadPool pool(2);
  for_each_isa([&] {
    for (int64_t rows : {1, 2, 3, 5, 6, 7, 13, 37}) {
      for (int64_t k : {1, 7, 15, 16, 17, 33, 100}) {
        for (int64_t n : {1, 3, 5, 17, 63}) check_matmul(rng, pool, rows, k, n, (rows + n) % 2);
      }
    }
  });
}

TEST(CpuMatmul, ModelShapesMatchDoubleReference) {
  std::mt19937_64 rng(17);
  ThreadPool pool(2);
  for_each_isa([&] {
    // Decode GEMVs split over threads; prefill with k-blocking (k > 1024) and n-blocking.
    check_matmul(rng, pool, 1, 576, 1536, false);
    check_matmul(rng, pool, 1, 1536, 577, true);
    check_matmul(rng, pool, 3, 577, 769, true);
    check_matmul(rng, pool, 37, 2500, 131, false);
    check_matmul(rng, pool, 300, 200, 1001, true);
  });
}

TEST(CpuMatmul, ThreadCountDoesNotChangeResults) {
  std::mt19937_64 rng(18);
  const int64_t rows = 37, k = 300, n = 515;
  const auto x = random_floats(rng, rows * k);
  const auto w = random_bf16(rng, n * k);
  std::vector<float> a(rows * n, kNaN), b(rows * n, kNaN);
  ThreadPool one(1), many(5);
  cpu::matmul_bf16(x.data(), rows, k, w.data(), n, nullptr, a.data(), one);
  cpu::matmul_bf16(x.data(), rows, k, w.data(), n, nullptr, b.data(), many);
  EXPECT_EQ(a, b);
}

// ---------------------------------------------------------------------------------------------
// kv_write and paged_attention

// Rows of a fused matmul output (q|k|v, gate|up) are strided slices: each kernel gives, on them,
// exactly what it gives on the same rows stored contiguously.
TEST(CpuStridedRows, RopeSiluMulAndKvWriteMatchTheirContiguousResults) {
  std::mt19937_64 rng(31);
  ThreadPool pool(2);
  const int64_t tokens = 5, heads = 3, head_dim = 8, width = heads * head_dim, stride = 41;
  std::vector<float> inv_freq(head_dim / 2);
  for (size_t i = 0; i < inv_freq.size(); ++i) inv_freq[i] = 1.0f / float(1 + i);
  std::vector<int32_t> pos = {0, 7, 100, 3, 2999};
  const auto wide = random_floats(rng, tokens * stride);
  std::vector<float> dense(tokens * width);
  for (int64_t t = 0; t < tokens; ++t) {
    std::copy_n(wide.begin() + t * stride + 3, width, dense.begin() + t * width);
  }

  std::vector<float> strided = wide;
  cpu::rope(strided.data() + 3, stride, pos.data(), tokens, heads, head_dim, inv_freq.data(), pool);
  cpu::rope(dense.data(), width, pos.data(), tokens, heads, head_dim, inv_freq.data(), pool);
  for (int64_t t = 0; t < tokens; ++t) {
    for (int64_t i = 0; i < width; ++i) {
      ASSERT_EQ(strided[t * stride + 3 + i], dense[t * width + i]) << t << " " << i;
    }
    EXPECT_EQ(strided[t * stride], wide[t * stride]);  // outside the slice: untouched
  }

  // gate|up rows: 2 * width wide, with a gap to the next row.
  const int64_t gate_up_stride = 2 * width + 5;
  const auto gate_up = random_floats(rng, tokens * gate_up_stride);
  std::vector<float> got(tokens * width, kNaN), want(tokens * width, kNaN);
  cpu::silu_mul(gate_up.data(), gate_up.data() + width, gate_up_stride, tokens, width, got.data(),
                pool);
  std::vector<float> gate(tokens * width), up(tokens * width);
  for (int64_t t = 0; t < tokens; ++t) {
    std::copy_n(gate_up.begin() + t * gate_up_stride, width, gate.begin() + t * width);
    std::copy_n(gate_up.begin() + t * gate_up_stride + width, width, up.begin() + t * width);
  }
  cpu::silu_mul(gate.data(), up.data(), width, tokens, width, want.data(), pool);
  EXPECT_EQ(got, want);

  for (const cpu::KvDtype dtype : {cpu::KvDtype::kF32, cpu::KvDtype::kBf16}) {
    std::vector<float> pages_a(2 * 8 * width * 2, 0.0f), pages_b = pages_a;
    cpu::PagedKv kv;
    kv.dtype = dtype;
    kv.page_size = 8;
    kv.kv_heads = heads;
    kv.head_dim = head_dim;
    const std::vector<int32_t> slots = {9, 0, -1, 15, 4};
    kv.k_pages = pages_a.data();
    kv.v_pages = pages_a.data() + pages_a.size() / 2;
    cpu::kv_write(kv, wide.data(), wide.data() + 1, stride, slots.data(), tokens, pool);
    std::vector<float> k_rows(tokens * width), v_rows(tokens * width);
    for (int64_t t = 0; t < tokens; ++t) {
      std::copy_n(wide.begin() + t * stride, width, k_rows.begin() + t * width);
      std::copy_n(wide.begin() + t * stride + 1, width, v_rows.begin() + t * width);
    }
    kv.k_pages = pages_b.data();
    kv.v_pages = pages_b.data() + pages_b.size() / 2;
    cpu::kv_write(kv, k_rows.data(), v_rows.data(), width, slots.data(), tokens, pool);
    EXPECT_EQ(pages_a, pages_b);
  }
}

TEST(CpuKvWrite, StoresRowsAtTheirSlotsOnly) {
  std::mt19937_64 rng(19);
  ThreadPool pool(2);
  const int64_t kv_heads = 3, head_dim = 20, page_size = 16, pages = 5;
  const int64_t row = kv_heads * head_dim, slots_total = pages * page_size;
  for (cpu::KvDtype dtype : {cpu::KvDtype::kBf16, cpu::KvDtype::kF32}) {
    const int64_t elem = dtype == cpu::KvDtype::kF32 ? 4 : 2;
    std::vector<uint8_t> kp(slots_total * row * elem, 0xA5), vp(slots_total * row * elem, 0x5A);
    const auto k0 = kp, v0 = vp;
    cpu::PagedKv kv;
    kv.k_pages = kp.data();
    kv.v_pages = vp.data();
    kv.dtype = dtype;
    kv.page_size = page_size;
    kv.kv_heads = kv_heads;
    kv.head_dim = head_dim;
    const int64_t tokens = 37;
    std::vector<int32_t> perm(slots_total);
    std::iota(perm.begin(), perm.end(), 0);
    std::shuffle(perm.begin(), perm.end(), rng);
    std::vector<int32_t> slots(perm.begin(), perm.begin() + tokens);
    slots[5] = -1;  // padding: skipped
    auto k = random_floats(rng, tokens * row, -100.0f, 100.0f);
    const auto v = random_floats(rng, tokens * row);
    k[0] = kNaN;
    cpu::kv_write(kv, k.data(), v.data(), kv_heads * head_dim, slots.data(), tokens, pool);
    std::set<int64_t> written;
    for (int64_t t = 0; t < tokens; ++t) {
      if (slots[t] < 0) continue;
      written.insert(slots[t]);
      for (int64_t i = 0; i < row; ++i) {
        const int64_t at = slots[t] * row + i;
        if (dtype == cpu::KvDtype::kF32) {
          const float* kf = reinterpret_cast<const float*>(kp.data());
          const float* vf = reinterpret_cast<const float*>(vp.data());
          if (t == 0 && i == 0) {
            ASSERT_TRUE(std::isnan(kf[at]));
          } else {
            ASSERT_EQ(kf[at], k[t * row + i]);
          }
          ASSERT_EQ(vf[at], v[t * row + i]);
        } else {
          const uint16_t* kb = reinterpret_cast<const uint16_t*>(kp.data());
          const uint16_t* vb = reinterpret_cast<const uint16_t*>(vp.data());
          if (t == 0 && i == 0) {
            ASSERT_TRUE(std::isnan(from_bf16(kb[at])));
          } else {
            ASSERT_EQ(kb[at], to_bf16(k[t * row + i]));
          }
          ASSERT_EQ(vb[at], to_bf16(v[t * row + i]));
        }
      }
    }
    for (int64_t s = 0; s < slots_total; ++s) {
      if (written.count(s)) continue;
      for (int64_t i = 0; i < row * elem; ++i) {
        ASSERT_EQ(kp[s * row * elem + i], k0[s * row * elem + i]);
        ASSERT_EQ(vp[s * row * elem + i], v0[s * row * elem + i]);
      }
    }
  }
}

// Runs paged_attention on a paged cache with shuffled pages (kernel_references.h) and compares
// with softmax attention in double over the same (for BF16: BF16-rounded) K and V.
void check_attention(ThreadPool& pool, uint64_t seed, const std::vector<SeqSpec>& seqs,
                     int64_t kv_heads, int64_t group, int64_t head_dim, int64_t page_size,
                     cpu::KvDtype dtype, float q_scale = 1.0f, int64_t window = 0,
                     bool unlist_unseen = false) {
  const PagedCache c = make_paged_cache(seed, seqs, kv_heads, group, head_dim, page_size, dtype,
                                        q_scale, window, unlist_unseen);
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  const std::vector<double> ref = reference_paged_attention(c, scale);
  cpu::PagedKv kv;
  kv.k_pages = const_cast<uint8_t*>(c.k_pool.data());
  kv.v_pages = const_cast<uint8_t*>(c.v_pool.data());
  kv.dtype = dtype;
  kv.page_size = page_size;
  kv.kv_heads = kv_heads;
  kv.head_dim = head_dim;
  cpu::PagedBatch batch;
  batch.q_indptr = c.q_indptr.data();
  batch.page_indptr = c.page_indptr.data();
  batch.page_indices = c.page_indices.data();
  batch.context_lens = c.context_lens.data();
  batch.first_pages = unlist_unseen ? c.first_pages.data() : nullptr;
  batch.window = window;
  batch.num_seqs = static_cast<int64_t>(seqs.size());
  std::vector<float> out(ref.size(), kNaN);
  cpu::paged_attention(c.q.data(), kv, batch, c.heads, scale, out.data(), pool);
  EXPECT_LT(rel_l2(out, ref), 1e-5)
      << "window=" << window << " unlisted=" << unlist_unseen << " kv_heads=" << kv_heads
      << " group=" << group << " head_dim=" << head_dim << " page_size=" << page_size
      << " dtype=" << (dtype == cpu::KvDtype::kF32 ? "f32" : "bf16") << " threads=" << pool.size();
}

TEST(CpuPagedAttention, RaggedPrefillAndDecodeBatchMatchesReference) {
  // A prefill chunk over an already-cached prefix, a long decode, a one-token context, a prefill
  // from empty, and short decodes.
  const std::vector<SeqSpec> seqs = {{137, 37}, {2000, 1}, {1, 1}, {70, 70}, {17, 1}, {33, 2}};
  ThreadPool pool(2);
  uint64_t seed = 100;
  for_each_isa([&] {
    for (cpu::KvDtype dtype : {cpu::KvDtype::kBf16, cpu::KvDtype::kF32}) {
      for (int64_t page_size : {1, 16}) {
        for (int64_t group : {1, 3, 4, 8}) {
          check_attention(pool, ++seed, seqs, group == 3 ? 3 : 2, group, 64, page_size, dtype);
        }
      }
    }
  });
}

TEST(CpuPagedAttention, HeadDimsThatAreNotMultiplesOf16) {
  ThreadPool pool(2);
  uint64_t seed = 200;
  for_each_isa([&] {
    for (int64_t head_dim : {8, 80, 100, 128, 256}) {
      check_attention(pool, ++seed, {{50, 20}, {300, 1}}, 2, 2, head_dim, 16, cpu::KvDtype::kBf16);
      check_attention(pool, ++seed, {{50, 20}, {300, 1}}, 2, 2, head_dim, 7, cpu::KvDtype::kF32);
    }
  });
}

TEST(CpuPagedAttention, SplitLongDecodeContextsMergeToTheSameResult) {
  // Fewer (sequence, KV head) pairs than threads: the context is cut into pieces.
  uint64_t seed = 300;
  for_each_isa([&] {
    for (int threads : {1, 2, 4, 7}) {
      ThreadPool pool(threads);
      for (cpu::KvDtype dtype : {cpu::KvDtype::kBf16, cpu::KvDtype::kF32}) {
        check_attention(pool, ++seed, {{2000, 1}}, 1, 8, 64, 16, dtype);
        check_attention(pool, ++seed, {{1999, 1}}, 3, 3, 64, 1, dtype);
        check_attention(pool, ++seed, {{1500, 1}, {700, 1}}, 1, 4, 128, 16, dtype);
        check_attention(pool, ++seed, {{1024, 2}}, 1, 1, 64, 16, dtype);  // two-token decode
      }
    }
  });
}

TEST(CpuPagedAttention, PeakedSoftmaxStaysAccurate) {
  // Large scores (q scaled up): the running max must keep exp from overflowing.
  ThreadPool pool(2);
  uint64_t seed = 400;
  for_each_isa([&] {
    check_attention(pool, ++seed, {{600, 40}, {1200, 1}}, 2, 4, 64, 16, cpu::KvDtype::kF32, 40.0f);
  });
}

TEST(CpuPagedAttention, SlidingWindowMatchesReference) {
  // Windows shorter and longer than a block of 16 and than a page, over prefill chunks (whose
  // queries see different windows), long decodes (split into pieces) and contexts shorter than
  // the window; with the unseen pages listed, and left out as the engine frees them (their
  // slots hold NaN: any read of them shows).
  const std::vector<SeqSpec> seqs = {{137, 37}, {2000, 1}, {5, 5}, {70, 70}, {41, 1}, {33, 2}};
  uint64_t seed = 500;
  for_each_isa([&] {
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      for (int64_t window : {1, 7, 16, 40, 300}) {
        for (bool unlist : {false, true}) {
          check_attention(pool, ++seed, seqs, 2, 4, 64, 16, cpu::KvDtype::kBf16, 1.0f, window,
                          unlist);
          check_attention(pool, ++seed, seqs, 1, 3, 80, 5, cpu::KvDtype::kF32, 1.0f, window,
                          unlist);
        }
      }
      check_attention(pool, ++seed, {{3000, 1}}, 1, 8, 64, 16, cpu::KvDtype::kBf16, 1.0f, 1024,
                      true);
    }
  });
}

TEST(CpuPagedAttention, RejectsPagesLeftOutThatAQuerySees) {
  ThreadPool pool(1);
  float q[64] = {}, out[64];
  std::vector<uint16_t> k(16 * 64), v(16 * 64);
  // Position 19 with a window of 8 sees positions 12..19: page 0 (0..15) must be listed.
  const int32_t q_indptr[2] = {0, 1}, page_indptr[2] = {0, 1}, pages[1] = {0};
  const int32_t ctx[1] = {20}, first[1] = {1};
  cpu::PagedKv kv;
  kv.k_pages = k.data();
  kv.v_pages = v.data();
  kv.kv_heads = 1;
  kv.head_dim = 64;
  cpu::PagedBatch b;
  b.q_indptr = q_indptr;
  b.page_indptr = page_indptr;
  b.page_indices = pages;
  b.context_lens = ctx;
  b.first_pages = first;
  b.window = 8;
  b.num_seqs = 1;
  EXPECT_EQ(
      slimrt::test::error_message([&] { cpu::paged_attention(q, kv, b, 1, 1.0f, out, pool); }),
      "paged_attention: sequence 0 lists its pages from page 1 but its query at 19 sees "
      "position 12");
  b.window = 4;  // sees 16..19 only: page 0 may go
  cpu::paged_attention(q, kv, b, 1, 1.0f, out, pool);
}

TEST(CpuPagedAttention, RejectsInconsistentShapes) {
  ThreadPool pool(1);
  float q[64] = {}, out[64];
  std::vector<uint16_t> k(16 * 64), v(16 * 64);
  const int32_t q_indptr[2] = {0, 1}, page_indptr[2] = {0, 1}, pages[1] = {0};
  int32_t ctx[1] = {20};  // more tokens than one page of 16 holds
  cpu::PagedKv kv;
  kv.k_pages = k.data();
  kv.v_pages = v.data();
  kv.kv_heads = 1;
  kv.head_dim = 64;
  cpu::PagedBatch b;
  b.q_indptr = q_indptr;
  b.page_indptr = page_indptr;
  b.page_indices = pages;
  b.context_lens = ctx;
  b.num_seqs = 1;
  EXPECT_THROW(cpu::paged_attention(q, kv, b, 1, 1.0f, out, pool), slimrt::Error);
  ctx[0] = 0;  // one query token but an empty context
  EXPECT_THROW(cpu::paged_attention(q, kv, b, 1, 1.0f, out, pool), slimrt::Error);
}

// ---------------------------------------------------------------------------------------------
// sample

// The kept set and renormalised distribution, in double, straight from the contract.
std::vector<double> reference_distribution(const std::vector<float>& logits,
                                           const cpu::SampleParams& p) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const double mx = *std::max_element(logits.begin(), logits.end());
  std::vector<double> prob(vocab);
  double z = 0.0;
  for (int64_t i = 0; i < vocab; ++i) z += prob[i] = std::exp((logits[i] - mx) / p.temperature);
  for (auto& x : prob) x /= z;
  std::vector<int64_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return prob[a] > prob[b]; });
  int64_t keep = p.top_k > 0 ? std::min<int64_t>(p.top_k, vocab) : vocab;
  double kept_mass = 0.0;
  for (int64_t i = 0; i < keep; ++i) kept_mass += prob[order[i]];
  if (p.top_p < 1.0f) {
    double cum = 0.0;
    for (int64_t i = 0; i < keep; ++i) {
      cum += prob[order[i]] / kept_mass;
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  std::vector<double> out(vocab, 0.0);
  const double pmax = prob[order[0]];
  double total = 0.0;
  for (int64_t i = 0; i < keep; ++i) {
    const int64_t id = order[i];
    if (prob[id] >= p.min_p * pmax) total += out[id] = prob[id];
  }
  for (auto& x : out) x /= total;
  return out;
}

// Draws `draws` tokens with counters 0.. (fixed seed) as one batch, and checks that excluded ids
// never come up and each kept id's frequency is within 5 standard deviations (+0.2 %).
void check_frequencies(ThreadPool& pool, const std::vector<float>& logits, cpu::SampleParams p,
                       int64_t draws) {
  const int64_t vocab = static_cast<int64_t>(logits.size());
  const auto expected = reference_distribution(logits, p);
  std::vector<float> batch(draws * vocab);
  std::vector<cpu::SampleParams> params(draws, p);
  for (int64_t r = 0; r < draws; ++r) {
    std::copy(logits.begin(), logits.end(), batch.begin() + r * vocab);
    params[r].counter = static_cast<uint64_t>(r);
  }
  std::vector<int32_t> out(draws, -1);
  std::vector<uint64_t> scratch(draws * vocab);
  cpu::sample(batch.data(), draws, vocab, params.data(), out.data(), scratch.data(), pool);
  std::vector<int64_t> count(vocab, 0);
  for (int32_t id : out) {
    ASSERT_GE(id, 0);
    ASSERT_LT(id, vocab);
    ++count[id];
  }
  for (int64_t i = 0; i < vocab; ++i) {
    const double e = expected[i];
    if (e == 0.0) {
      EXPECT_EQ(count[i], 0) << "excluded id " << i << " was drawn";
    } else {
      const double f = double(count[i]) / draws;
      EXPECT_NEAR(f, e, 5.0 * std::sqrt(e * (1.0 - e) / draws) + 0.002) << "id " << i;
    }
  }
}

std::vector<float> logits_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double p : probs) l.push_back(p > 0.0 ? static_cast<float>(std::log(p)) : -INFINITY);
  return l;
}

TEST(CpuSample, PhiloxMatchesRandom123KnownAnswers) {
  using A = std::array<uint32_t, 4>;
  auto philox = [](A ctr, uint32_t key0, uint32_t key1) {
    const Philox4x32 r = philox4x32_10({{ctr[0], ctr[1], ctr[2], ctr[3]}}, key0, key1);
    return A{r.v[0], r.v[1], r.v[2], r.v[3]};
  };
  EXPECT_EQ(philox({0, 0, 0, 0}, 0, 0), (A{0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}));
  EXPECT_EQ(philox({~0u, ~0u, ~0u, ~0u}, ~0u, ~0u),
            (A{0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}));
  EXPECT_EQ(philox({0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, 0xa4093822, 0x299f31d0),
            (A{0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}));
}

// On rows built to stress the rules (sample_test_rows.h: spread logits, heavy ties, NaN and -inf
// entries, a flat row, one dominant logit, no finite logit), for every parameter set there.
TEST(CpuSample, DrawsFollowTheRulesExactly) {
  ThreadPool pool(2);
  const int64_t vocab = 3001;
  std::vector<float> logits;
  std::vector<cpu::SampleParams> params;
  sample_test_rows(vocab, 20260, logits, params);
  const int64_t rows = static_cast<int64_t>(params.size());
  std::vector<int32_t> out(rows, -1);
  std::vector<uint64_t> scratch(rows * vocab);
  cpu::sample(logits.data(), rows, vocab, params.data(), out.data(), scratch.data(), pool);
  for (int64_t r = 0; r < rows; ++r) {
    const cpu::SampleParams& p = params[r];
    ASSERT_EQ(out[r], reference_sample(logits.data() + r * vocab, vocab, p))
        << "row " << r << ": temperature " << p.temperature << " top_k " << p.top_k << " top_p "
        << p.top_p << " min_p " << p.min_p;
  }
}

// A log-probability within 1e-5 of the double-precision one, or the same infinity or NaN.
void expect_logprob(float got, double want, const std::string& where) {
  if (std::isfinite(want)) {
    EXPECT_NEAR(got, want, 1e-5) << where;
  } else if (std::isnan(want)) {
    EXPECT_TRUE(std::isnan(got)) << where << ": " << got;
  } else {
    EXPECT_EQ(got, want) << where;
  }
}

// The same rows: the drawn token's log-probability and the top 20 are those of log_softmax of the
// raw logits (temperature and filters play no part), sorted, ties to the lower id, NaN as -inf;
// the ids drawn are the ones a sample without log-probabilities draws.
TEST(CpuSample, LogprobsAreTheLogSoftmaxOfTheRawLogits) {
  ThreadPool pool(2);
  const int64_t vocab = 3001;
  const int32_t n = slimrt::kMaxTopLogprobs;
  std::vector<float> logits;
  std::vector<cpu::SampleParams> params;
  sample_test_rows(vocab, 20261, logits, params);
  const int64_t rows = static_cast<int64_t>(params.size());
  std::vector<uint64_t> scratch(rows * vocab);
  std::vector<int32_t> plain(rows, -1), out(rows, -1), top_ids(rows * n, -1);
  std::vector<float> sampled(rows), top(rows * n);
  cpu::sample(logits.data(), rows, vocab, params.data(), plain.data(), scratch.data(), pool);
  const slimrt::SampleLogprobs lp{n, sampled.data(), top_ids.data(), top.data()};
  cpu::sample(logits.data(), rows, vocab, params.data(), out.data(), scratch.data(), pool, &lp);
  EXPECT_EQ(out, plain);
  for (int64_t r = 0; r < rows; ++r) {
    const slimrt::test::ReferenceLogprobs ref =
        slimrt::test::reference_logprobs(logits.data() + r * vocab, vocab);
    const std::string row = "row " + std::to_string(r);
    expect_logprob(sampled[r], ref.logprob[out[r]], row + " drawn");
    for (int32_t k = 0; k < n; ++k) {
      ASSERT_EQ(top_ids[r * n + k], ref.order[k]) << row << " top " << k;
      expect_logprob(top[r * n + k], ref.logprob[ref.order[k]], row + " top " + std::to_string(k));
      if (k > 0 && !std::isnan(top[r * n + k])) EXPECT_LE(top[r * n + k], top[r * n + k - 1]);
    }
  }
}

TEST(CpuSample, LogprobsOfAGreedyRowPutTheDrawnTokenFirstAndSumToOne) {
  ThreadPool pool(1);
  std::mt19937_64 rng(22);
  const int64_t vocab = 7;  // top_n may be the whole vocabulary
  auto logits = random_floats(rng, vocab, -3.0f, 3.0f);
  logits[2] = logits[5] = 4.0f;  // the maximum twice: id 2 first
  cpu::SampleParams p;
  p.temperature = 0.0f;
  int32_t id = -1;
  float sampled = 0.0f;
  std::vector<int32_t> ids(vocab);
  std::vector<float> top(vocab);
  std::vector<uint64_t> scratch(vocab);
  const slimrt::SampleLogprobs lp{static_cast<int32_t>(vocab), &sampled, ids.data(), top.data()};
  cpu::sample(logits.data(), 1, vocab, &p, &id, scratch.data(), pool, &lp);
  EXPECT_EQ(id, 2);
  EXPECT_EQ(ids[0], 2);
  EXPECT_EQ(ids[1], 5);
  EXPECT_EQ(top[0], sampled);
  double mass = 0.0;
  for (float v : top) mass += std::exp(static_cast<double>(v));
  EXPECT_NEAR(mass, 1.0, 1e-6);
  // top_n 0: the drawn token's alone, no top arrays needed.
  const slimrt::SampleLogprobs alone{0, &sampled, nullptr, nullptr};
  sampled = 0.0f;
  cpu::sample(logits.data(), 1, vocab, &p, &id, scratch.data(), pool, &alone);
  EXPECT_EQ(sampled, top[0]);
}

TEST(CpuSample, TemperatureZeroIsArgmaxWithTiesToLowestId) {
  ThreadPool pool(2);
  std::mt19937_64 rng(20);
  const int64_t rows = 37, vocab = 1001;
  auto logits = random_floats(rng, rows * vocab, -5.0f, 5.0f);
  std::vector<int32_t> expect(rows);
  for (int64_t r = 0; r < rows; ++r) {
    // Plant a tie for the maximum at two ids.
    const int64_t a = rng() % vocab, b = rng() % vocab;
    logits[r * vocab + a] = logits[r * vocab + b] = 7.0f;
    expect[r] = static_cast<int32_t>(std::min(a, b));
  }
  std::vector<cpu::SampleParams> params(rows);
  for (auto& p : params) p.temperature = 0.0f;
  std::vector<int32_t> out(rows, -1);
  std::vector<uint64_t> scratch(rows * vocab);
  cpu::sample(logits.data(), rows, vocab, params.data(), out.data(), scratch.data(), pool);
  EXPECT_EQ(out, expect);
  // top_k = 1 at any temperature is the same greedy choice.
  for (size_t r = 0; r < params.size(); ++r) {
    params[r] = cpu::SampleParams{};
    params[r].temperature = 1.3f;
    params[r].top_k = 1;
    params[r].seed = 5;
    params[r].counter = r;
  }
  std::fill(out.begin(), out.end(), -1);
  cpu::sample(logits.data(), rows, vocab, params.data(), out.data(), scratch.data(), pool);
  EXPECT_EQ(out, expect);
}

TEST(CpuSample, DrawDependsOnlyOnSeedCounterAndRow) {
  std::mt19937_64 rng(21);
  const int64_t rows = 8, vocab = 3000;
  const auto logits = random_floats(rng, rows * vocab, -4.0f, 4.0f);
  std::vector<cpu::SampleParams> params(rows);
  for (int64_t r = 0; r < rows; ++r) {
    params[r].temperature = 0.5f + 0.2f * r;
    params[r].top_k = r % 3 == 0 ? 50 : 0;
    params[r].top_p = r % 2 ? 0.9f : 1.0f;
    params[r].min_p = r % 4 == 1 ? 0.05f : 0.0f;
    params[r].seed = 1234 + r / 2;
    params[r].counter = 77 * r;
  }
  ThreadPool one(1), three(3);
  std::vector<uint64_t> scratch(rows * vocab);
  std::vector<int32_t> together(rows, -1);
  cpu::sample(logits.data(), rows, vocab, params.data(), together.data(), scratch.data(), three);
  // Each row alone, in reverse order, on another pool: same tokens.
  for (int64_t r = rows - 1; r >= 0; --r) {
    int32_t alone = -1;
    cpu::sample(logits.data() + r * vocab, 1, vocab, &params[r], &alone, scratch.data(), one);
    EXPECT_EQ(alone, together[r]) << r;
  }
  // Again: deterministic.
  std::vector<int32_t> again(rows, -1);
  cpu::sample(logits.data(), rows, vocab, params.data(), again.data(), scratch.data(), one);
  EXPECT_EQ(again, together);
  // Other counters give other draws (a flat-ish distribution over 3000 ids).
  std::set<int32_t> seen;
  for (uint64_t c = 0; c < 64; ++c) {
    cpu::SampleParams p = params[1];
    p.counter = c;
    int32_t id = -1;
    cpu::sample(logits.data() + vocab, 1, vocab, &p, &id, scratch.data(), one);
    seen.insert(id);
  }
  EXPECT_GT(seen.size(), 10u);
}

TEST(CpuSample, FrequenciesFollowTheRenormalisedDistribution) {
  ThreadPool pool(2);
  const std::vector<double> probs = {0.02, 0.30, 0.05, 0.25, 0.0, 0.15, 0.08, 0.10, 0.04, 0.01};
  const auto logits = logits_of(probs);
  const int64_t draws = 40000;
  cpu::SampleParams p;
  p.seed = 42;
  check_frequencies(pool, logits, p, draws);  // plain sampling; the zero-probability id never
  p.temperature = 2.0f;
  check_frequencies(pool, logits, p, draws);
  p.temperature = 1.0f;
  p.top_k = 3;  // ids 1, 3, 5
  check_frequencies(pool, logits, p, draws);
  p.top_k = 0;
  p.top_p = 0.60f;  // 0.30 + 0.25 = 0.55 < 0.60: ids 1, 3, 5
  check_frequencies(pool, logits, p, draws);
  p.top_p = 0.50f;  // ids 1, 3
  check_frequencies(pool, logits, p, draws);
  p.top_p = 1.0f;
  p.min_p = 0.3f;  // keep p >= 0.09: ids 1, 3, 5, 7
  check_frequencies(pool, logits, p, draws);
  // Top 5 (1, 3, 5, 7, 6), of which the nucleus 0.7 (1, 3, 5), of which p >= 0.6 * 0.30: 1, 3.
  p.top_k = 5;
  p.top_p = 0.7f;
  p.min_p = 0.6f;
  check_frequencies(pool, logits, p, draws);
}

TEST(CpuSample, LargeVocabularyNucleusExcludesTheTail) {
  ThreadPool pool(2);
  std::mt19937_64 rng(22);
  const int64_t vocab = 49152;
  std::vector<float> logits = random_floats(rng, vocab, -8.0f, 2.0f);
  for (int i = 0; i < 40; ++i) logits[rng() % vocab] = 6.0f + 0.01f * i;  // a plausible head
  for (float top_p : {0.5f, 0.9f}) {
    for (int32_t top_k : {0, 40, 5000}) {
      cpu::SampleParams p;
      p.temperature = 0.8f;
      p.top_p = top_p;
      p.top_k = top_k;
      p.seed = 9;
      const auto expected = reference_distribution(logits, p);
      std::vector<uint64_t> scratch(vocab);
      for (uint64_t c = 0; c < 300; ++c) {
        p.counter = c;
        int32_t id = -1;
        cpu::sample(logits.data(), 1, vocab, &p, &id, scratch.data(), pool);
        ASSERT_GE(id, 0);
        ASSERT_GT(expected[id], 0.0)
            << "id " << id << " outside the kept set, top_p=" << top_p << " top_k=" << top_k;
      }
    }
  }
}

TEST(CpuSample, MaskedLogitsAreNeverDrawn) {
  ThreadPool pool(1);
  const int64_t vocab = 100;
  std::vector<float> logits(vocab, -INFINITY);
  logits[17] = 0.3f;
  logits[80] = 0.1f;
  std::vector<uint64_t> scratch(vocab);
  for (uint64_t c = 0; c < 500; ++c) {
    cpu::SampleParams p;
    p.counter = c;
    p.temperature = 3.0f;
    int32_t id = -1;
    cpu::sample(logits.data(), 1, vocab, &p, &id, scratch.data(), pool);
    ASSERT_TRUE(id == 17 || id == 80) << id;
  }
}

}  // namespace
