#include "arena.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "check.h"
#include "device.h"

namespace slimrt {

Arena::Arena(std::string purpose) : purpose_(std::move(purpose)) {}

Arena::~Arena() {
  if (base_ == nullptr) return;
  if (device_ != nullptr) {
    device_->deallocate(base_);
  } else {
    std::free(base_);
  }
}

void Arena::reserve(Device* device, int64_t bytes) {
  SLIMRT_CHECK(!reserved_, "arena " << purpose_ << " is already reserved");
  SLIMRT_CHECK(bytes >= 0, "arena " << purpose_ << ": negative size " << bytes);
  const int64_t rounded = align_up(bytes);
  if (rounded > 0) {
    if (device != nullptr) {
      base_ = static_cast<char*>(device->allocate(rounded));
    } else {
      base_ = static_cast<char*>(std::aligned_alloc(kAlignment, static_cast<size_t>(rounded)));
      SLIMRT_CHECK(base_ != nullptr,
                   "could not allocate " << rounded << " bytes for the " << purpose_ << " arena");
    }
  }
  device_ = device;
  reserved_ = true;
  capacity_ = rounded;
  offset_ = 0;
  high_water_ = 0;
}

void* Arena::allocate_bytes(int64_t bytes) {
  SLIMRT_CHECK(bytes >= 0, "arena " << purpose_ << ": negative allocation " << bytes);
  const int64_t start = offset_;
  const int64_t end = start + align_up(bytes);
  SLIMRT_CHECK(!reserved_ || end <= capacity_, "arena " << purpose_ << " overflow: layout needs "
                                                        << end << " bytes, " << capacity_
                                                        << " were reserved");
  offset_ = end;
  if (end > high_water_) high_water_ = end;
  return base_ == nullptr || bytes == 0 ? nullptr : base_ + start;
}

void Arena::rewind(int64_t offset) {
  SLIMRT_CHECK(offset >= 0 && offset <= high_water_, "arena " << purpose_ << ": rewind to "
                                                              << offset << " outside [0, "
                                                              << high_water_ << "]");
  offset_ = offset;
}

std::string format_gib(int64_t bytes) {
  // snprintf, not a stream: inserting a double into an ostringstream crashed inside a Python
  // process that had loaded torch (H100 machine, 2026-11-23), so budget errors never surfaced.
  const double value = static_cast<double>(bytes) / double(int64_t{1} << 30);
  char text[64];
  std::snprintf(text, sizeof text, value >= 0.01 || bytes == 0 ? "%.2f" : "%.3g", value);
  return text;
}

void check_memory_budget(const MemoryPlan& plan, int64_t available) {
  if (plan.total() <= available) return;
  // The weights always; the engine's arenas once there is an engine to plan.
  std::string terms = "weights " + format_gib(plan.weights) + " GiB";
  if (plan.df11_scratch + plan.kv_pool + plan.activations > 0) {
    terms += " + DF11 scratch " + format_gib(plan.df11_scratch) + " GiB + KV pool of " +
             std::to_string(plan.kv_tokens) + " tokens " + format_gib(plan.kv_pool) +
             " GiB + activations " + format_gib(plan.activations) +
             " GiB = " + format_gib(plan.total()) + " GiB";
  }
  SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, false,
                  "not enough memory: " << terms << ", but only " << format_gib(available)
                                        << " GiB is available");
}

int64_t available_host_memory() {
  std::ifstream meminfo("/proc/meminfo");
  std::string line;
  while (std::getline(meminfo, line)) {
    long long kib = 0;
    if (std::sscanf(line.c_str(), "MemAvailable: %lld kB", &kib) == 1) return kib * 1024;
  }
  const long pages = sysconf(_SC_AVPHYS_PAGES);
  const long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? int64_t{pages} * page : 0;
}

}  // namespace slimrt
