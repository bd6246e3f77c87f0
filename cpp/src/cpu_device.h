// CpuDevice: the Device backend that runs on the host. Device memory is host memory, so copies
// are memcpy; the ops run slimrt::cpu kernels on the one ThreadPool it owns, with the DF11
// decoding tables it keeps.
//
//   CpuDevice device(/*num_threads=*/0);   // 0 = all hardware threads
//   cpu::rms_norm(x, w, rows, cols, eps, out, device.pool());
#pragma once

#include <map>

#include "device.h"
#include "slimrt/df11.h"
#include "thread_pool.h"

namespace slimrt {

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int num_threads);

  std::string name() const override { return "cpu"; }
  Backend backend() const override { return Backend::kCpu; }
  void* allocate(int64_t bytes) override;
  void deallocate(void* memory) override;
  int64_t available_memory() const override;
  void copy_to_device(void* dst, const void* host_src, int64_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, int64_t bytes) override;
  void prepare_df11(const Df11View& view) override;

  ThreadPool& pool() { return pool_; }
  // The decoding table of the DF11 tensor whose lengths array is `lengths` (built by
  // prepare_df11, or here on first use if a caller skipped that).
  const Df11Table& df11_table(const uint8_t* lengths);

 private:
  ThreadPool pool_;
  // Keyed by lengths pointer, as CUDA's; dropped by deallocate() of their block, since freed
  // memory may come
  // back holding another tensor.
  std::map<const uint8_t*, Df11Table> tables_;
  std::map<const uint8_t*, int64_t> allocations_;  // block -> bytes, to drop its tables
};

}  // namespace slimrt
