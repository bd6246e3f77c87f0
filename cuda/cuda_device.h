// CudaDevice: the Device backend on one NVIDIA GPU: one CUDA stream on which every op is
// enqueued in call order, a second one for decoding ahead (ordered against the first by
// fork_ahead() and join_ahead() through events, the fork/join pattern that graph capture also
// records), one cuBLAS handle with its workspace, the recorded graphs of run_graph(), and one
// DF11 decoding table per tensor. The op kernels (cuda/<op>.cu) run on what it hands out here.
// Made through make_cuda_device() (cuda_backend.h), which plain C++ code can call; this header
// needs the CUDA headers.
//
//   CudaDevice& cuda = cuda_device(device);
//   kernel<<<grid, block, 0, cuda.stream()>>>(...);
//
// Memory owned outside the arenas:
// - the cuBLAS handle and its workspace, made at construction;
// - one decoding table per DF11 tensor (keyed by its `lengths` pointer, shared by df11_groups
//   sub-views), built by prepare_df11() at load (or on first use); deallocate() drops them all,
//   since a freed arena may hand the same address to another tensor;
// - the recorded graphs (at most kMaxGraphs, all dropped when that many exist).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>

#include "cublas_library.h"
#include "device.h"
#include "df11_cuda.h"
#include "slimrt/df11.h"

namespace slimrt {

class CudaDevice final : public Device {
 public:
  CudaDevice();  // throws slimrt::Error when no CUDA device is usable
  ~CudaDevice() override;
  CudaDevice(const CudaDevice&) = delete;
  CudaDevice& operator=(const CudaDevice&) = delete;

  std::string name() const override { return "cuda"; }
  Backend backend() const override { return Backend::kCuda; }
  void* allocate(int64_t bytes) override;
  void deallocate(void* memory) override;
  int64_t available_memory() const override;
  void copy_to_device(void* dst, const void* host_src, int64_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, int64_t bytes) override;
  void prepare_df11(const Df11View& view) override;
  bool overlaps_decode() const override { return true; }
  void fork_ahead() override;
  void join_ahead() override;
  // First call of a key: runs `body` (warming up whatever it builds on first use). Second:
  // records it as a CUDA graph and launches that. Later: launches the recording.
  void run_graph(const void* owner, uint64_t key, const std::function<void()>& body) override;
  void forget_graphs(const void* owner) override;
  double time_ms(const std::function<void()>& body) override;

  cudaStream_t stream() const { return stream_; }
  cudaStream_t ahead_stream() const { return ahead_; }  // ops::decode_df11_ahead's
  cublasHandle_t cublas() const { return cublas_; }
  // `view` (in this device's memory) with its decoding table, built and uploaded on first use.
  Df11DeviceView df11_view(const Df11View& view);

 private:
  struct DeviceTable {
    uint16_t* entries = nullptr;
    int bits = 0;
  };

  const DeviceTable& table_for(const uint8_t* lengths);
  void drop_graphs();
  void drop_tables();
  void release();

  cudaStream_t stream_ = nullptr;
  cudaStream_t ahead_ = nullptr;  // ops::decode_df11_ahead's stream
  cudaEvent_t fork_ = nullptr, join_ = nullptr;
  cublasHandle_t cublas_ = nullptr;
  void* cublas_workspace_ = nullptr;
  // null: seen once, not recorded yet.
  std::map<std::pair<const void*, uint64_t>, cudaGraphExec_t> graphs_;
  std::map<const uint8_t*, int64_t> allocations_;  // block -> bytes, to drop its tables
  std::map<const uint8_t*, DeviceTable> tables_;
};

}  // namespace slimrt
