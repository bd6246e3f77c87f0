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
#pragma once

#include <cstdint>
#include <vector>

#include "arena.h"
#include "device.h"

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
  };

  // Bytes of one dense page, and of one compressed page, over all layers.
  static int64_t dense_page_bytes(const Shape& shape);
  static int64_t compressed_page_bytes(const Shape& shape);

  static int64_t bytes_needed(const Shape& shape);

  KvPool(Device& device, const Shape& shape);

  int64_t free_pages() const { return static_cast<int64_t>(free_.size()); }
  int64_t total_pages() const { return shape_.num_pages; }
  int64_t page_size() const { return shape_.page_size; }
  int64_t capacity_tokens() const { return shape_.num_pages * shape_.page_size; }
  int64_t bytes() const { return arena_.capacity(); }
  int64_t compressed_pages() const { return shape_.compressed_pages; }
  int64_t free_compressed_pages() const { return static_cast<int64_t>(free_compressed_.size()); }
  bool is_compressed(int32_t page) const { return page >= shape_.num_pages; }
  // The most pages of each kind lent out at once so far (high-water marks, for reports).
  int64_t peak_pages_used() const { return peak_used_; }
  int64_t peak_compressed_pages_used() const { return peak_compressed_used_; }
  const Shape& shape() const { return shape_; }

  // Throws the out-of-pages error of docs/ENGINE_API.md unless `count` dense pages (and
  // `compressed` compressed pages) are free.
  void check_available(int64_t count, int64_t compressed = 0) const;
  // Takes `count` dense pages (lowest ids first on a fresh pool, most recently freed first
  // after). Throws, changing nothing, when fewer are free.
  void allocate(int64_t count, int32_t* pages);
  // The same for compressed pages.
  void allocate_compressed(int64_t count, int32_t* pages);
  // Takes pages of either kind back.
  void release(const int32_t* pages, int64_t count);

  PagedKv layer(int64_t index) const { return layers_[index]; }

 private:
  explicit KvPool(const Shape& shape);  // measures the arena, reserves nothing
  void lay_out(Arena& arena);

  Shape shape_;
  Arena arena_;
  std::vector<PagedKv> layers_;
  std::vector<int32_t> free_;  // a stack: recently freed pages are reused first (warm caches)
  std::vector<int32_t> free_compressed_;
  int64_t peak_used_ = 0;
  int64_t peak_compressed_used_ = 0;
  std::vector<uint8_t> in_use_;  // catches double frees, which would hand a page out twice
};

}  // namespace slimrt
