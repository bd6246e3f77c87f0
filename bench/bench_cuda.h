// The CUDA side of slimrt-bench: device name, device buffers, a stream, and event timing. The
// header needs no CUDA headers, so benchmarks compile the same with or without CUDA; in a build
// without CUDA every function here throws slimrt::Error.
//
//   CudaStream stream;
//   CudaBuffer out(bytes);
//   std::vector<double> us = time_cuda([&](void* s) { launch(out.data(), s); }, stream, 20, 200);
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace slimrt_bench {

std::string cuda_device_name();  // the current device's name, e.g. "NVIDIA H100 80GB HBM3"

class CudaStream {
 public:
  CudaStream();
  ~CudaStream();
  CudaStream(const CudaStream&) = delete;
  CudaStream& operator=(const CudaStream&) = delete;

  void* handle() const { return stream_; }  // a cudaStream_t
  void synchronize() const;

 private:
  void* stream_ = nullptr;
};

class CudaBuffer {
 public:
  explicit CudaBuffer(size_t bytes);
  ~CudaBuffer();
  CudaBuffer(const CudaBuffer&) = delete;
  CudaBuffer& operator=(const CudaBuffer&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  void upload(const void* host);  // all bytes(), synchronously
  void download(void* host) const;

 private:
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// Device-to-device copy on `stream`, asynchronous.
void cuda_copy(void* dst, const void* src, size_t bytes, void* stream);
// Reads every byte of src (bytes a multiple of 16) and writes a word nobody reads to sink (64
// bytes), so that the loads are kept; fills dst with a constant. Asynchronous, on `stream`
// (bandwidth_cuda.cu).
void cuda_read(const void* src, size_t bytes, void* sink, void* stream);
void cuda_write(void* dst, size_t bytes, void* stream);

// Runs launch(stream) `warmup` times untimed, then `reps` times, each between two CUDA events
// of its own so that a sample is GPU time only, not launch overhead. Microseconds per rep.
std::vector<double> time_cuda(const std::function<void(void* stream)>& launch,
                              const CudaStream& stream, int warmup, int reps);

}  // namespace slimrt_bench
