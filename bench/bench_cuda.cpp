#include "bench_cuda.h"

#include "check.h"

#ifdef SLIMRT_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace slimrt_bench {

#ifdef SLIMRT_WITH_CUDA

namespace {

#define BENCH_CUDA_CHECK(call)                                            \
  do {                                                                    \
    const cudaError_t bench_cuda_error_ = (call);                         \
    SLIMRT_CHECK(bench_cuda_error_ == cudaSuccess,                        \
                 #call << ": " << cudaGetErrorString(bench_cuda_error_)); \
  } while (0)

cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

// Events are destroyed even when a launch throws halfway through the timed loop.
class EventPool {
 public:
  ~EventPool() {
    for (cudaEvent_t e : events_) cudaEventDestroy(e);
  }
  cudaEvent_t make() {
    cudaEvent_t e = nullptr;
    BENCH_CUDA_CHECK(cudaEventCreate(&e));
    events_.push_back(e);
    return e;
  }

 private:
  std::vector<cudaEvent_t> events_;
};

}  // namespace

std::string cuda_device_name() {
  int device = 0;
  BENCH_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp properties{};
  BENCH_CUDA_CHECK(cudaGetDeviceProperties(&properties, device));
  return properties.name;
}

CudaStream::CudaStream() {
  cudaStream_t s = nullptr;
  // Non-blocking: work other code queues on the legacy default stream cannot serialize with ours.
  BENCH_CUDA_CHECK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  stream_ = s;
}

CudaStream::~CudaStream() { cudaStreamDestroy(as_stream(stream_)); }

void CudaStream::synchronize() const {
  BENCH_CUDA_CHECK(cudaStreamSynchronize(as_stream(stream_)));
}

CudaBuffer::CudaBuffer(size_t bytes) : bytes_(bytes) {
  BENCH_CUDA_CHECK(cudaMalloc(&data_, bytes == 0 ? 1 : bytes));
}

CudaBuffer::~CudaBuffer() { cudaFree(data_); }

void CudaBuffer::upload(const void* host) {
  BENCH_CUDA_CHECK(cudaMemcpy(data_, host, bytes_, cudaMemcpyHostToDevice));
}

void CudaBuffer::download(void* host) const {
  BENCH_CUDA_CHECK(cudaMemcpy(host, data_, bytes_, cudaMemcpyDeviceToHost));
}

void cuda_copy(void* dst, const void* src, size_t bytes, void* stream) {
  BENCH_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, as_stream(stream)));
}

std::vector<double> time_cuda(const std::function<void(void* stream)>& launch,
                              const CudaStream& stream, int warmup, int reps) {
  cudaStream_t s = as_stream(stream.handle());
  for (int i = 0; i < warmup; ++i) launch(s);
  BENCH_CUDA_CHECK(cudaGetLastError());
  EventPool pool;
  std::vector<cudaEvent_t> start(reps), stop(reps);
  for (int i = 0; i < reps; ++i) {
    start[i] = pool.make();
    stop[i] = pool.make();
  }
  for (int i = 0; i < reps; ++i) {
    BENCH_CUDA_CHECK(cudaEventRecord(start[i], s));
    launch(s);
    BENCH_CUDA_CHECK(cudaEventRecord(stop[i], s));
  }
  BENCH_CUDA_CHECK(cudaGetLastError());
  BENCH_CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> us(reps);
  for (int i = 0; i < reps; ++i) {
    float ms = 0;
    BENCH_CUDA_CHECK(cudaEventElapsedTime(&ms, start[i], stop[i]));
    us[i] = 1000.0 * ms;
  }
  return us;
}

#else  // !SLIMRT_WITH_CUDA

namespace {
[[noreturn]] void no_cuda(const char* what) {
  slimrt::throw_error(slimrt::ErrorCategory::kUnsupported, what, __FILE__, __LINE__,
                      "slimrt-bench was built without CUDA");
}
}  // namespace

std::string cuda_device_name() { no_cuda("cuda_device_name"); }
CudaStream::CudaStream() { no_cuda("CudaStream"); }
CudaStream::~CudaStream() = default;
void CudaStream::synchronize() const { no_cuda("CudaStream::synchronize"); }
CudaBuffer::CudaBuffer(size_t) { no_cuda("CudaBuffer"); }
CudaBuffer::~CudaBuffer() = default;
void CudaBuffer::upload(const void*) { no_cuda("CudaBuffer::upload"); }
void CudaBuffer::download(void*) const { no_cuda("CudaBuffer::download"); }
void cuda_copy(void*, const void*, size_t, void*) { no_cuda("cuda_copy"); }
void cuda_read(const void*, size_t, void*, void*) { no_cuda("cuda_read"); }
void cuda_write(void*, size_t, void*) { no_cuda("cuda_write"); }
std::vector<double> time_cuda(const std::function<void(void*)>&, const CudaStream&, int, int) {
  no_cuda("time_cuda");
}

#endif  // SLIMRT_WITH_CUDA

}  // namespace slimrt_bench
