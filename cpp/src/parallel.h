// parallel_for: split [0, n) into contiguous ranges, one per worker thread.
//
//   slimrt::parallel_for(rows, 0, [&](int64_t begin, int64_t end) { /* rows [begin, end) */ });
#pragma once

#include <cstdint>
#include <functional>

namespace slimrt {

// Threads to use for `requested` (0 = all hardware threads), never more than `work_items`.
int resolve_threads(int requested, int64_t work_items);

// Calls body(begin, end) on up to `num_threads` threads; the first exception thrown by any
// worker is rethrown in the caller after all workers have finished.
void parallel_for(int64_t n, int num_threads,
                  const std::function<void(int64_t begin, int64_t end)>& body);

}  // namespace slimrt
