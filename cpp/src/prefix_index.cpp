#include "prefix_index.h"

#include <algorithm>

#include "check.h"

namespace slimrt {
namespace {

// splitmix64's finalizer: every input bit flips each output bit with probability ~1/2.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Folding word by word through mix keeps the order of the words in the hash.
uint64_t fold(uint64_t h, uint64_t word) { return mix(h ^ mix(word + 0x9e3779b97f4a7c15ULL)); }

}  // namespace

uint64_t hash_words(const uint64_t* words, int64_t count) {
  uint64_t h = mix(static_cast<uint64_t>(count));
  for (int64_t i = 0; i < count; ++i) h = fold(h, words[i]);
  return h;
}

PrefixIndex::PrefixIndex(int64_t num_pages, int64_t page_size, uint64_t salt)
    : page_size_(page_size), salt_(salt) {
  SLIMRT_CHECK(num_pages > 0 && page_size > 0, "prefix index: pages and page size must be > 0");
  int64_t capacity = 1;
  while (capacity < 2 * num_pages) capacity *= 2;
  slots_.assign(capacity, -1);
  mask_ = static_cast<uint64_t>(capacity - 1);
  key_.assign(num_pages, 0);
  parent_.assign(num_pages, 0);
  tokens_.assign(num_pages * page_size, 0);
  cached_.assign(num_pages, 0);
  prev_.assign(num_pages, -1);
  next_.assign(num_pages, -1);
  is_parked_.assign(num_pages, 0);
}

uint64_t PrefixIndex::key(uint64_t parent, const int32_t* tokens) const {
  uint64_t h = fold(parent, static_cast<uint64_t>(page_size_));
  for (int64_t i = 0; i < page_size_; ++i) h = fold(h, static_cast<uint32_t>(tokens[i]));
  return h;
}

int64_t PrefixIndex::slot_of(uint64_t key) const {
  for (uint64_t i = key & mask_;; i = (i + 1) & mask_) {
    if (slots_[i] < 0) return -1;
    if (key_[slots_[i]] == key) return static_cast<int64_t>(i);
  }
}

// Backward-shift deletion: later entries of the probe run move up, so no tombstones pile up.
void PrefixIndex::erase_slot(int64_t slot) {
  uint64_t hole = static_cast<uint64_t>(slot);
  for (uint64_t j = (hole + 1) & mask_; slots_[j] >= 0; j = (j + 1) & mask_) {
    const uint64_t home = key_[slots_[j]] & mask_;
    // The entry at j may fill the hole unless its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
    if (stays) continue;
    slots_[hole] = slots_[j];
    hole = j;
  }
  slots_[hole] = -1;
  --size_;
}

int32_t PrefixIndex::find(uint64_t key, uint64_t parent, const int32_t* tokens) const {
  const int64_t slot = slot_of(key);
  if (slot < 0) return -1;
  const int32_t page = slots_[slot];
  if (parent_[page] != parent || !std::equal(tokens, tokens + page_size_, tokens_of(page))) {
    return -1;
  }
  return page;
}

bool PrefixIndex::insert(int32_t page, uint64_t key, uint64_t parent, const int32_t* tokens) {
  if (cached_[page] || slot_of(key) >= 0) return false;
  uint64_t i = key & mask_;
  while (slots_[i] >= 0) i = (i + 1) & mask_;
  slots_[i] = page;
  ++size_;
  key_[page] = key;
  parent_[page] = parent;
  std::copy(tokens, tokens + page_size_, tokens_.begin() + page * page_size_);
  cached_[page] = 1;
  return true;
}

void PrefixIndex::park(int32_t page) {
  SLIMRT_CHECK_AS(ErrorCategory::kInternal, cached_[page] && !is_parked_[page],
                  "prefix index: page " << page << " parked but not cached, or parked twice");
  prev_[page] = tail_;
  next_[page] = -1;
  if (tail_ >= 0) {
    next_[tail_] = page;
  } else {
    head_ = page;
  }
  tail_ = page;
  is_parked_[page] = 1;
  ++parked_;
}

void PrefixIndex::unpark(int32_t page) {
  SLIMRT_CHECK_AS(ErrorCategory::kInternal, is_parked_[page],
                  "prefix index: page " << page << " unparked but not parked");
  (prev_[page] >= 0 ? next_[prev_[page]] : head_) = next_[page];
  (next_[page] >= 0 ? prev_[next_[page]] : tail_) = prev_[page];
  prev_[page] = next_[page] = -1;
  is_parked_[page] = 0;
  --parked_;
}

int32_t PrefixIndex::evict() {
  const int32_t page = head_;
  if (page < 0) return -1;
  unpark(page);
  erase_slot(slot_of(key_[page]));
  cached_[page] = 0;
  ++evictions_;
  return page;
}

}  // namespace slimrt
