#include "kv_pool.h"

#include <algorithm>
#include <limits>

#include "check.h"
#include "crc32.h"
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
  refs_.assign(shape.num_pages + shape.compressed_pages, 0);
  if (shape.prefix_caching) {
    const uint64_t settings[] = {shape.prefix_salt,
                                 static_cast<uint64_t>(shape.dtype),
                                 static_cast<uint64_t>(shape.layers),
                                 static_cast<uint64_t>(shape.kv_heads),
                                 static_cast<uint64_t>(shape.head_dim),
                                 static_cast<uint64_t>(shape.page_size),
                                 static_cast<uint64_t>(shape.compressed_pages > 0),
                                 static_cast<uint64_t>(shape.k_kept),
                                 static_cast<uint64_t>(shape.v_kept)};
    index_ = std::make_unique<PrefixIndex>(shape.num_pages + shape.compressed_pages,
                                           shape.page_size, hash_words(settings, 9));
  }
}

int64_t KvPool::free_pages() const {
  const bool cached = index_ != nullptr && shape_.compressed_pages == 0;
  return static_cast<int64_t>(free_.size()) + (cached ? index_->parked() : 0);
}

int64_t KvPool::free_compressed_pages() const {
  const bool cached = index_ != nullptr && shape_.compressed_pages > 0;
  return static_cast<int64_t>(free_compressed_.size()) + (cached ? index_->parked() : 0);
}

int32_t KvPool::take(std::vector<int32_t>& free_list) {
  if (free_list.empty()) return index_->evict();  // check_available counted a parked page
  const int32_t page = free_list.back();
  free_list.pop_back();
  return page;
}

int32_t KvPool::find_cached(uint64_t key, uint64_t parent, const int32_t* tokens) const {
  return index_ ? index_->find(key, parent, tokens) : -1;
}

bool KvPool::cache(int32_t page, uint64_t key, uint64_t parent, const int32_t* tokens) {
  SLIMRT_CHECK_AS(ErrorCategory::kInternal, caches(page) && refs_[page] > 0,
                  "KV pool: page " << page << " cached but not in use, or not of the cached kind");
  return index_->insert(page, key, parent, tokens);
}

void KvPool::retain(int32_t page) {
  SLIMRT_CHECK_AS(ErrorCategory::kInternal,
                  page >= 0 && page < shape_.num_pages + shape_.compressed_pages &&
                      (refs_[page] > 0 || (index_ && index_->contains(page))),
                  "KV pool: page " << page << " retained but neither in use nor cached");
  if (refs_[page]++ == 0) index_->unpark(page);
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
    pages[i] = take(free_);
    refs_[pages[i]] = 1;
  }
  peak_used_ = std::max(peak_used_, total_pages() - free_pages());
}

void KvPool::allocate_compressed(int64_t count, int32_t* pages) {
  check_available(0, count);
  for (int64_t i = 0; i < count; ++i) {
    pages[i] = take(free_compressed_);
    refs_[pages[i]] = 1;
  }
  peak_compressed_used_ =
      std::max(peak_compressed_used_, compressed_pages() - free_compressed_pages());
}

void KvPool::release(const int32_t* pages, int64_t count) {
  // Releasing a page that is not lent out is a bookkeeping bug; refuse before changing anything.
  for (int64_t i = 0; i < count; ++i) {
    SLIMRT_CHECK(
        pages[i] >= 0 && pages[i] < shape_.num_pages + shape_.compressed_pages && refs_[pages[i]],
        "KV pool: page " << pages[i] << " released but not in use");
  }
  for (int64_t i = 0; i < count; ++i) {
    const int32_t page = pages[i];
    SLIMRT_CHECK(refs_[page] > 0, "KV pool: page " << page << " released twice");
    if (--refs_[page] > 0) continue;
    if (index_ && index_->contains(page)) {
      index_->park(page);  // stays cached until a page is needed
    } else {
      (is_compressed(page) ? free_compressed_ : free_).push_back(page);
    }
  }
}

uint32_t KvPool::page_crc32(Device& device, int32_t page) const {
  SLIMRT_CHECK(page >= 0 && page < shape_.num_pages + shape_.compressed_pages,
               "KV pool: no page " << page);
  const int64_t element = shape_.dtype == KvDtype::kBf16 ? 2 : 4;
  const int64_t tokens = shape_.page_size * shape_.kv_heads;
  std::vector<uint8_t> host;
  uint32_t crc = 0;
  auto add = [&](const void* base, int64_t offset, int64_t bytes) {
    host.resize(bytes);
    device.copy_to_host(host.data(), static_cast<const uint8_t*>(base) + offset, bytes);
    crc = crc32_update(crc, host.data(), host.size());
  };
  for (const PagedKv& layer : layers_) {
    if (is_compressed(page)) {
      const int64_t k = kv_record_bytes(shape_.head_dim, shape_.k_kept) * tokens;
      const int64_t v = kv_record_bytes(shape_.head_dim, shape_.v_kept) * tokens;
      add(layer.k_records, (page - shape_.num_pages) * k, k);
      add(layer.v_records, (page - shape_.num_pages) * v, v);
    } else {
      const int64_t bytes = tokens * shape_.head_dim * element;
      add(layer.k_pages, page * bytes, bytes);
      add(layer.v_pages, page * bytes, bytes);
    }
  }
  return crc;
}

}  // namespace slimrt
