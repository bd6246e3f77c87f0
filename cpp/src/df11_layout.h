// Where DF11 puts things (docs/FORMAT.md, "Element order inside a group"), shared by the
// encoder and the CPU decoder so the two cannot disagree.
#pragma once

#include <cstdint>

#include "slimrt/df11.h"

namespace slimrt::df11 {

// First element of lane `lane`'s vector at step `step`, relative to its group's first element.
inline int64_t vector_start(int step, int lane) {
  return (int64_t{step} * kLanes + lane) * kVector;
}

inline uint32_t lane_offset(const uint32_t* group_index, int lane) {
  const uint32_t word = group_index[1 + lane / 2];
  return (lane & 1) ? word >> 16 : word & 0xFFFF;
}

}  // namespace slimrt::df11
