#include "ops/copy_rows.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {

void gather_rows(Device& device, const float* src, const int32_t* rows, int64_t count,
                 int64_t width, float* dst) {
  SLIMRT_CHECK(count >= 0 && width >= 0, "gather_rows: " << count << " rows of width " << width);
  SLIMRT_CHECK(count * width == 0 || (src != nullptr && rows != nullptr && dst != nullptr),
               "gather_rows: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::gather_rows(src, rows, count, width, dst);
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::gather_rows(cuda_device(device), src, rows, count, width, dst));
  }
}

void copy_block(Device& device, const float* src, int64_t src_stride, float* dst,
                int64_t dst_stride, int64_t rows, int64_t cols) {
  SLIMRT_CHECK(rows >= 0 && cols >= 0 && src_stride >= cols && dst_stride >= cols,
               "copy_block: " << rows << " rows of " << cols << " from rows " << src_stride
                              << " apart to rows " << dst_stride << " apart");
  SLIMRT_CHECK(rows * cols == 0 || (src != nullptr && dst != nullptr),
               "copy_block: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::copy_block(src, src_stride, dst, dst_stride, rows, cols);
    case Backend::kCuda:
      return SLIMRT_CUDA(
          cuda::copy_block(cuda_device(device), src, src_stride, dst, dst_stride, rows, cols));
  }
}

}  // namespace slimrt::ops
