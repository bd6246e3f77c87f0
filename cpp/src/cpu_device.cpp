#include "cpu_device.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "arena.h"
#include "check.h"

namespace slimrt {

CpuDevice::CpuDevice(int num_threads) : pool_(num_threads) {}

namespace {

// Arenas of at least this size are placed on 2 MiB boundaries and offered to the kernel as huge
// pages: a decode step streams every weight once, and with 4 KiB pages a 270 MB model touches
// 66,000 pages per token (TLB misses); where transparent huge pages are "madvise" (the common
// default) nothing else asks for them.
constexpr int64_t kHugePage = int64_t{2} << 20;

}  // namespace

void* CpuDevice::allocate(int64_t bytes) {
  const int64_t align = bytes >= kHugePage ? kHugePage : Arena::kAlignment;
  const int64_t rounded = (bytes + align - 1) / align * align;
  void* memory = std::aligned_alloc(static_cast<size_t>(align), static_cast<size_t>(rounded));
  SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, memory != nullptr,
                  "could not allocate " << bytes << " bytes of host memory");
#ifdef MADV_HUGEPAGE
  // Advice only: a kernel without THP ignores it, and the memory works either way.
  if (align == kHugePage) madvise(memory, static_cast<size_t>(rounded), MADV_HUGEPAGE);
#endif
  allocations_[static_cast<const uint8_t*>(memory)] = rounded;
  return memory;
}

void CpuDevice::deallocate(void* memory) {
  if (memory == nullptr) return;
  const auto* begin = static_cast<const uint8_t*>(memory);
  const auto block = allocations_.find(begin);
  if (block != allocations_.end()) {
    tables_.erase(tables_.lower_bound(begin), tables_.lower_bound(begin + block->second));
    allocations_.erase(block);
  }
  std::free(memory);
}

const Df11Table& CpuDevice::df11_table(const uint8_t* lengths) {
  auto found = tables_.find(lengths);
  if (found == tables_.end()) found = tables_.emplace(lengths, df11_build_table(lengths)).first;
  return found->second;
}

void CpuDevice::prepare_df11(const Df11View& view) { df11_table(view.lengths); }

int64_t CpuDevice::available_memory() const { return available_host_memory(); }

void CpuDevice::copy_to_device(void* dst, const void* host_src, int64_t bytes) {
  // Loading copies gigabytes of weights: spread large copies over the pool.
  constexpr int64_t kChunk = int64_t{16} << 20;
  if (bytes <= 4 * kChunk) {
    if (bytes > 0) std::memcpy(dst, host_src, static_cast<size_t>(bytes));
    return;
  }
  pool_.run((bytes + kChunk - 1) / kChunk, [&](int64_t begin, int64_t end) {
    const int64_t from = begin * kChunk, to = std::min(bytes, end * kChunk);
    std::memcpy(static_cast<char*>(dst) + from, static_cast<const char*>(host_src) + from,
                static_cast<size_t>(to - from));
  });
}

void CpuDevice::copy_to_host(void* host_dst, const void* src, int64_t bytes) {
  if (bytes > 0) std::memcpy(host_dst, src, static_cast<size_t>(bytes));
}

}  // namespace slimrt
