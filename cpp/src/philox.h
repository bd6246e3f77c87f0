// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11), the
// counter-based generator of cuRAND and PyTorch: a draw is a pure function of (key, counter),
// so sampling needs no generator state and every backend draws the same numbers (host and
// device code: host_device.h).
#pragma once

#include <cstdint>

#include "host_device.h"

namespace slimrt {

struct Philox4x32 {
  uint32_t v[4];
};

SLIMRT_HOST_DEVICE inline Philox4x32 philox4x32_10(Philox4x32 ctr, uint32_t key0, uint32_t key1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    if (round > 0) {
      key0 += kW0;
      key1 += kW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kM0) * ctr.v[0];
    const uint64_t p1 = static_cast<uint64_t>(kM1) * ctr.v[2];
    ctr = {{static_cast<uint32_t>(p1 >> 32) ^ ctr.v[1] ^ key0, static_cast<uint32_t>(p1),
            static_cast<uint32_t>(p0 >> 32) ^ ctr.v[3] ^ key1, static_cast<uint32_t>(p0)}};
  }
  return ctr;
}

// 53 uniform random bits (a draw u = bits / 2^53 in [0, 1)): counter in the first two counter
// words, seed as key.
SLIMRT_HOST_DEVICE inline uint64_t philox_bits53(uint64_t seed, uint64_t counter) {
  const Philox4x32 r = philox4x32_10(
      {{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u}},
      static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
  return (static_cast<uint64_t>(r.v[0]) << 32 | r.v[1]) >> 11;
}

}  // namespace slimrt
