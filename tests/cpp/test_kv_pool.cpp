// KvPool (pages and free list) and BlockTable (a sequence's pages, the step's CSR arrays).
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "block_table.h"
#include "check.h"
#include "cpu_device.h"
#include "kv_pool.h"

namespace slimrt {
namespace {

KvPool::Shape small_shape(int64_t num_pages, int64_t page_size = 4) {
  KvPool::Shape s;
  s.layers = 2;
  s.kv_heads = 2;
  s.head_dim = 8;
  s.page_size = page_size;
  s.num_pages = num_pages;
  s.dtype = KvDtype::kBf16;
  return s;
}

std::string message(const Error& e) { return e.message(); }

TEST(KvPool, ReservesOneLayerMajorArenaOfTheExactSize) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(5));
  // 2 layers x (K, V) x 5 pages x 4 tokens x 2 heads x 8 dims x 2 bytes, each block 64-aligned.
  EXPECT_EQ(pool.bytes(), 2 * 2 * 5 * 4 * 2 * 8 * 2);
  EXPECT_EQ(KvPool::bytes_needed(small_shape(5)), pool.bytes());
  const PagedKv l0 = pool.layer(0), l1 = pool.layer(1);
  EXPECT_EQ(static_cast<char*>(l0.v_pages) - static_cast<char*>(l0.k_pages), 5 * 4 * 2 * 8 * 2);
  EXPECT_EQ(static_cast<char*>(l1.k_pages) - static_cast<char*>(l0.v_pages), 5 * 4 * 2 * 8 * 2);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(l0.k_pages) % 64, 0u);
}

TEST(KvPool, AllocatesDistinctPagesAndReusesReleasedOnes) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(4));
  int32_t a[3];
  pool.allocate(3, a);
  EXPECT_EQ(std::set<int32_t>(a, a + 3).size(), 3u);
  EXPECT_EQ(a[0], 0);  // a fresh pool hands out low ids first
  EXPECT_EQ(pool.free_pages(), 1);
  pool.release(a + 1, 1);
  EXPECT_EQ(pool.free_pages(), 2);
  int32_t b[1];
  pool.allocate(1, b);
  EXPECT_EQ(b[0], a[1]);  // the page freed last comes back first (still in cache)
}

TEST(KvPool, OutOfPagesThrowsTheContractMessageAndChangesNothing) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(3, 16));
  int32_t pages[4] = {-1, -1, -1, -1};
  pool.allocate(1, pages);
  try {
    pool.allocate(3, pages + 1);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(message(e),
              "KV cache out of pages: this step needs 3 more pages, 2 are free "
              "(kv_tokens=48, page_size=16)");
  }
  EXPECT_EQ(pool.free_pages(), 2);
  EXPECT_EQ(pages[1], -1);
  pool.allocate(2, pages + 1);  // the two free pages are still there
  EXPECT_EQ(pool.free_pages(), 0);
}

TEST(KvPool, ReleasingAPageNotInUseIsRefused) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(2));
  int32_t p;
  pool.allocate(1, &p);
  pool.release(&p, 1);
  EXPECT_THROW(pool.release(&p, 1), Error);
  const int32_t outside = 7;
  EXPECT_THROW(pool.release(&outside, 1), Error);
  EXPECT_EQ(pool.free_pages(), 2);
}

TEST(BlockTable, GrowsByWholePagesAndReleaseReturnsThemAll) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(8, 4));
  BlockTable table(8);
  EXPECT_EQ(table.pages_needed(5, 4), 2);
  table.grow(pool, 5);
  table.commit(5);
  EXPECT_EQ(table.num_pages(), 2);
  EXPECT_EQ(table.pages_needed(3, 4), 0);  // 8 tokens still fit in 2 pages
  EXPECT_EQ(table.pages_needed(4, 4), 1);
  table.grow(pool, 3);
  table.commit(3);
  EXPECT_EQ(table.num_pages(), 2);
  EXPECT_EQ(pool.free_pages(), 6);
  table.release(pool);
  EXPECT_EQ(table.length(), 0);
  EXPECT_EQ(table.num_pages(), 0);
  EXPECT_EQ(pool.free_pages(), 8);
}

TEST(BlockTable, FailedGrowAndShrinkLeaveTheTableAsBefore) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(3, 4));
  BlockTable table(3);
  table.grow(pool, 4);
  table.commit(4);
  EXPECT_THROW(table.grow(pool, 12), Error);  // needs 3 more, 2 free
  EXPECT_EQ(table.num_pages(), 1);
  EXPECT_EQ(pool.free_pages(), 2);
  table.grow(pool, 5);  // a step that will fail after taking pages
  EXPECT_EQ(table.num_pages(), 3);
  table.shrink_to(pool, 1);
  EXPECT_EQ(table.num_pages(), 1);
  EXPECT_EQ(table.length(), 4);
  EXPECT_EQ(pool.free_pages(), 2);
}

