// cuBLAS is loaded with dlopen when the first CUDA device is made (cuda/cublas_library.h). The
// loading needs no GPU: every entry point the backend calls must resolve in the library found.
#include <gtest/gtest.h>

#include <string>

#include "cublas_library.h"

namespace slimrt {
namespace {

TEST(CublasLibrary, LoadsEveryEntryPointWithoutAGpu) {
  const CublasLibrary& cublas = cublas_library();
  EXPECT_NE(cublas.create, nullptr);
  EXPECT_NE(cublas.destroy, nullptr);
  EXPECT_NE(cublas.set_stream, nullptr);
  EXPECT_NE(cublas.set_workspace, nullptr);
  EXPECT_NE(cublas.gemm_ex, nullptr);
  EXPECT_EQ(std::string(cublas.status_name(CUBLAS_STATUS_NOT_INITIALIZED)),
            "CUBLAS_STATUS_NOT_INITIALIZED");
  EXPECT_FALSE(std::string(cublas.status_string(CUBLAS_STATUS_INVALID_VALUE)).empty());
  EXPECT_EQ(&cublas_library(), &cublas);  // loaded once
}

}  // namespace
}  // namespace slimrt
