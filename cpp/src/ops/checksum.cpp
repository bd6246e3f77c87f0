#include "ops/checksum.h"

#include "backend.h"
#include "check.h"
#include "crc32.h"

namespace slimrt::ops {

int64_t crc32_scratch_bytes(Device& device, int64_t bytes) {
  SLIMRT_CHECK(bytes >= 0, "crc32: " << bytes << " bytes");
  return device.backend() == Backend::kCuda ? SLIMRT_CUDA(cuda::crc32_scratch_bytes(bytes)) : 0;
}

uint32_t crc32(Device& device, const void* data, int64_t bytes, void* scratch) {
  SLIMRT_CHECK(bytes >= 0, "crc32: " << bytes << " bytes");
  SLIMRT_CHECK(bytes == 0 || data != nullptr, "crc32: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return slimrt::crc32(data, static_cast<size_t>(bytes), cpu_device(device).pool().size());
    case Backend::kCuda:
      SLIMRT_CHECK(bytes == 0 || scratch != nullptr, "crc32: no scratch");
      return SLIMRT_CUDA(cuda::crc32(cuda_device(device), data, bytes, scratch));
  }
  return 0;
}

}  // namespace slimrt::ops
