// Device memory for a benchmark's lifetime, and timing on the device's own clock (CUDA events
// on a GPU, the host clock on the CPU): the benchmarks that run through slimrt::Device share
// them.
//
//   DeviceMemory memory{*device, {}};
//   const float* x = memory.copy(host_vector);
//   std::vector<double> us = time_us(*device, [&] { ops::...(*device, x, ...); }, 5, 50);
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "device.h"

namespace slimrt_bench {

// Buffers of `device`, freed with it.
struct DeviceMemory {
  slimrt::Device& device;
  std::vector<void*> blocks;
  ~DeviceMemory() {
    for (void* b : blocks) device.deallocate(b);
  }
  void* allocate(int64_t bytes) {
    blocks.push_back(device.allocate(std::max<int64_t>(bytes, 64)));
    return blocks.back();
  }
  template <class T>
  T* copy(const std::vector<T>& host) {
    auto* at = static_cast<T*>(allocate(static_cast<int64_t>(host.size() * sizeof(T))));
    device.copy_to_device(at, host.data(), static_cast<int64_t>(host.size() * sizeof(T)));
    return at;
  }
};

// Microseconds of each of `reps` runs of body after `warmup` untimed ones.
inline std::vector<double> time_us(slimrt::Device& device, const std::function<void()>& body,
                                   int64_t warmup, int64_t reps) {
  for (int64_t i = 0; i < warmup; ++i) body();
  std::vector<double> us;
  for (int64_t i = 0; i < reps; ++i) us.push_back(device.time_ms(body) * 1000.0);
  return us;
}

}  // namespace slimrt_bench
