// Checked CUDA runtime calls: a failure throws slimrt::Error naming the call and CUDA's message.
//
//   SLIMRT_CUDA_CHECK(cudaMalloc(&ptr, bytes));
//   kernel<<<grid, block, 0, stream>>>(...);
//   SLIMRT_CUDA_CHECK(cudaGetLastError());
#pragma once

#include <cuda_runtime.h>

#include "check.h"

#define SLIMRT_CUDA_CHECK(call)                                                        \
  do {                                                                                 \
    const cudaError_t slimrt_cuda_status_ = (call);                                    \
    SLIMRT_CHECK(slimrt_cuda_status_ == cudaSuccess,                                   \
                 #call << " failed: " << cudaGetErrorName(slimrt_cuda_status_) << " (" \
                       << cudaGetErrorString(slimrt_cuda_status_) << ")");             \
  } while (0)
