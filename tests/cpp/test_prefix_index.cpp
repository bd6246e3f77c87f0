// Prefix caching: PrefixIndex (keys, probing, LRU), the KvPool's reference counts around it,
// and the Engine reusing cached pages: logits bit-identical to an engine without the cache,
// shared pages never written, every reference back at the end.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "cpu_device.h"
#include "error_message.h"
#include "kv_pool.h"
#include "prefix_index.h"
#include "slimrt/engine.h"
#include "tiny_engine_model.h"

namespace slimrt {
namespace {

using test::error_message;
using test::make_model;
using test::random_tokens;
using test::run_step;
using test::test_options;
using test::tiny_model;
using test::TinyModel;
using test::Variant;

KvPool::Shape caching_shape(int64_t num_pages) {
  KvPool::Shape s;
  s.layers = 2;
  s.kv_heads = 2;
  s.head_dim = 8;
  s.page_size = 4;
  s.num_pages = num_pages;
  s.prefix_caching = true;
  return s;
}

// A page of 4 tokens starting at `first`.
std::vector<int32_t> page_tokens(int32_t first) { return {first, first + 1, first + 2, first + 3}; }

// Allocates a page, caches it as the first page holding `tokens`, and returns it (referenced).
int32_t cached_page(KvPool& pool, const std::vector<int32_t>& tokens) {
  const PrefixIndex& index = *pool.prefix_index();
  int32_t page = -1;
  pool.allocate(1, &page);
  EXPECT_TRUE(
      pool.cache(page, index.key(index.root(), tokens.data()), index.root(), tokens.data()));
  return page;
}

int32_t find_first(const KvPool& pool, const std::vector<int32_t>& tokens) {
  const PrefixIndex& index = *pool.prefix_index();
  return pool.find_cached(index.key(index.root(), tokens.data()), index.root(), tokens.data());
}

TEST(PrefixIndex, KeysChainSoEqualTokensAfterAnotherPrefixDiffer) {
  PrefixIndex index(8, 4, 42);
  const std::vector<int32_t> a = page_tokens(10), b = page_tokens(20);
  const uint64_t ka = index.key(index.root(), a.data());
  const uint64_t kb = index.key(index.root(), b.data());
  EXPECT_NE(ka, kb);
  // The same tokens as the second page (after a, or after b) and as the first: three keys.
  const uint64_t b_after_a = index.key(ka, b.data());
  EXPECT_NE(b_after_a, kb);
  EXPECT_NE(b_after_a, index.key(kb, b.data()));
  // Token order counts.
  const std::vector<int32_t> swapped = {11, 10, 12, 13};
  EXPECT_NE(index.key(index.root(), swapped.data()), ka);
  // Another salt, another chain.
  PrefixIndex other(8, 4, 43);
  EXPECT_NE(other.key(other.root(), a.data()), ka);
  EXPECT_EQ(PrefixIndex(8, 4, 42).key(index.root(), a.data()), ka);  // and deterministic
}

TEST(PrefixIndex, AHitNeedsTheSameTokensAndParentNotJustTheKey) {
  PrefixIndex index(8, 4, 1);
  const std::vector<int32_t> a = page_tokens(10), b = page_tokens(20);
  ASSERT_TRUE(index.insert(3, 777, 5, a.data()));
  EXPECT_EQ(index.find(777, 5, a.data()), 3);
  EXPECT_EQ(index.find(777, 5, b.data()), -1);      // a key collision with other tokens
  EXPECT_EQ(index.find(777, 6, a.data()), -1);      // or another parent
  EXPECT_FALSE(index.insert(4, 777, 5, a.data()));  // the key is taken
  EXPECT_FALSE(index.insert(3, 778, 5, b.data()));  // the page is cached
  EXPECT_EQ(index.size(), 1);
}

TEST(PrefixIndex, EvictingFromACollidingProbeRunKeepsTheOthersFindable) {
  // 4 pages: 8 slots, so keys 8, 16, 24 and 1 all start probing at slot 0 or 1.
  PrefixIndex index(4, 4, 1);
  const std::vector<int32_t> t = page_tokens(0);
  const uint64_t keys[] = {8, 16, 24, 1};
  for (int32_t p = 0; p < 4; ++p) ASSERT_TRUE(index.insert(p, keys[p], 0, t.data()));
  for (int32_t p : {1, 0, 3, 2}) index.park(p);
  EXPECT_EQ(index.evict(), 1);  // the least recently parked
  EXPECT_EQ(index.find(8, 0, t.data()), 0);
  EXPECT_EQ(index.find(16, 0, t.data()), -1);
  EXPECT_EQ(index.find(24, 0, t.data()), 2);
  EXPECT_EQ(index.find(1, 0, t.data()), 3);
  EXPECT_EQ(index.evict(), 0);
  EXPECT_EQ(index.find(24, 0, t.data()), 2);
  EXPECT_EQ(index.find(1, 0, t.data()), 3);
  EXPECT_EQ(index.size(), 2);
  EXPECT_EQ(index.evictions(), 2);
}

TEST(PrefixCachePool, ReferencesReturnToZeroAndTheCachedPageStaysFree) {
  CpuDevice device(1);
  KvPool pool(device, caching_shape(4));
  const int32_t page = cached_page(pool, page_tokens(0));
  pool.retain(page);  // a second sequence shares it
  EXPECT_EQ(pool.references(page), 2);
  EXPECT_EQ(pool.free_pages(), 3);
  pool.release(&page, 1);
  EXPECT_EQ(pool.references(page), 1);
  EXPECT_EQ(pool.cached_free_pages(), 0);
  pool.release(&page, 1);
  EXPECT_EQ(pool.references(page), 0);
  EXPECT_EQ(pool.free_pages(), 4);  // free, and still cached
  EXPECT_EQ(pool.cached_free_pages(), 1);
  EXPECT_EQ(find_first(pool, page_tokens(0)), page);
  EXPECT_EQ(error_message([&] { pool.release(&page, 1); }),
            "KV pool: page " + std::to_string(page) + " released but not in use");
  pool.retain(page);  // a hit on the free cached page takes it out of the LRU
  EXPECT_EQ(pool.cached_free_pages(), 0);
  EXPECT_EQ(pool.free_pages(), 3);
}

TEST(PrefixCachePool, CachedPagesAreEvictedOnlyWhenNoPageIsFreeAndOldestFirst) {
  CpuDevice device(1);
  KvPool pool(device, caching_shape(5));
  const int32_t a = cached_page(pool, page_tokens(0));
  const int32_t b = cached_page(pool, page_tokens(10));
  const int32_t c = cached_page(pool, page_tokens(20));
  for (int32_t p : {a, c, b}) pool.release(&p, 1);  // LRU order: a, c, b
  EXPECT_EQ(pool.free_pages(), 5);
  int32_t taken[3];
  pool.allocate(2, taken);  // the two never-cached pages first
  EXPECT_EQ(std::set<int32_t>(taken, taken + 2).count(a), 0u);
  EXPECT_EQ(pool.prefix_index()->evictions(), 0);
  EXPECT_EQ(find_first(pool, page_tokens(0)), a);
  pool.allocate(1, taken + 2);  // now the pool needs a cached page: the least recently used
  EXPECT_EQ(taken[2], a);
  EXPECT_EQ(find_first(pool, page_tokens(0)), -1);
  EXPECT_EQ(find_first(pool, page_tokens(10)), b);
  pool.retain(c);  // referenced again: no longer evictable
  int32_t next = -1;
  pool.allocate(1, &next);
  EXPECT_EQ(next, b);
  EXPECT_EQ(pool.prefix_index()->evictions(), 2);
  // c is in use: nothing left.
  EXPECT_EQ(error_message([&] { pool.allocate(1, &next); }),
            "KV cache out of pages: this step needs 1 more pages, 0 are free (kv_tokens=20, "
            "page_size=4)");
  EXPECT_EQ(find_first(pool, page_tokens(20)), c);
}

TEST(PrefixCachePool, EverySettingThatChangesAPagesBytesChangesItsKeys) {
  CpuDevice device(1);
  const std::vector<int32_t> t = page_tokens(0);
  auto first_key = [&](const KvPool::Shape& shape) {
    KvPool pool(device, shape);
    const PrefixIndex& index = *pool.prefix_index();
    return index.key(index.root(), t.data());
  };
  const KvPool::Shape base = caching_shape(4);
  std::vector<KvPool::Shape> variants(6, base);
  variants[0].dtype = KvDtype::kF32;
  variants[1].prefix_salt = 1;  // another model or window (engine.cpp)
  variants[2].compressed_pages = 4;
  variants[3].compressed_pages = 4;
  variants[3].k_kept = 4;
  variants[4].compressed_pages = 4;
  variants[4].v_kept = 4;
  variants[5].kv_heads = 1;
  std::set<uint64_t> keys = {first_key(base)};
  for (const KvPool::Shape& v : variants) keys.insert(first_key(v));
  EXPECT_EQ(keys.size(), variants.size() + 1);
  EXPECT_EQ(first_key(base), first_key(base));
}

TEST(PrefixCachePool, ACompressingPoolCachesOnlyItsCompressedPages) {
  CpuDevice device(1);
  KvPool::Shape shape = caching_shape(4);
  shape.compressed_pages = 4;
  shape.k_kept = 4;
  shape.v_kept = 4;
  KvPool pool(device, shape);
  int32_t dense = -1, compressed = -1;
  pool.allocate(1, &dense);
  pool.allocate_compressed(1, &compressed);
  EXPECT_FALSE(pool.caches(dense));
  EXPECT_TRUE(pool.caches(compressed));
  const std::vector<int32_t> t = page_tokens(0);
  const PrefixIndex& index = *pool.prefix_index();
  EXPECT_EQ(error_message([&] {
              pool.cache(dense, index.key(index.root(), t.data()), index.root(), t.data());
            }),
            "KV pool: page " + std::to_string(dense) +
                " cached but not in use, or not of the cached kind");
  EXPECT_TRUE(pool.cache(compressed, index.key(index.root(), t.data()), index.root(), t.data()));
  pool.release(&compressed, 1);
  EXPECT_EQ(pool.free_compressed_pages(), 4);
  EXPECT_EQ(pool.free_pages(), 3);  // the dense kind has no cached pages to count
}

// ---------------------------------------------------------------------------------------------
// The engine.

std::vector<int32_t> concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

int64_t reuse(Engine& engine, int64_t seq, const std::vector<int32_t>& tokens) {
  return engine.reuse_prefix(seq, tokens.data(), static_cast<int64_t>(tokens.size()));
}

// A request alone on an engine: its prompt in chunks of `chunk`, then `decode` greedy-free
// decode steps with fixed tokens. Returns the logits of every step.
std::vector<std::vector<float>> run_alone(Engine& engine, const std::vector<int32_t>& prompt,
                                          int64_t chunk, int decode) {
  const int64_t seq = engine.add_sequence();
  std::vector<std::vector<float>> out;
  for (size_t at = 0; at < prompt.size(); at += chunk) {
    const auto end = prompt.begin() + std::min(prompt.size(), at + chunk);
    out.push_back(run_step(engine, {seq}, {std::vector<int32_t>(prompt.begin() + at, end)}));
  }
  for (int i = 0; i < decode; ++i) out.push_back(run_step(engine, {seq}, {{(3 * i + 1) % 97}}));
  engine.release_sequence(seq);
  return out;
}

TEST(PrefixCacheEngine, AReusedPrefixGivesBitIdenticalLogitsAndIsNeverWritten) {
  for (const char* kv_dtype : {"f32", "bf16"}) {
    const TinyModel m = make_model(Variant::kLlama);
    EngineOptions off = test_options(kv_dtype);
    off.enable_prefix_caching = false;
    Engine plain(tiny_model(m.config, m.weights()), off);
    Engine cached(tiny_model(m.config, m.weights()), test_options(kv_dtype));

    const std::vector<int32_t> prefix = random_tokens(22, 97, 5);  // 5 full pages of 4, and 2
    const std::vector<int32_t> first = concat(prefix, random_tokens(7, 97, 6));
    const std::vector<int32_t> second = concat(prefix, random_tokens(9, 97, 7));

    // The first request computes the prefix and stays running.
    const int64_t a = cached.add_sequence();
    EXPECT_EQ(reuse(cached, a, first), 0);
    run_step(cached, {a}, {first});
    const std::vector<int32_t> shared = cached.sequence_pages(a);
    std::vector<uint32_t> crcs;
    for (int p = 0; p < 5; ++p) crcs.push_back(cached.page_crc32(shared[p]));

    // The second reuses its 5 full pages and computes the rest; both decode together.
    const int64_t b = cached.add_sequence();
    EXPECT_EQ(reuse(cached, b, second), 20);
    const std::vector<int32_t> b_pages = cached.sequence_pages(b);
    ASSERT_EQ(b_pages.size(), 5u);
    EXPECT_TRUE(std::equal(b_pages.begin(), b_pages.end(), shared.begin()));
    std::vector<std::vector<float>> got;
    got.push_back(run_step(cached, {b}, {std::vector<int32_t>(second.begin() + 20, second.end())}));
    for (int i = 0; i < 6; ++i) {
      const std::vector<float> both =
          run_step(cached, {a, b}, {{(5 * i) % 97}, {(3 * i + 1) % 97}});
      got.emplace_back(both.begin() + cached.vocab_size(), both.end());
    }
    for (int p = 0; p < 5; ++p) {
      EXPECT_EQ(cached.page_crc32(shared[p]), crcs[p]) << "shared page " << p << " was written";
    }

    // The whole prompt in one step of 31 rows where the cached run computed 11: both longer
    // than the CPU matmul's decode stream (up to 6 rows), which sums in another order.
    const auto want = run_alone(plain, second, 64, 6);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(same_bits(got[i], want[i])) << i;

    KvUsage u = cached.kv_usage();
    EXPECT_EQ(u.prefix_hit_tokens, 20);
    EXPECT_EQ(u.prefix_query_tokens, static_cast<int64_t>(first.size() + second.size()));
    cached.release_sequence(a);
    cached.release_sequence(b);
    u = cached.kv_usage();
    EXPECT_EQ(u.dense_pages_used, 0);  // every reference back
    EXPECT_EQ(cached.free_pages(), cached.total_pages());
    EXPECT_GT(u.prefix_cached_pages, 5);  // the prefix, and the full pages each one went on to
    EXPECT_EQ(u.prefix_cached_free_pages, u.prefix_cached_pages);
    EXPECT_EQ(u.tokens, 0);
  }
}

TEST(PrefixCacheEngine, AFullyCachedPromptStillComputesItsLastToken) {
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions off = test_options();
  off.enable_prefix_caching = false;
  Engine plain(tiny_model(m.config, m.weights()), off);
  Engine cached(tiny_model(m.config, m.weights()), test_options());
  const std::vector<int32_t> prompt = random_tokens(16, 97, 9);  // exactly 4 pages
  run_alone(cached, prompt, 64, 0);
  const int64_t seq = cached.add_sequence();
  EXPECT_EQ(reuse(cached, seq, prompt), 12);  // 3 pages: the 4th holds the last token
  const std::vector<float> got =
      run_step(cached, {seq}, {std::vector<int32_t>(prompt.begin() + 12, prompt.end())});
  // The uncached run cut where the cache did: the CPU matmul sums a step of up to 6 rows (its
  // decode stream) in another order than a longer one, so only equal step shapes are equal.
  EXPECT_TRUE(same_bits(got, run_alone(plain, prompt, 12, 0).back()));
  cached.release_sequence(seq);
  EXPECT_EQ(reuse(cached, cached.add_sequence(), {prompt[0]}), 0);  // one token: nothing to reuse
}

TEST(PrefixCacheEngine, EvictionUnderPressureStillGivesEveryRequestItsPages) {
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions o = test_options();
  o.kv_tokens = 32;  // 8 pages of 4
  Engine engine(tiny_model(m.config, m.weights()), o);
  run_alone(engine, random_tokens(24, 97, 1), 64, 0);  // caches 6 pages
  EXPECT_EQ(engine.kv_usage().prefix_cached_free_pages, 6);
  EXPECT_EQ(engine.free_pages(), 8);
  run_alone(engine, random_tokens(30, 97, 2), 64, 0);  // needs 8: evicts 6
  const KvUsage u = engine.kv_usage();
  EXPECT_EQ(u.prefix_evicted_pages, 6);
  EXPECT_EQ(u.prefix_cached_pages, 7);  // the second prompt's full pages
  EXPECT_EQ(engine.free_pages(), 8);
}

TEST(PrefixCacheEngine, DisabledReusesNothing) {
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions o = test_options();
  o.enable_prefix_caching = false;
  Engine engine(tiny_model(m.config, m.weights()), o);
  const std::vector<int32_t> prompt = random_tokens(20, 97, 3);
  run_alone(engine, prompt, 64, 0);
  EXPECT_EQ(reuse(engine, engine.add_sequence(), prompt), 0);
  EXPECT_EQ(engine.kv_usage().prefix_cached_pages, 0);
}

// With kv_window 0 every full page is compressed after the step that fills it, so a sequence
// that reuses the compressed prefix sees what one whose first chunk ended there saw.
TEST(PrefixCacheEngine, CompressedPagesAreReusedBitIdentically) {
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions on = test_options("bf16");
  on.kv_tokens = 1024;
  on.kv_compression = true;
  on.k_sparsity = 0.5;
  on.v_sparsity = 0.25;
  on.kv_window = 0;
  EngineOptions off = on;
  off.enable_prefix_caching = false;
  Engine plain(tiny_model(m.config, m.weights()), off);
  Engine cached(tiny_model(m.config, m.weights()), on);
  const std::vector<int32_t> prefix = random_tokens(16, 97, 11);
  const std::vector<int32_t> second = concat(prefix, random_tokens(10, 97, 12));
  run_alone(cached, concat(prefix, random_tokens(5, 97, 13)), 16, 2);
  const int64_t seq = cached.add_sequence();
  ASSERT_EQ(reuse(cached, seq, second), 16);
  const std::vector<int32_t> shared = cached.sequence_pages(seq);
  std::vector<uint32_t> crcs;
  for (int p = 0; p < 4; ++p) crcs.push_back(cached.page_crc32(shared[p]));
  std::vector<std::vector<float>> got;
  got.push_back(run_step(cached, {seq}, {std::vector<int32_t>(second.begin() + 16, second.end())}));
  for (int i = 0; i < 5; ++i) got.push_back(run_step(cached, {seq}, {{(3 * i + 1) % 97}}));
  for (int p = 0; p < 4; ++p) EXPECT_EQ(cached.page_crc32(shared[p]), crcs[p]);
  cached.release_sequence(seq);
  auto want = run_alone(plain, second, 16, 5);
  want.erase(want.begin());  // the prefix's own chunk, which the cached run skipped
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_TRUE(same_bits(got[i], want[i])) << i;
  const KvUsage u = cached.kv_usage();
  EXPECT_EQ(u.compressed_pages_used, 0);
  EXPECT_EQ(u.dense_pages_used, 0);
  EXPECT_EQ(u.prefix_cached_free_pages, u.prefix_cached_pages);
}

}  // namespace
}  // namespace slimrt
