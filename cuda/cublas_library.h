// CublasLibrary: the few cuBLAS entry points the CUDA backend calls, loaded with dlopen when the
// first CUDA device is made, not when slimrt is loaded: libcublasLt alone maps ~0.5 GB, and a
// process that only runs the CPU backend should not pay for it (linking cuBLAS added 184 MiB to
// the resident size of `import slimrt._core`).
//
//   const CublasLibrary& cublas = cublas_library();  // throws slimrt::Error if not found
//   SLIMRT_CUBLAS_CHECK(cublas.create(&handle));      // a failure throws, naming the status
//
// Search order: the cuBLAS major version slimrt was compiled against, by soname (so
// LD_LIBRARY_PATH and the RUNPATH of the module that holds slimrt apply: the nvidia-cublas wheel
// beside it), then the directory CMake found cuBLAS in.
#pragma once

#include <cublas_v2.h>

#include "check.h"

namespace slimrt {

struct CublasLibrary {
  decltype(&cublasCreate_v2) create = nullptr;
  decltype(&cublasDestroy_v2) destroy = nullptr;
  decltype(&cublasSetStream_v2) set_stream = nullptr;
  decltype(&cublasSetWorkspace_v2) set_workspace = nullptr;
  // The C entry point (cublas_api.h also declares a C++ overload for the legacy compute types).
  using GemmEx = cublasStatus_t (*)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                    int, const void*, const void*, cudaDataType, int, const void*,
                                    cudaDataType, int, const void*, void*, cudaDataType, int,
                                    cublasComputeType_t, cublasGemmAlgo_t);
  GemmEx gemm_ex = nullptr;
  decltype(&cublasGetStatusName) status_name = nullptr;
  decltype(&cublasGetStatusString) status_string = nullptr;
};

// Loaded once per process (thread-safe); the library stays loaded.
const CublasLibrary& cublas_library();

}  // namespace slimrt

// A checked cuBLAS call: a failure throws slimrt::Error naming the call and cuBLAS's status.
#define SLIMRT_CUBLAS_CHECK(call)                                                                 \
  do {                                                                                            \
    const cublasStatus_t slimrt_cublas_status_ = (call);                                          \
    SLIMRT_CHECK(                                                                                 \
        slimrt_cublas_status_ == CUBLAS_STATUS_SUCCESS,                                           \
        #call << " failed: " << ::slimrt::cublas_library().status_name(slimrt_cublas_status_)     \
              << " (" << ::slimrt::cublas_library().status_string(slimrt_cublas_status_) << ")"); \
  } while (0)
