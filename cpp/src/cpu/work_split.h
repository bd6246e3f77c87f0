// Splitting a kernel's items over the pool: every thread when there is enough work, fewer (down
// to running inline) when a dispatch would cost more than it saves. A dispatch costs about a
// microsecond, the time of some 16K simple float operations.
//
//   parallel_over(pool, rows, 3 * cols, [&](int64_t r0, int64_t r1) { ... });
#pragma once

#include <algorithm>
#include <cstdint>

#include "thread_pool.h"

namespace slimrt::cpu {

constexpr int64_t kMinWorkPerPart = 1 << 14;

// Calls fn(begin, end) on contiguous ranges covering [0, items), each worth at least
// kMinWorkPerPart (work_per_item is in simple float operations), at most one per thread.
template <class Fn>
void parallel_over(ThreadPool& pool, int64_t items, int64_t work_per_item, Fn&& fn) {
  if (items <= 0) return;
  const int64_t by_work = std::max<int64_t>(1, items * work_per_item / kMinWorkPerPart);
  const int64_t parts = std::min({by_work, items, static_cast<int64_t>(pool.size())});
  if (parts == 1) {
    fn(int64_t{0}, items);
    return;
  }
  pool.run(parts, [&](int64_t p0, int64_t p1) { fn(items * p0 / parts, items * p1 / parts); });
}

}  // namespace slimrt::cpu
