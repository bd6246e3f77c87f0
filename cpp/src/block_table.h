// BlockTable: the KV pages one sequence owns, in order, and how many tokens they hold.
// fill_step_tables() turns the tables of one step's sequences into the arrays the kernels read.
//
//   BlockTable table(max_pages);           // reserves its page list once
//   table.grow(pool, 5);                    // pages for 5 more tokens (length unchanged)
//   ... run the step ...
//   table.commit(5);                        // or table.shrink_to(pool, pages_before) on failure
//   table.release(pool);                    // every page back to the pool
//
// With a compressing pool the table's first compressed_pages() entries are compressed pages and
// the rest dense: tokens leave the recent window oldest first, a whole page at a time.
//
// With a sliding window in every layer, pages that no later query can see go back to the pool
// (drop_unseen()): the table then lists pages from first_page() on, page i of pages() holding
// positions from (first_page() + i) * page_size.
// For prefix caching a table made with max_tokens > 0 keeps its committed tokens and the
// PrefixIndex key of each full page; a new table can start with cached pages (adopt_prefix()).
// Its writes land past length(), so the pages it shares are never written.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "kv_pool.h"

namespace slimrt {

class BlockTable {
 public:
  // max_tokens > 0: keeps up to that many committed tokens (prefix caching).
  explicit BlockTable(int64_t max_pages, int64_t max_tokens = 0);

  int64_t length() const { return length_; }
  int64_t num_pages() const { return static_cast<int64_t>(pages_.size()); }
  const int32_t* pages() const { return pages_.data(); }
  int64_t first_page() const { return first_page_; }

  // Whole pages of a table `length` tokens long that no later query sees with a sliding window of
  // `window` tokens (0: none): the next query, at position length, sees length - window + 1 on.
  static int64_t unseen_pages_at(int64_t length, int64_t window, int64_t page_size) {
    return window > 0 ? std::max<int64_t>(0, length - window + 1) / page_size : 0;
  }
  // Gives the pages before unseen_pages_at(length()) back to the pool (compressed ones first, as
  // they are the oldest).
  void drop_unseen(KvPool& pool, int64_t window, int64_t page_size);

  // Pages to add so that `new_tokens` more tokens fit after length().
  int64_t pages_needed(int64_t new_tokens, int64_t page_size) const;
  // Takes those pages from the pool (all or none); length() is unchanged until commit().
  void grow(KvPool& pool, int64_t new_tokens);
  // `tokens` (the new ones) may be null for a table that keeps none.
  void commit(int64_t new_tokens, const int32_t* tokens = nullptr);
  // Returns the pages past the first `num_pages` (undoes grow() of a step that failed).
  void shrink_to(KvPool& pool, int64_t num_pages);
  void release(KvPool& pool);

  int64_t compressed_pages() const { return compressed_; }
  // Whole pages of a table `length` tokens long that lie before its newest `window` tokens: the
  // compressed pages it has then.
  static int64_t compressed_pages_at(int64_t length, int64_t window, int64_t page_size) {
    return std::max<int64_t>(0, length - window) / page_size;
  }
  // Dense pages that have left the window at length() (the next ones to compress; after
  // drop_unseen(), so pages that were dropped are not among them).
  int64_t pages_to_compress(int64_t window, int64_t page_size) const {
    return std::max<int64_t>(
        0, compressed_pages_at(length_, window, page_size) - first_page_ - compressed_);
  }
  // Compressed pages the table takes on when it grows to `length` tokens with a dense window of
  // kv_window tokens and a sliding window of `window`: those that leave the dense window but not
  // the sliding one.
  int64_t compressed_needed(int64_t length, int64_t kv_window, int64_t window,
                            int64_t page_size) const {
    const int64_t held =
        std::max(unseen_pages_at(length, window, page_size), first_page_ + compressed_);
    return std::max<int64_t>(0, compressed_pages_at(length, kv_window, page_size) - held);
  }
  // Puts compressed pages ids[0, count) in place of the next `count` dense entries, whose ids it
  // writes to `replaced` (for the caller to release once nothing reads them).
  void swap_in_compressed(const int32_t* ids, int64_t count, int32_t* replaced);

  // Prefix caching. The committed tokens (a table that keeps them).
  const int32_t* tokens() const { return tokens_.data(); }
  // Computes the key of every full page not keyed yet.
  void key_full_pages(const PrefixIndex& index);
  int64_t keyed_pages() const { return static_cast<int64_t>(keys_.size()); }
  uint64_t page_key(int64_t page) const { return keys_[page]; }
  // The key a page's key chains from: the previous page's, or the root for the first.
  uint64_t parent_key(const PrefixIndex& index, int64_t page) const {
    return page == 0 ? index.root() : keys_[page - 1];
  }
  // Pages offered to the cache so far (the engine offers each full page once).
  int64_t offered_pages() const { return offered_; }
  void set_offered_pages(int64_t count) { offered_ = count; }
  // Starts an empty table with `count` cached pages (the caller holds a reference to each)
  // holding tokens[0, count * page_size), keyed keys[0, count); compressed: they are
  // compressed pages.
  void adopt_prefix(const int32_t* pages, const uint64_t* keys, int64_t count,
                    const int32_t* tokens, int64_t page_size, bool compressed);

 private:
  std::vector<int32_t> pages_;
  std::vector<int32_t> tokens_;
  std::vector<uint64_t> keys_;
  bool keeps_tokens_ = false;
  int64_t offered_ = 0;
  int64_t length_ = 0;
  int64_t compressed_ = 0;
  int64_t first_page_ = 0;  // pages before it were dropped
};

// Host arrays describing one step, with capacities fixed at load (see Executor).
struct StepTables {
  int32_t* token_ids = nullptr;     // [max_step_tokens]
  int32_t* positions = nullptr;     // [max_step_tokens] position of each new token
  int32_t* slots = nullptr;         // [max_step_tokens] page * page_size + offset
  int32_t* q_indptr = nullptr;      // [max_batch + 1]
  int32_t* page_indptr = nullptr;   // [max_batch + 1]
  int32_t* page_indices = nullptr;  // [total pages]: shared pages once per sequence
  int32_t* context_lens = nullptr;  // [max_batch] cached tokens after the step
  int32_t* first_pages = nullptr;   // [max_batch] each table's first_page()
  int32_t* last_rows = nullptr;     // [max_batch] row of each sequence's last new token
  int64_t batch = 0;
  int64_t tokens = 0;
  int64_t num_page_indices = 0;
};

// Fills `out` for sequences tables[b] receiving counts[b] tokens each, taken in order from
// `tokens`. Each table must already hold the pages for its new tokens (grow()) but not count
// them in length() yet (no commit()).
void fill_step_tables(const BlockTable* const* tables, const int32_t* counts, int64_t batch,
                      const int32_t* tokens, int64_t page_size, StepTables& out);

}  // namespace slimrt
