// The CUDA kernels of ops::embed and ops::embed_df11.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "df11_cuda.h"
#include "kernel_helpers.h"

namespace slimrt::cuda {
namespace {

__global__ void embed_kernel(const int32_t* ids, int64_t tokens, const uint16_t* table,
                             int64_t hidden, float* out) {
  const int64_t n = tokens * hidden;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n;
       i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t t = i / hidden, c = i % hidden;
    out[i] = bf16_to_f32(table[int64_t{ids[t]} * hidden + c]);
  }
}

}  // namespace

void embed(CudaDevice& device, const int32_t* ids, int64_t tokens, const uint16_t* table,
           int64_t hidden, float* out) {
  if (tokens <= 0 || hidden <= 0) return;
  embed_kernel<<<grid_for(tokens * hidden), kThreads, 0, device.stream()>>>(ids, tokens, table,
                                                                            hidden, out);
  SLIMRT_CUDA_CHECK(cudaGetLastError());
}

// No host round trip of the ids, so decode steps capture it in their graph.
void embed_df11(CudaDevice& device, const int32_t* ids, int64_t tokens, const Df11View& table,
                int64_t hidden, float* out) {
  if (tokens <= 0 || hidden <= 0) return;
  df11_gather_rows_cuda(device.df11_view(table), ids, tokens, hidden, out, device.stream());
}

}  // namespace slimrt::cuda
