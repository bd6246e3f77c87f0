#include "kv_pool.h"

#include <limits>

#include "check.h"

namespace slimrt {

int64_t KvPool::bytes_needed(const Shape& shape) {
  KvPool measure_only(shape);
  return measure_only.arena_.used();
}

KvPool::KvPool(const Shape& shape) : shape_(shape), arena_("KV pool") { lay_out(arena_); }

KvPool::KvPool(Device& device, const Shape& shape) : shape_(shape), arena_("KV pool") {
  SLIMRT_CHECK(shape.layers > 0 && shape.kv_heads > 0 && shape.head_dim > 0 &&
                   shape.page_size > 0 && shape.num_pages > 0,
               "KV pool: every dimension must be positive");
  // Slots (page * page_size + offset) travel as int32 to the kernels.
  SLIMRT_CHECK(shape.num_pages * shape.page_size <= std::numeric_limits<int32_t>::max(),
               "KV pool: " << shape.num_pages * shape.page_size
                           << " tokens exceed the 2^31 - 1 slots the kernels address");
  lay_out(arena_);
  arena_.reserve(&device, arena_.used());
  lay_out(arena_);
  free_.reserve(shape.num_pages);
  for (int64_t p = shape.num_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
  in_use_.assign(shape.num_pages, 0);
}

void KvPool::lay_out(Arena& arena) {
  const int64_t element = shape_.dtype == KvDtype::kBf16 ? 2 : 4;
  const int64_t layer_bytes =
      shape_.num_pages * shape_.page_size * shape_.kv_heads * shape_.head_dim * element;
  layers_.assign(shape_.layers, PagedKv{});
  for (PagedKv& layer : layers_) {
    layer.k_pages = arena.allocate_bytes(layer_bytes);
    layer.v_pages = arena.allocate_bytes(layer_bytes);
    layer.dtype = shape_.dtype;
    layer.page_size = shape_.page_size;
    layer.kv_heads = shape_.kv_heads;
    layer.head_dim = shape_.head_dim;
  }
}

void KvPool::check_available(int64_t count) const {
  SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, count <= free_pages(),
                  "KV cache out of pages: this step needs "
                      << count << " more pages, " << free_pages() << " are free (kv_tokens="
                      << capacity_tokens() << ", page_size=" << shape_.page_size << ")");
}

void KvPool::allocate(int64_t count, int32_t* pages) {
  check_available(count);
  for (int64_t i = 0; i < count; ++i) {
    pages[i] = free_.back();
    free_.pop_back();
    in_use_[pages[i]] = 1;
  }
}

void KvPool::release(const int32_t* pages, int64_t count) {
  // Releasing a page that is not lent out is a bookkeeping bug; refuse before changing anything.
  for (int64_t i = 0; i < count; ++i) {
    SLIMRT_CHECK(pages[i] >= 0 && pages[i] < shape_.num_pages && in_use_[pages[i]],
                 "KV pool: page " << pages[i] << " released but not in use");
  }
  for (int64_t i = 0; i < count; ++i) {
    SLIMRT_CHECK(in_use_[pages[i]], "KV pool: page " << pages[i] << " released twice");
    in_use_[pages[i]] = 0;
    free_.push_back(pages[i]);
  }
}

}  // namespace slimrt
