// The CRC-32 (zlib's) of bytes in a device's memory, computed where they are: how a model checks
// a DF11 tensor decoded by the device's own decoder against the checksum stored with it
// (cpu: crc32.cpp on the pool; cuda/checksum.cu: one piece per thread, folded on the host).
//
//   void* scratch = device.allocate(ops::crc32_scratch_bytes(device, bytes));
//   uint32_t crc = ops::crc32(device, decoded, bytes, scratch);  // waits for the result
#pragma once

#include <cstdint>

#include "device.h"

namespace slimrt::ops {

int64_t crc32_scratch_bytes(Device& device, int64_t bytes);
uint32_t crc32(Device& device, const void* data, int64_t bytes, void* scratch);

}  // namespace slimrt::ops