TEST(BlockTable, FillStepTablesBuildsCsrArraysAndSlots) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(8, 4));
  // Scatter the pages: sequence a gets 0, 1 then b gets 2, then a grows into 3.
  BlockTable a(8), b(8);
  a.grow(pool, 6);
  a.commit(6);
  b.grow(pool, 1);
  const int32_t counts[2] = {3, 1};  // a: prefill chunk at positions 6..8; b: its first token
  a.grow(pool, counts[0]);
  ASSERT_EQ(std::vector<int32_t>(a.pages(), a.pages() + 3), (std::vector<int32_t>{0, 1, 3}));

  std::vector<int32_t> ids(8), pos(8), slots(8), qi(3), pi(3), idx(8), ctx(2), last(2), first(2);
  StepTables t;
  t.token_ids = ids.data();
  t.positions = pos.data();
  t.slots = slots.data();
  t.q_indptr = qi.data();
  t.page_indptr = pi.data();
  t.page_indices = idx.data();
  t.context_lens = ctx.data();
  t.first_pages = first.data();
  t.last_rows = last.data();
  const BlockTable* tables[2] = {&a, &b};
  const int32_t tokens[4] = {11, 12, 13, 21};
  fill_step_tables(tables, counts, 2, tokens, 4, t);

  EXPECT_EQ(t.batch, 2);
  EXPECT_EQ(t.tokens, 4);
  EXPECT_EQ(std::vector<int32_t>(ids.begin(), ids.begin() + 4),
            (std::vector<int32_t>{11, 12, 13, 21}));
  EXPECT_EQ(std::vector<int32_t>(pos.begin(), pos.begin() + 4), (std::vector<int32_t>{6, 7, 8, 0}));
  // Position 6, 7 -> page 1 offsets 2, 3; position 8 -> page 3 offset 0; b's 0 -> page 2.
  EXPECT_EQ(std::vector<int32_t>(slots.begin(), slots.begin() + 4),
            (std::vector<int32_t>{6, 7, 12, 8}));
  EXPECT_EQ(qi, (std::vector<int32_t>{0, 3, 4}));
  EXPECT_EQ(pi, (std::vector<int32_t>{0, 3, 4}));
  EXPECT_EQ(std::vector<int32_t>(idx.begin(), idx.begin() + 4), (std::vector<int32_t>{0, 1, 3, 2}));
  EXPECT_EQ(t.num_page_indices, 4);
  EXPECT_EQ(ctx, (std::vector<int32_t>{9, 1}));
  EXPECT_EQ(last, (std::vector<int32_t>{2, 3}));
  EXPECT_EQ(first, (std::vector<int32_t>{0, 0}));
}

// A sliding window of 6 tokens, pages of 4: after each step the pages that the next query (at
// position length) cannot see go back to the pool, and the step tables list the rest from
// first_page(), with slots and page counts relative to it.
TEST(BlockTable, DropsThePagesNoLaterQuerySeesAndListsTheRest) {
  CpuDevice device(1);
  KvPool pool(device, small_shape(8, 4));
  BlockTable a(8);
  a.grow(pool, 9);
  a.commit(9);
  EXPECT_EQ(BlockTable::unseen_pages_at(9, 6, 4), 1);  // position 9 sees 4..9: page 0 goes
  a.drop_unseen(pool, 6, 4);
  EXPECT_EQ(a.first_page(), 1);
  EXPECT_EQ(a.num_pages(), 2);
  EXPECT_EQ(pool.free_pages(), 6);
  a.drop_unseen(pool, 6, 4);  // nothing more to drop at the same length
  EXPECT_EQ(pool.free_pages(), 6);
  // Growing to 14 tokens needs pages 3 (12..15) only.
  EXPECT_EQ(a.pages_needed(5, 4), 1);
  const int32_t counts[1] = {5};
  a.grow(pool, counts[0]);
  std::vector<int32_t> ids(8), pos(8), slots(8), qi(2), pi(2), idx(8), ctx(1), last(1), first(1);
  StepTables t{ids.data(), pos.data(), slots.data(), qi.data(),  pi.data(),
               idx.data(), ctx.data(), first.data(), last.data()};
  const BlockTable* tables[1] = {&a};
  const int32_t tokens[5] = {1, 2, 3, 4, 5};
  fill_step_tables(tables, counts, 1, tokens, 4, t);
  EXPECT_EQ(first[0], 1);
  EXPECT_EQ(pi, (std::vector<int32_t>{0, 3}));  // pages 1, 2, 3
  EXPECT_EQ(std::vector<int32_t>(idx.begin(), idx.begin() + 3),
            std::vector<int32_t>(a.pages(), a.pages() + 3));
  EXPECT_EQ(slots[0], a.pages()[1] * 4 + 1);  // position 9: page 2, offset 1
  EXPECT_EQ(slots[4], a.pages()[2] * 4 + 1);  // position 13: page 3, offset 1
  a.commit(5);
  a.drop_unseen(pool, 6, 4);  // position 14 sees 9..14: pages 1 (4..7) goes, 2 stays
  EXPECT_EQ(a.first_page(), 2);
  EXPECT_EQ(pool.free_pages(), 6);
  a.release(pool);
  EXPECT_EQ(a.first_page(), 0);
  EXPECT_EQ(pool.free_pages(), 8);
}

