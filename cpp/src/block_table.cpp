#include "block_table.h"

#include <algorithm>

#include "check.h"

namespace slimrt {

BlockTable::BlockTable(int64_t max_pages, int64_t max_tokens) : keeps_tokens_(max_tokens > 0) {
  pages_.reserve(max_pages);
  if (keeps_tokens_) {
    tokens_.reserve(max_tokens);
    keys_.reserve(max_pages);
  }
}

void BlockTable::commit(int64_t new_tokens, const int32_t* tokens) {
  if (keeps_tokens_) tokens_.insert(tokens_.end(), tokens, tokens + new_tokens);
  length_ += new_tokens;
}

void BlockTable::key_full_pages(const PrefixIndex& index) {
  const int64_t full = static_cast<int64_t>(tokens_.size()) / index.page_size();
  for (int64_t p = keyed_pages(); p < full; ++p) {
    keys_.push_back(index.key(parent_key(index, p), tokens_.data() + p * index.page_size()));
  }
}

void BlockTable::adopt_prefix(const int32_t* pages, const uint64_t* keys, int64_t count,
                              const int32_t* tokens, int64_t page_size, bool compressed) {
  SLIMRT_CHECK_AS(ErrorCategory::kInternal, keeps_tokens_ && length_ == 0 && pages_.empty(),
                  "block table: a cached prefix goes only into an empty table that keeps tokens");
  pages_.assign(pages, pages + count);
  keys_.assign(keys, keys + count);
  tokens_.assign(tokens, tokens + count * page_size);
  length_ = count * page_size;
  compressed_ = compressed ? count : 0;
  offered_ = count;
}

int64_t BlockTable::pages_needed(int64_t new_tokens, int64_t page_size) const {
  const int64_t pages_after = (length_ + new_tokens + page_size - 1) / page_size - first_page_;
  return std::max<int64_t>(0, pages_after - num_pages());
}

void BlockTable::grow(KvPool& pool, int64_t new_tokens) {
  const int64_t count = pages_needed(new_tokens, pool.page_size());
  if (count == 0) return;
  const int64_t before = num_pages();
  // Within the capacity reserved at construction (the engine bounds sequence length), so this
  // never reallocates.
  pages_.resize(before + count);
  try {
    pool.allocate(count, pages_.data() + before);
  } catch (...) {
    pages_.resize(before);
    throw;
  }
}

void BlockTable::shrink_to(KvPool& pool, int64_t num_pages) {
  if (num_pages >= this->num_pages()) return;
  pool.release(pages_.data() + num_pages, this->num_pages() - num_pages);
  pages_.resize(num_pages);
}

void BlockTable::release(KvPool& pool) {
  shrink_to(pool, 0);
  length_ = 0;
  compressed_ = 0;
  first_page_ = 0;
  tokens_.clear();
  keys_.clear();
  offered_ = 0;
}

void BlockTable::drop_unseen(KvPool& pool, int64_t window, int64_t page_size) {
  const int64_t count =
      std::min(unseen_pages_at(length_, window, page_size) - first_page_, num_pages());
  if (count <= 0) return;
  pool.release(pages_.data(), count);
  pages_.erase(pages_.begin(), pages_.begin() + count);
  compressed_ = std::max<int64_t>(0, compressed_ - count);
  first_page_ += count;
}

void BlockTable::swap_in_compressed(const int32_t* ids, int64_t count, int32_t* replaced) {
  SLIMRT_CHECK_AS(ErrorCategory::kInternal, count >= 0 && compressed_ + count <= num_pages(),
                  "block table: " << count << " pages to compress past " << compressed_);
  for (int64_t i = 0; i < count; ++i) {
    replaced[i] = pages_[compressed_ + i];
    pages_[compressed_ + i] = ids[i];
  }
  compressed_ += count;
}

void fill_step_tables(const BlockTable* const* tables, const int32_t* counts, int64_t batch,
                      const int32_t* tokens, int64_t page_size, StepTables& out) {
  int64_t row = 0;
  int64_t page_entries = 0;
  out.q_indptr[0] = 0;
  out.page_indptr[0] = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const BlockTable& table = *tables[b];
    const int64_t start = table.length();
    const int64_t count = counts[b];
    const int64_t length = start + count;
    const int64_t first = table.first_page();
    const int64_t pages = (length + page_size - 1) / page_size - first;
    SLIMRT_CHECK(pages <= table.num_pages(), "block table holds " << table.num_pages() << " pages, "
                                                                  << pages
                                                                  << " are needed (grow first)");
    const int32_t* page_ids = table.pages();
    for (int64_t i = 0; i < count; ++i, ++row) {
      const int64_t position = start + i;
      out.token_ids[row] = tokens[row];
      out.positions[row] = static_cast<int32_t>(position);
      out.slots[row] = static_cast<int32_t>(page_ids[position / page_size - first] * page_size +
                                            position % page_size);
    }
    for (int64_t p = 0; p < pages; ++p) out.page_indices[page_entries++] = page_ids[p];
    out.q_indptr[b + 1] = static_cast<int32_t>(row);
    out.page_indptr[b + 1] = static_cast<int32_t>(page_entries);
    out.context_lens[b] = static_cast<int32_t>(length);
    out.first_pages[b] = static_cast<int32_t>(first);
    out.last_rows[b] = static_cast<int32_t>(row - 1);
  }
  out.batch = batch;
  out.tokens = row;
  out.num_page_indices = page_entries;
}

}  // namespace slimrt
