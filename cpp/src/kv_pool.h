// KvPool: the KV cache of every layer as fixed-size pages, and the free list that lends them to
// sequences. A page id names the same place in every layer: layer l keeps the K of page p at
// layer(l).k_pages + p * page_size * kv_heads * head_dim elements (V likewise), so a sequence's
// block table serves all layers at once.
//
//   KvPool pool(device, shape);          // reserves the KV arena once
//   int32_t pages[3];
//   pool.allocate(3, pages);             // all three, or none and an error
//   pool.release(pages, 3);
//
// Memory: one arena, layer-major: [layer][K, V][page][page_size][kv_heads][head_dim]. Each
// layer's K (and V) pages are contiguous so kernels index them with one base pointer.
//
// With compressed_pages > 0 the pool also lends compressed pages (docs/FORMAT.md, "Sparse KV
// pages"), ids num_pages .. num_pages + compressed_pages - 1, from their own free list: each
// layer's K and V records follow its dense pages in the same arena. Both kinds are one ledger:
// release() takes either, and every count below is per kind.
//
// Pages are reference-counted. With prefix caching (Shape::prefix_caching) a full page that a
// sequence has written can be cached (cache()): another sequence whose tokens start the same
// takes a reference to it (find_cached(), retain()) instead of computing it again. A cached page
// that no sequence references stays cached; it counts as free, and allocate() takes the least
// recently used of them only when no page is free otherwise. Only one kind is cached: the
// compressed pages when the pool has them (the dense ones are then recent windows, rewritten as
// they compress), else the dense pages.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "arena.h"
#include "device.h"
#include "prefix_index.h"

namespace slimrt {

class KvPool {
 public:
  struct Shape {
    int64_t layers = 0;
    int64_t kv_heads = 0;
    int64_t head_dim = 0;
    int64_t page_size = 16;
    int64_t num_pages = 0;  // dense pages
    KvDtype dtype = KvDtype::kBf16;
    int64_t compressed_pages = 0;
    int64_t k_kept = 0;  // values per K record (kv_kept_count), and per V record
    int64_t v_kept = 0;
    bool prefix_caching = false;
    // A hash of what else changes a page's bytes: the model, and the engine's settings that
    // the shape does not hold (PrefixIndex mixes the shape's in).
    uint64_t prefix_salt = 0;
  };

  // Bytes of one dense page, and of one compressed page, over all layers.
  static int64_t dense_page_bytes(const Shape& shape);
  static int64_t compressed_page_bytes(const Shape& shape);

  static int64_t bytes_needed(const Shape& shape);

  KvPool(Device& device, const Shape& shape);

  // Pages allocate() can take: never lent, or cached by no sequence (evicted on demand).
  int64_t free_pages() const;
  int64_t total_pages() const { return shape_.num_pages; }
  int64_t page_size() const { return shape_.page_size; }
  int64_t capacity_tokens() const { return shape_.num_pages * shape_.page_size; }
  int64_t bytes() const { return arena_.capacity(); }
  int64_t compressed_pages() const { return shape_.compressed_pages; }
  int64_t free_compressed_pages() const;
  bool is_compressed(int32_t page) const { return page >= shape_.num_pages; }
  // The most pages of each kind lent out at once so far (high-water marks, for reports).
  int64_t peak_pages_used() const { return peak_used_; }
  int64_t peak_compressed_pages_used() const { return peak_compressed_used_; }
  const Shape& shape() const { return shape_; }
  int32_t references(int32_t page) const { return refs_[page]; }

  // Prefix caching; the prefix cache, or null without prefix caching.
  const PrefixIndex* prefix_index() const { return index_.get(); }
  // Whether pages of this kind can be cached (only one kind is: see above).
  bool caches(int32_t page) const {
    return index_ != nullptr && is_compressed(page) == (shape_.compressed_pages > 0);
  }
  // Pages cached and referenced by no sequence: free, but holding a prefix until evicted.
  int64_t cached_free_pages() const { return index_ ? index_->parked() : 0; }
  // The cached page holding `tokens` (page_size of them) after the page keyed `parent`, or -1.
  int32_t find_cached(uint64_t key, uint64_t parent, const int32_t* tokens) const;
  // Caches a page a sequence references and will never write again (caches(page) must hold);
  // false when an equal page is cached already.
  bool cache(int32_t page, uint64_t key, uint64_t parent, const int32_t* tokens);
  // One more reference to a page in use, or to a cached free page (no longer evictable then).
  void retain(int32_t page);

  // Throws the out-of-pages error of docs/ENGINE_API.md unless `count` dense pages (and
  // `compressed` compressed pages) are free.
  void check_available(int64_t count, int64_t compressed = 0) const;
  // Takes `count` dense pages (lowest ids first on a fresh pool, most recently freed first
  // after). Throws, changing nothing, when fewer are free.
  void allocate(int64_t count, int32_t* pages);
  // The same for compressed pages.
  void allocate_compressed(int64_t count, int32_t* pages);
  // Drops one reference to each page (of either kind); a page referenced by nobody is free.
  void release(const int32_t* pages, int64_t count);

  PagedKv layer(int64_t index) const { return layers_[index]; }
  // The CRC-32 of a page's bytes (dense or compressed) in every layer, K then V (for tests).
  uint32_t page_crc32(Device& device, int32_t page) const;

 private:
  explicit KvPool(const Shape& shape);  // measures the arena, reserves nothing
  void lay_out(Arena& arena);
  int32_t take(std::vector<int32_t>& free_list);  // a free page, evicting a cached one if need be

  Shape shape_;
  Arena arena_;
  std::vector<PagedKv> layers_;
  std::vector<int32_t> free_;  // a stack: recently freed pages are reused first (warm caches)
  std::vector<int32_t> free_compressed_;
  int64_t peak_used_ = 0;
  int64_t peak_compressed_used_ = 0;
  // References per page; catches double frees, which would hand a page out twice.
  std::vector<int32_t> refs_;
  std::unique_ptr<PrefixIndex> index_;
};

}  // namespace slimrt