KvPool::Shape compressing_shape() {
  KvPool::Shape s = small_shape(3);
  s.compressed_pages = 5;
  s.k_kept = 3;  // records of 2 + 6 bytes
  s.v_kept = 8;  // 2 + 16
  return s;
}

TEST(KvPool, CompressedPagesFollowEachLayersDensePagesWithTheirTailPads) {
  CpuDevice device(1);
  const KvPool::Shape shape = compressing_shape();
  KvPool pool(device, shape);
  const int64_t dense = 3 * 4 * 2 * 8 * 2;  // 3 pages x 4 tokens x 2 heads x 8 dims x 2 bytes
  const int64_t k_records = 5 * 4 * 2 * 8 + 64, v_records = 5 * 4 * 2 * 18 + 64;
  auto aligned = [](int64_t b) { return (b + 63) / 64 * 64; };
  EXPECT_EQ(pool.bytes(), 2 * (2 * dense + aligned(k_records) + aligned(v_records)));
  EXPECT_EQ(KvPool::bytes_needed(shape), pool.bytes());
  EXPECT_EQ(KvPool::dense_page_bytes(shape), 2 * 2 * 4 * 2 * 8 * 2);
  EXPECT_EQ(KvPool::compressed_page_bytes(shape), 2 * 4 * 2 * (8 + 18));
  const PagedKv l0 = pool.layer(0), l1 = pool.layer(1);
  EXPECT_EQ(static_cast<char*>(l0.k_records) - static_cast<char*>(l0.v_pages), dense);
  EXPECT_EQ(static_cast<char*>(l0.v_records) - static_cast<char*>(l0.k_records),
            aligned(k_records));
  EXPECT_EQ(static_cast<char*>(l1.k_pages) - static_cast<char*>(l0.v_records), aligned(v_records));
  EXPECT_EQ(l1.dense_pages, 3);
  EXPECT_EQ(l1.k_kept, 3);
  EXPECT_EQ(l1.v_kept, 8);
}

TEST(KvPool, LendsEachKindFromItsOwnFreeListAndTakesBothBack) {
  CpuDevice device(1);
  KvPool pool(device, compressing_shape());
  int32_t dense[3], compressed[5];
  pool.allocate(3, dense);
  pool.allocate_compressed(5, compressed);
  EXPECT_EQ(std::vector<int32_t>(dense, dense + 3), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(std::vector<int32_t>(compressed, compressed + 5),
            (std::vector<int32_t>{3, 4, 5, 6, 7}));
  EXPECT_TRUE(pool.is_compressed(3));
  EXPECT_FALSE(pool.is_compressed(2));
  EXPECT_EQ(pool.free_pages(), 0);
  EXPECT_EQ(pool.free_compressed_pages(), 0);
  try {
    pool.allocate_compressed(1, compressed);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::kOutOfMemory);
    EXPECT_EQ(message(e),
              "KV cache out of pages: this step needs 1 more compressed pages, 0 are free (5 "
              "compressed pages of 4 tokens)");
  }
  const int32_t mixed[3] = {6, 1, 3};
  pool.release(mixed, 3);
  EXPECT_EQ(pool.free_pages(), 1);
  EXPECT_EQ(pool.free_compressed_pages(), 2);
  EXPECT_THROW(pool.release(mixed, 1), Error);  // page 6 is free already
  int32_t again[2];
  pool.allocate_compressed(2, again);
  EXPECT_EQ(std::vector<int32_t>(again, again + 2), (std::vector<int32_t>{3, 6}));
}

TEST(BlockTable, CompressedPagesReplaceTheOldestDenseEntries) {
  CpuDevice device(1);
  KvPool pool(device, compressing_shape());
  BlockTable table(8);
  table.grow(pool, 11);  // 3 dense pages of 4
  table.commit(11);
  EXPECT_EQ(table.pages_to_compress(/*window=*/2, 4), 2);  // tokens 0..7 are outside
  int32_t ids[2], replaced[2];
  pool.allocate_compressed(2, ids);
  table.swap_in_compressed(ids, 2, replaced);
  pool.release(replaced, 2);
  EXPECT_EQ(table.compressed_pages(), 2);
  EXPECT_EQ(std::vector<int32_t>(table.pages(), table.pages() + 3),
            (std::vector<int32_t>{ids[0], ids[1], 2}));
  EXPECT_EQ(table.pages_to_compress(2, 4), 0);
  table.release(pool);
  EXPECT_EQ(pool.free_pages(), 3);
  EXPECT_EQ(pool.free_compressed_pages(), 5);
  EXPECT_EQ(table.compressed_pages(), 0);
}

}  // namespace
}  // namespace slimrt
