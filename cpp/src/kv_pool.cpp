#include "kv_pool.h"

#include <algorithm>
#include <limits>

#include "check.h"
#include "kv_record.h"

namespace slimrt {

int64_t KvPool::bytes_needed(const Shape& shape) {
  KvPool measure_only(shape);
  return measure_only.arena_.used();
}

KvPool::KvPool(const Shape& shape) : shape_(shape), arena_("KV pool") { lay_out(arena_); }

int64_t KvPool::dense_page_bytes(const Shape& shape) {
  const int64_t element = shape.dtype == KvDtype::kBf16 ? 2 : 4;
  return shape.layers * 2 * shape.page_size * shape.kv_heads * shape.head_dim * element;
}

int64_t KvPool::compressed_page_bytes(const Shape& shape) {
  return shape.layers * shape.page_size * shape.kv_heads *
         (kv_record_bytes(shape.head_dim, shape.k_kept) +
          kv_record_bytes(shape.head_dim, shape.v_kept));
}

KvPool::KvPool(Device& device, const Shape& shape) : shape_(shape), arena_("KV pool") {
  SLIMRT_CHECK(shape.layers > 0 && shape.kv_heads > 0 && shape.head_dim > 0 &&
                   shape.page_size > 0 && shape.num_pages > 0,
               "KV pool: every dimension must be positive");
  // Slots (page * page_size + offset) travel as int32 to the kernels.
  SLIMRT_CHECK(shape.num_pages * shape.page_size <= std::numeric_limits<int32_t>::max(),
               "KV pool: " << shape.num_pages * shape.page_size
                           << " tokens exceed the 2^31 - 1 slots the kernels address");
  SLIMRT_CHECK(shape.compressed_pages >= 0 &&
                   shape.num_pages + shape.compressed_pages <= std::numeric_limits<int32_t>::max(),
               "KV pool: " << shape.compressed_pages << " compressed pages");
  SLIMRT_CHECK(shape.compressed_pages == 0 || (shape.dtype == KvDtype::kBf16 && shape.k_kept >= 0 &&
                                               shape.k_kept <= shape.head_dim &&
                                               shape.v_kept >= 0 && shape.v_kept <= shape.head_dim),
               "KV pool: compressed pages need a bf16 cache and kept counts in [0, head_dim]");
  lay_out(arena_);
  arena_.reserve(&device, arena_.used());
  lay_out(arena_);
  free_.reserve(shape.num_pages);
  for (int64_t p = shape.num_pages - 1; p >= 0; --p) free_.push_back(static_cast<int32_t>(p));
  free_compressed_.reserve(shape.compressed_pages);
  for (int64_t p = shape.num_pages + shape.compressed_pages - 1; p >= shape.num_pages; --p) {
    free_compressed_.push_back(static_cast<int32_t>(p));
  }
  in_use_.assign(shape.num_pages + shape.compressed_pages, 0);
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
    if (shape_.compressed_pages > 0) {
      const int64_t records = shape_.compressed_pages * shape_.page_size * shape_.kv_heads;
      layer.k_records = arena.allocate_bytes(
          records * kv_record_bytes(shape_.head_dim, shape_.k_kept) + kKvRecordTailPad);
      layer.v_records = arena.allocate_bytes(
          records * kv_record_bytes(shape_.head_dim, shape_.v_kept) + kKvRecordTailPad);
      layer.dense_pages = shape_.num_pages;
      layer.k_kept = shape_.k_kept;
      layer.v_kept = shape_.v_kept;
    }
  }
}

void KvPool::check_available(int64_t count, int64_t compressed) const {
  if (shape_.compressed_pages == 0) {
    SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, count <= free_pages(),
                    "KV cache out of pages: this step needs "
                        << count << " more pages, " << free_pages() << " are free (kv_tokens="
                        << capacity_tokens() << ", page_size=" << shape_.page_size << ")");
    return;
  }
  SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, compressed <= free_compressed_pages(),
                  "KV cache out of pages: this step needs "
                      << compressed << " more compressed pages, " << free_compressed_pages()
                      << " are free (" << shape_.compressed_pages << " compressed pages of "
                      << shape_.page_size << " tokens)");
  // The dense pages hold the recent windows of at most max_batch sequences (engine.cpp sizes
  // them so): only more sequences than that run out of them.
  SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, count <= free_pages(),
                  "KV cache out of dense pages: this step needs "
                      << count << " more, " << free_pages() << " are free (" << shape_.num_pages
                      << " dense pages hold the recent windows of max_batch sequences)");
}

void KvPool::allocate(int64_t count, int32_t* pages) {
  check_available(count);
  for (int64_t i = 0; i < count; ++i) {
    pages[i] = free_.back();
    free_.pop_back();
    in_use_[pages[i]] = 1;
  }
  peak_used_ = std::max(peak_used_, total_pages() - free_pages());
}

void KvPool::allocate_compressed(int64_t count, int32_t* pages) {
  check_available(0, count);
  for (int64_t i = 0; i < count; ++i) {
    pages[i] = free_compressed_.back();
    free_compressed_.pop_back();
    in_use_[pages[i]] = 1;
  }
  peak_compressed_used_ =
      std::max(peak_compressed_used_, compressed_pages() - free_compressed_pages());
}

void KvPool::release(const int32_t* pages, int64_t count) {
  // Releasing a page that is not lent out is a bookkeeping bug; refuse before changing anything.
  for (int64_t i = 0; i < count; ++i) {
    SLIMRT_CHECK(
        pages[i] >= 0 && pages[i] < shape_.num_pages + shape_.compressed_pages && in_use_[pages[i]],
        "KV pool: page " << pages[i] << " released but not in use");
  }
  for (int64_t i = 0; i < count; ++i) {
    SLIMRT_CHECK(in_use_[pages[i]], "KV pool: page " << pages[i] << " released twice");
    in_use_[pages[i]] = 0;
    (is_compressed(pages[i]) ? free_compressed_ : free_).push_back(pages[i]);
  }
}

}  // namespace slimrt
