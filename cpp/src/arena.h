// Arena: one block of memory per purpose (weights, DF11 scratch, KV pool, activations),
// reserved at load and carved by bump allocation; nothing in it is freed until the engine goes.
//
// The same layout code runs twice: once on a measuring arena, which only counts bytes, and
// once on the reserved one. The measured size is therefore exactly what the layout takes.
//
//   Arena arena("activations");                 // measuring
//   lay_out(arena);                             // sizes only; pointers are null
//   check_memory_budget(...arena.used()...);
//   arena.reserve(&device, arena.used());       // one allocation, cursor back to 0
//   lay_out(arena);                             // the same calls now return memory
//
// A region can be reused by later phases of a step: rewind() to an earlier offset and
// allocate again; used() is the high-water mark.
#pragma once

#include <cstdint>
#include <string>

namespace slimrt {

class Device;

class Arena {
 public:
  static constexpr int64_t kAlignment = 64;

  explicit Arena(std::string purpose);  // measuring
  ~Arena();
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  // Allocates `bytes` from `device` (nullptr: host memory) and rewinds to offset 0.
  void reserve(Device* device, int64_t bytes);

  // `bytes` rounded up to kAlignment; nullptr while measuring. Throws past the reservation,
  // which means a layout that differs from the one measured (a bug, not a user error).
  void* allocate_bytes(int64_t bytes);
  template <class T>
  T* allocate(int64_t count) {
    return static_cast<T*>(allocate_bytes(count * static_cast<int64_t>(sizeof(T))));
  }

  int64_t offset() const { return offset_; }
  void rewind(int64_t offset);
  int64_t used() const { return high_water_; }
  int64_t capacity() const { return capacity_; }
  bool measuring() const { return base_ == nullptr && !reserved_; }
  const std::string& purpose() const { return purpose_; }

 private:
  std::string purpose_;
  Device* device_ = nullptr;
  char* base_ = nullptr;
  bool reserved_ = false;
  int64_t capacity_ = 0;
  int64_t offset_ = 0;
  int64_t high_water_ = 0;
};

inline int64_t align_up(int64_t bytes) {
  return (bytes + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
}

// What an engine will reserve, per arena.
struct MemoryPlan {
  int64_t weights = 0;
  int64_t df11_scratch = 0;
  int64_t kv_pool = 0;
  int64_t kv_tokens = 0;
  int64_t activations = 0;
  int64_t total() const { return weights + df11_scratch + kv_pool + activations; }
};

// Bytes as GiB the way budget messages print them: two decimals, three significant digits
// below 0.01 GiB so tiny test budgets still show a meaningful figure.
std::string format_gib(int64_t bytes);

// Throws "not enough memory: weights X GiB + ... = X GiB, but only X GiB is available"
// (kOutOfMemory) when the plan does not fit in `available` bytes; a plan of weights alone (a
// model being loaded) names only them.
void check_memory_budget(const MemoryPlan& plan, int64_t available);

// MemAvailable of /proc/meminfo (free + reclaimable), or free physical pages where that file
// does not exist.
int64_t available_host_memory();

}  // namespace slimrt
