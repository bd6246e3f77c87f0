// The bitmap-sparse KV cache on the CPU: the pruning rule and record layout of kv_compress byte
// by byte (docs/FORMAT.md, "Sparse KV pages"), and attention over block tables that mix dense
// and compressed pages, which must equal dense attention over the pruned K/V (kept values,
// zeros elsewhere), for every instruction-set variant this machine runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/kernels.h"
#include "device.h"
#include "error_message.h"
#include "kernel_references.h"
#include "kv_record.h"
#include "ops/kv_compress.h"
#include "thread_pool.h"

namespace slimrt {
namespace {

using test::error_message;
using test::from_bf16;
using test::make_paged_cache;
using test::PagedCache;
using test::reference_paged_attention;
using test::rel_l2;
using test::SeqSpec;
using test::to_bf16;

// Runs body for each variant of the kernels available here: scalar, AVX2, AVX-512 with the AVX2
// bitmap expansion and, where the CPU has VBMI2, with vpexpandw.
template <class Body>
void for_each_variant(Body body) {
  const cpu::Isa previous_cap = cpu::set_isa_cap(cpu::Isa::kAvx512);
  const bool previous_vbmi2 = cpu::set_vbmi2_allowed(false);
  for (cpu::Isa isa : {cpu::Isa::kScalar, cpu::Isa::kAvx2, cpu::Isa::kAvx512}) {
    if (static_cast<int>(isa) > static_cast<int>(cpu::detected_isa())) break;
    cpu::set_isa_cap(isa);
    for (bool vbmi2 : {false, true}) {
      cpu::set_vbmi2_allowed(vbmi2);
      if (vbmi2 && !cpu::vbmi2_active()) continue;
      SCOPED_TRACE(std::string(cpu::isa_name(isa)) + (vbmi2 ? "+vbmi2" : ""));
      body();
    }
  }
  cpu::set_isa_cap(previous_cap);
  cpu::set_vbmi2_allowed(previous_vbmi2);
}

// The pruning rule written the slow way: indices stably sorted by decreasing |x| (so ties keep
// the lower index first), the first `kept` marked, their values in index order.
std::vector<uint8_t> reference_record(const uint16_t* x, int64_t head_dim, int64_t kept) {
  std::vector<int64_t> order(head_dim);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return std::fabs(from_bf16(x[a])) > std::fabs(from_bf16(x[b]));
  });
  std::vector<bool> keep(head_dim, false);
  for (int64_t i = 0; i < kept; ++i) keep[order[i]] = true;
  std::vector<uint8_t> record(kv_record_bytes(head_dim, kept), 0);
  uint8_t* values = record.data() + kv_bitmap_bytes(head_dim);
  for (int64_t i = 0; i < head_dim; ++i) {
    if (!keep[i]) continue;
    record[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
    std::memcpy(values, x + i, 2);
    values += 2;
  }
  return record;
}

TEST(KvRecord, KeptCountRoundsTheDroppedCountHalfAwayFromZero) {
  EXPECT_EQ(kv_kept_count(128, 0.7), 38);  // round(89.6) = 90 dropped
  EXPECT_EQ(kv_kept_count(128, 0.5), 64);
  EXPECT_EQ(kv_kept_count(64, 0.7), 19);  // round(44.8) = 45 dropped
  EXPECT_EQ(kv_kept_count(10, 0.25), 7);  // round(2.5) = 3 dropped
  EXPECT_EQ(kv_kept_count(12, 0.0), 12);
  EXPECT_EQ(kv_bitmap_bytes(12), 2);
  EXPECT_EQ(kv_bitmap_bytes(17), 4);
  EXPECT_EQ(kv_bitmap_bytes(128), 16);
  EXPECT_EQ(kv_record_bytes(128, 38), 92);   // 35.9 % of the 256 dense bytes
  EXPECT_EQ(kv_record_bytes(128, 64), 144);  // 56.3 %
  EXPECT_EQ(kv_record_bytes(64, 19), 46);
}

// One token, one KV head, head_dim 12 (not a multiple of 8): dense page 0 compressed into page
// 1, K at 5 kept (ties at |x| = 2 go to the lower indices), V at sparsity 0 (everything kept).
TEST(KvCompress, KeepsTheLargestMagnitudesWithTiesToTheLowerIndex) {
  ThreadPool pool(1);
  const std::vector<float> x = {1, -3, 2, 3, 0, -0.0f, 2, -2, 0.5f, 3, 1, -1};
  std::vector<uint16_t> k(12), v(12);
  for (int i = 0; i < 12; ++i) k[i] = v[i] = to_bf16(x[i]);
  std::vector<uint8_t> k_records(kv_record_bytes(12, 5) + kKvRecordTailPad, 0xAB);
  std::vector<uint8_t> v_records(kv_record_bytes(12, 12) + kKvRecordTailPad, 0xAB);
  PagedKv kv;
  kv.k_pages = k.data();
  kv.v_pages = v.data();
  kv.page_size = 1;
  kv.kv_heads = 1;
  kv.head_dim = 12;
  kv.k_records = k_records.data();
  kv.v_records = v_records.data();
  kv.dense_pages = 1;
  kv.k_kept = kv_kept_count(12, 0.58);  // round(6.96) = 7 dropped
  kv.v_kept = kv_kept_count(12, 0.0);
  ASSERT_EQ(kv.k_kept, 5);
  const int32_t src = 0, dst = 1;
  cpu::kv_compress(kv, &src, &dst, 1, pool);
  // Kept: indices 1, 3, 9 (|x| = 3) and 2, 6 (|x| = 2; index 7 loses the tie).
  const uint16_t k_values[5] = {to_bf16(-3), to_bf16(2), to_bf16(3), to_bf16(2), to_bf16(3)};
  std::vector<uint8_t> k_expected = {0x4E, 0x02};
  k_expected.resize(12);
  std::memcpy(k_expected.data() + 2, k_values, 10);
  EXPECT_EQ(std::vector<uint8_t>(k_records.begin(), k_records.begin() + 12), k_expected);
  std::vector<uint8_t> v_expected = {0xFF, 0x0F};
  v_expected.resize(26);
  std::memcpy(v_expected.data() + 2, v.data(), 24);
  EXPECT_EQ(std::vector<uint8_t>(v_records.begin(), v_records.begin() + 26), v_expected);
  // Nothing past the record is written.
  EXPECT_EQ(k_records[12], 0xAB);
  EXPECT_EQ(v_records[26], 0xAB);

  // 11 kept: all nine magnitudes >= 1, 0.5, then the zero at index 4 before the -0 at index 5.
  kv.k_kept = 11;
  std::fill(k_records.begin(), k_records.end(), 0xAB);
  k_records.resize(kv_record_bytes(12, 11) + kKvRecordTailPad, 0xAB);
  kv.k_records = k_records.data();
  cpu::kv_compress(kv, &src, &dst, 1, pool);
  EXPECT_EQ(k_records[0], 0xDF);  // every bit of 0..7 but index 5
  EXPECT_EQ(k_records[1], 0x0F);
}

// Random rows drawn from few distinct magnitudes (many ties), for head dims that are and are
// not multiples of 8 and 16, pages of 3 tokens and 2 KV heads, compressed into shuffled ids.
TEST(KvCompress, RecordsMatchTheSortReferenceByteForByte) {
  std::mt19937_64 rng(91);
  ThreadPool pool(2);
  const float levels[] = {0.0f, -0.0f, 0.25f, -0.25f, 1.0f, -1.0f, 1.5f, -3.0f};
  for (int64_t hd : {1, 7, 12, 16, 64, 100, 128, 256}) {
    for (double ks : {0.0, 0.3, 0.5, 0.7}) {
      const double vs = 0.7 - ks / 2;
      SCOPED_TRACE("head_dim " + std::to_string(hd) + " k_sparsity " + std::to_string(ks));
      const int64_t page_size = 3, kv_heads = 2, dense = 4, compressed = 5;
      const int64_t row = kv_heads * hd;
      std::vector<uint16_t> k(dense * page_size * row), v(k.size());
      std::uniform_int_distribution<int> pick(0, 7);
      std::uniform_real_distribution<float> any(-4.0f, 4.0f);
      for (size_t i = 0; i < k.size(); ++i) {
        k[i] = to_bf16(i % 3 == 0 ? any(rng) : levels[pick(rng)]);
        v[i] = to_bf16(i % 5 == 0 ? any(rng) : levels[pick(rng)]);
      }
      const std::vector<uint16_t> k_before = k, v_before = v;
      PagedKv kv;
      kv.k_pages = k.data();
      kv.v_pages = v.data();
      kv.page_size = page_size;
      kv.kv_heads = kv_heads;
      kv.head_dim = hd;
      kv.dense_pages = dense;
      kv.k_kept = kv_kept_count(hd, ks);
      kv.v_kept = kv_kept_count(hd, vs);
      const int64_t kb = kv_record_bytes(hd, kv.k_kept), vb = kv_record_bytes(hd, kv.v_kept);
      std::vector<uint8_t> k_records(compressed * page_size * kv_heads * kb + kKvRecordTailPad,
                                     0xAB);
      std::vector<uint8_t> v_records(compressed * page_size * kv_heads * vb + kKvRecordTailPad,
                                     0xAB);
      kv.k_records = k_records.data();
      kv.v_records = v_records.data();
      const int32_t src[3] = {2, 0, 3};
      const int32_t dst[3] = {8, 4, 6};  // compressed pages 4, 0 and 2; 1 and 3 untouched
      cpu::kv_compress(kv, src, dst, 3, pool);
      EXPECT_EQ(k, k_before);
      EXPECT_EQ(v, v_before);
      for (int i = 0; i < 3; ++i) {
        for (int64_t r = 0; r < page_size * kv_heads; ++r) {
          const int64_t token = r / kv_heads, head = r % kv_heads;  // dense rows: (token, head)
          const int64_t at = ((dst[i] - dense) * kv_heads + head) * page_size + token;
          const uint16_t* kx = k.data() + (src[i] * page_size * kv_heads + r) * hd;
          const uint16_t* vx = v.data() + (src[i] * page_size * kv_heads + r) * hd;
          ASSERT_EQ(
              std::vector<uint8_t>(k_records.begin() + at * kb, k_records.begin() + (at + 1) * kb),
              reference_record(kx, hd, kv.k_kept))
              << "page " << dst[i] << " row " << r;
          ASSERT_EQ(
              std::vector<uint8_t>(v_records.begin() + at * vb, v_records.begin() + (at + 1) * vb),
              reference_record(vx, hd, kv.v_kept))
              << "page " << dst[i] << " row " << r;
        }
      }
      for (int64_t c : {1, 3}) {
        const int64_t n = page_size * kv_heads;
        EXPECT_TRUE(std::all_of(k_records.begin() + c * n * kb,
                                k_records.begin() + (c + 1) * n * kb,
                                [](uint8_t b) { return b == 0xAB; }));
      }
    }
  }
}

// ---- attention over mixed pages ---------------------------------------------------------------

// A paged cache with some of its pages compressed: `pruned` is the same cache, dense, with each
// compressed page's K/V pruned (kept values, zeros elsewhere), and `mixed` reads the compressed
// pages from records through remapped block tables.
struct MixedCache {
  PagedCache pruned;
  std::vector<int32_t> mixed_indices;
  std::vector<uint8_t> k_records, v_records;
  int64_t k_kept = 0, v_kept = 0;
  int64_t compressed_pages = 0;
};

// Compresses every full page of each sequence that lies wholly before its last `window` tokens
// (the engine's rule) and, with `every_other`, only every other one of those (pages of both
// kinds interleaved).
MixedCache make_mixed_cache(uint64_t seed, const std::vector<SeqSpec>& seqs, int64_t kv_heads,
                            int64_t group, int64_t head_dim, int64_t page_size, double ks,
                            double vs, int64_t window, bool every_other) {
  MixedCache m;
  m.pruned = make_paged_cache(seed, seqs, kv_heads, group, head_dim, page_size, KvDtype::kBf16);
  PagedCache& c = m.pruned;
  m.k_kept = kv_kept_count(head_dim, ks);
  m.v_kept = kv_kept_count(head_dim, vs);
  m.mixed_indices = c.page_indices;
  std::vector<int32_t> src, dst;
  for (size_t s = 0; s < seqs.size(); ++s) {
    const int64_t old_pages = std::max<int64_t>(0, seqs[s].context - window) / page_size;
    for (int64_t i = 0; i < old_pages; ++i) {
      if (every_other && i % 2 == 1) continue;
      const int64_t entry = c.page_indptr[s] + i;
      src.push_back(c.page_indices[entry]);
      // Compressed ids in reverse order of use, so that they are not the entry order either.
      dst.push_back(static_cast<int32_t>(c.pool_pages + 1000 - m.compressed_pages++));
      m.mixed_indices[entry] = dst.back();
    }
  }
  const int64_t records = (1001 * page_size) * kv_heads;
  m.k_records.assign(records * kv_record_bytes(head_dim, m.k_kept) + kKvRecordTailPad, 0xFF);
  m.v_records.assign(records * kv_record_bytes(head_dim, m.v_kept) + kKvRecordTailPad, 0xFF);
  ThreadPool pool(2);
  PagedKv kv;
  kv.k_pages = c.k_pool.data();
  kv.v_pages = c.v_pool.data();
  kv.page_size = page_size;
  kv.kv_heads = kv_heads;
  kv.head_dim = head_dim;
  kv.k_records = m.k_records.data();
  kv.v_records = m.v_records.data();
  kv.dense_pages = c.pool_pages;
  kv.k_kept = m.k_kept;
  kv.v_kept = m.v_kept;
  cpu::kv_compress(kv, src.data(), dst.data(), static_cast<int64_t>(src.size()), pool);
  // Prune the dense copy by the reference rule, independently of the kernel.
  const int64_t rows = page_size * kv_heads;
  for (int32_t page : src) {
    for (int64_t r = 0; r < rows; ++r) {
      for (std::vector<uint8_t>* pool_bytes : {&c.k_pool, &c.v_pool}) {
        uint16_t* x =
            reinterpret_cast<uint16_t*>(pool_bytes->data()) + (page * rows + r) * head_dim;
        const int64_t kept = pool_bytes == &c.k_pool ? m.k_kept : m.v_kept;
        const std::vector<uint8_t> record = reference_record(x, head_dim, kept);
        for (int64_t i = 0; i < head_dim; ++i) {
          if (!(record[i / 8] >> (i % 8) & 1u)) x[i] = 0;
        }
      }
    }
  }
  return m;
}

// Attention over the mixed cache equals the dense kernel over the pruned cache bit for bit (the
// compressed rows expand to the same FP32 rows the dense rows widen to, and both run the same
// blocks), and the double-precision reference over the pruned cache to FP32 rounding.
void check_mixed_attention(ThreadPool& pool, uint64_t seed, const std::vector<SeqSpec>& seqs,
                           int64_t kv_heads, int64_t group, int64_t head_dim, int64_t page_size,
                           double ks, double vs, bool every_other = false) {
  const MixedCache m =
      make_mixed_cache(seed, seqs, kv_heads, group, head_dim, page_size, ks, vs, 32, every_other);
  const PagedCache& c = m.pruned;
  const float scale = 1.0f / std::sqrt(static_cast<float>(head_dim));
  PagedKv kv;
  kv.k_pages = const_cast<uint8_t*>(c.k_pool.data());
  kv.v_pages = const_cast<uint8_t*>(c.v_pool.data());
  kv.page_size = page_size;
  kv.kv_heads = kv_heads;
  kv.head_dim = head_dim;
  PagedBatch batch;
  batch.q_indptr = c.q_indptr.data();
  batch.page_indptr = c.page_indptr.data();
  batch.page_indices = c.page_indices.data();
  batch.context_lens = c.context_lens.data();
  batch.num_seqs = static_cast<int64_t>(seqs.size());
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> dense(c.tokens() * c.heads * head_dim, nan);
  cpu::paged_attention(c.q.data(), kv, batch, c.heads, scale, dense.data(), pool);

  kv.k_records = const_cast<uint8_t*>(m.k_records.data());
  kv.v_records = const_cast<uint8_t*>(m.v_records.data());
  kv.dense_pages = c.pool_pages;
  kv.k_kept = m.k_kept;
  kv.v_kept = m.v_kept;
  batch.page_indices = m.mixed_indices.data();
  std::vector<float> mixed(dense.size(), nan);
  cpu::paged_attention(c.q.data(), kv, batch, c.heads, scale, mixed.data(), pool);

  const std::string what =
      "kv_heads=" + std::to_string(kv_heads) + " group=" + std::to_string(group) +
      " head_dim=" + std::to_string(head_dim) + " page_size=" + std::to_string(page_size) +
      " threads=" + std::to_string(pool.size()) +
      " compressed pages=" + std::to_string(m.compressed_pages);
  EXPECT_GT(m.compressed_pages, 0) << what;
  EXPECT_EQ(std::memcmp(mixed.data(), dense.data(), dense.size() * sizeof(float)), 0) << what;
  EXPECT_LT(rel_l2(mixed, reference_paged_attention(c, scale)), 1e-5) << what;
}

TEST(SparseAttention, RaggedBatchesOverMixedPagesEqualDenseAttentionOverPrunedKv) {
  // Decode rows, a prefill chunk whose queries follow compressed pages, a whole short prompt.
  const std::vector<SeqSpec> seqs = {{300, 1}, {170, 40}, {97, 1}, {45, 45}};
  uint64_t seed = 0;
  for_each_variant([&] {
    for (int threads : {1, 3}) {
      ThreadPool pool(threads);
      for (int64_t group : {1, 3, 4, 8}) {
        for (int64_t page_size : {1, 16, 32}) {
          check_mixed_attention(pool, ++seed, seqs, 2, group, 64, page_size, 0.7, 0.7);
        }
      }
      check_mixed_attention(pool, ++seed, seqs, 2, 4, 128, 16, 0.7, 0.5);
      check_mixed_attention(pool, ++seed, seqs, 1, 8, 128, 32, 0.5, 0.7, true);
      check_mixed_attention(pool, ++seed, seqs, 3, 3, 64, 1, 0.3, 0.3, true);
    }
  });
}

TEST(SparseAttention, HeadDimsThatAreNotMultiplesOf32) {
  uint64_t seed = 100;
  for_each_variant([&] {
    ThreadPool pool(2);
    for (int64_t head_dim : {8, 24, 40, 80, 96, 200, 256}) {
      check_mixed_attention(pool, ++seed, {{150, 20}, {90, 1}}, 2, 2, head_dim, 16, 0.7, 0.5);
    }
  });
}

TEST(SparseAttention, LongDecodeContextsSplitAcrossThreadsMergeToTheSameResult) {
  uint64_t seed = 200;
  for_each_variant([&] {
    ThreadPool pool(2);
    check_mixed_attention(pool, ++seed, {{3000, 1}}, 1, 8, 64, 16, 0.7, 0.7);
    check_mixed_attention(pool, ++seed, {{2100, 1}, {1500, 1}}, 2, 4, 128, 32, 0.5, 0.7);
  });
}

// Sparsity 0 keeps every value: attention over the compressed pages is the dense result.
TEST(SparseAttention, SparsityZeroEqualsTheUnprunedDenseCache) {
  for_each_variant([&] {
    ThreadPool pool(2);
    check_mixed_attention(pool, 7, {{400, 1}, {200, 33}}, 3, 3, 64, 16, 0.0, 0.0);
  });
}

// ---- argument checks ------------------------------------------------------------------------

TEST(KvCompress, RefusesPagesOfTheWrongKind) {
  const std::unique_ptr<Device> device = make_device("cpu", 1);
  std::vector<uint16_t> k(4 * 16 * 8), v(k.size());
  std::vector<uint8_t> records(4096);
  PagedKv kv;
  kv.k_pages = k.data();
  kv.v_pages = v.data();
  kv.page_size = 16;
  kv.kv_heads = 1;
  kv.head_dim = 8;
  kv.dense_pages = 2;
  kv.k_kept = kv.v_kept = 4;
  const int32_t dense = 1, compressed = 3;
  // Host memory is the CPU's device memory: the same ids serve both.
  auto compress = [&](const int32_t& src, const int32_t& dst) {
    return error_message([&] { ops::kv_compress(*device, kv, {&src, &dst, &src, &dst, 1}, 4); });
  };
  EXPECT_EQ(compress(dense, compressed), "kv_compress: the cache has no compressed pages");
  kv.k_records = kv.v_records = records.data();
  EXPECT_EQ(compress(compressed, compressed), "kv_compress: source page 3 is not a dense page");
  EXPECT_EQ(compress(dense, dense), "kv_compress: destination page 1 is not a compressed page");
  kv.v_kept = 9;
  EXPECT_EQ(compress(dense, compressed), "kv_compress: 4 K and 9 V values kept of head_dim 8");
  kv.v_kept = 4;
  kv.dtype = KvDtype::kF32;
  EXPECT_EQ(compress(dense, compressed), "kv_compress: compressed pages need a bf16 KV cache");
}

}  // namespace
}  // namespace slimrt
