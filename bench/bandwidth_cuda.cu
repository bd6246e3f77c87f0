// The read and write kernels of slimrt-bench bandwidth (bench_cuda.h): grid-stride loops of
// 16-byte accesses over every SM, the widest a thread issues.
#include <cuda_runtime.h>

#include <cstdint>

#include "bench_cuda.h"
#include "check.h"

namespace slimrt_bench {
namespace {

__global__ void read_kernel(const uint4* __restrict__ src, size_t n, uint32_t* sink) {
  uint32_t x = 0;
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    const uint4 v = src[i];
    x ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  // True only if the XOR of a thread's words happens to be this constant: the compiler cannot
  // rule it out, so it keeps every load.
  if (x == 0x9E3779B9u) *sink = x;
}

__global__ void write_kernel(uint4* __restrict__ dst, size_t n) {
  const uint4 v = make_uint4(1, 2, 3, 4);
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    dst[i] = v;
  }
}

// Enough blocks to fill every SM several times over.
int grid_blocks() {
  int device = 0, sms = 0;
  SLIMRT_CHECK(cudaGetDevice(&device) == cudaSuccess, "cudaGetDevice failed");
  SLIMRT_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess,
               "cudaDeviceGetAttribute failed");
  return sms * 8;
}

constexpr int kThreads = 256;

void check_launch(const char* what) {
  const cudaError_t error = cudaGetLastError();
  SLIMRT_CHECK(error == cudaSuccess, what << ": " << cudaGetErrorString(error));
}

}  // namespace

void cuda_read(const void* src, size_t bytes, void* sink, void* stream) {
  read_kernel<<<grid_blocks(), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<const uint4*>(src), bytes / 16, static_cast<uint32_t*>(sink));
  check_launch("cuda_read");
}

void cuda_write(void* dst, size_t bytes, void* stream) {
  write_kernel<<<grid_blocks(), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      static_cast<uint4*>(dst), bytes / 16);
  check_launch("cuda_write");
}

}  // namespace slimrt_bench
