// PrefixIndex: the prefix cache's table of full KV pages, keyed by a chained hash of their
// tokens (as vLLM's and nano-vllm's block managers), and the LRU order in which cached pages
// that no sequence references are evicted. The KvPool owns it beside its reference counts and
// asks it; nothing else does.
//
//   PrefixIndex index(num_pages, page_size, salt);
//   uint64_t key = index.key(index.root(), tokens);        // the first page's key
//   index.insert(page, key, index.root(), tokens);          // a full page, written once
//   int32_t hit = index.find(key, index.root(), tokens);    // that page, or -1
//   index.park(page);                                       // its last reference went
//   int32_t victim = index.evict();                         // the least recently parked one
//
// A key chains the key of the page before (root() = the salt for the first page), so equal
// tokens at another position or after another prefix get another key, and the salt (a hash of
// the model and every KV setting that changes a page's bytes) keeps pools of different settings
// apart. A hit must also match the stored tokens and parent key: a 64-bit collision never
// shares a page.
#pragma once

#include <cstdint>
#include <vector>

namespace slimrt {

// A 64-bit hash of `count` words, for salts (and the chain below).
uint64_t hash_words(const uint64_t* words, int64_t count);

class PrefixIndex {
 public:
  // Pages are ids [0, num_pages) of page_size tokens each; memory for all of them is taken here.
  PrefixIndex(int64_t num_pages, int64_t page_size, uint64_t salt);

  uint64_t root() const { return salt_; }
  int64_t page_size() const { return page_size_; }
  // The key of a page holding tokens[0, page_size) after the page keyed `parent`.
  uint64_t key(uint64_t parent, const int32_t* tokens) const;

  // The cached page with this key, parent key and tokens, or -1.
  int32_t find(uint64_t key, uint64_t parent, const int32_t* tokens) const;
  // Caches `page` under `key`; false, changing nothing, when the key is taken (another
  // sequence computed the same page first) or the page is cached already.
  bool insert(int32_t page, uint64_t key, uint64_t parent, const int32_t* tokens);
  bool contains(int32_t page) const { return cached_[page] != 0; }

  // The LRU of cached pages no sequence references. park: its last reference went (it becomes
  // the most recently used); unpark: a sequence references it again.
  void park(int32_t page);
  void unpark(int32_t page);
  // Drops the least recently parked page from the cache and returns it; -1 when none is parked.
  int32_t evict();

  int64_t parked() const { return parked_; }
  int64_t size() const { return size_; }
  int64_t evictions() const { return evictions_; }

 private:
  const int32_t* tokens_of(int32_t page) const { return tokens_.data() + page * page_size_; }
  int64_t slot_of(uint64_t key) const;  // the slot holding the page keyed `key`, or -1
  void erase_slot(int64_t slot);

  int64_t page_size_;
  uint64_t salt_;
  // key -> page: open addressing with linear probing in a table at least twice the pages, so a
  // step that caches pages allocates nothing; -1 marks an empty slot.
  std::vector<int32_t> slots_;
  uint64_t mask_ = 0;
  int64_t size_ = 0;
  std::vector<uint64_t> key_;
  std::vector<uint64_t> parent_;
  std::vector<int32_t> tokens_;  // [num_pages][page_size]
  std::vector<uint8_t> cached_;
  // Parked pages as a doubly linked list through page ids: head_ the least recently used.
  std::vector<int32_t> prev_;
  std::vector<int32_t> next_;
  std::vector<uint8_t> is_parked_;
  int32_t head_ = -1;
  int32_t tail_ = -1;
  int64_t parked_ = 0;
  int64_t evictions_ = 0;
};

}  // namespace slimrt
