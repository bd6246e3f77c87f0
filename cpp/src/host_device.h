// SLIMRT_HOST_DEVICE marks a function that both backends compile: the CPU kernels with the host
// compiler, the CUDA kernels with nvcc (as __host__ __device__), so that the two run the same
// arithmetic where their results must agree bit for bit (sampling).
#pragma once

#if defined(__CUDACC__)
#define SLIMRT_HOST_DEVICE __host__ __device__
#else
#define SLIMRT_HOST_DEVICE
#endif
