// df11_groups: a range of a DF11 tensor's 4096-element groups, as a DF11 tensor of its own.
// docs/FORMAT.md makes this legal: a group's index row holds its absolute first bitstream word,
// so it decodes without the groups before it. Used to decode a few embedding rows, or the
// lm_head a chunk of rows at a time, instead of whole tensors.
//
//   Df11View rows = df11_groups(view, 3, 5);   // elements [3 * 4096, min(numel, 5 * 4096))
#pragma once

#include <algorithm>
#include <cstdint>

#include "slimrt/df11.h"

namespace slimrt {

inline Df11View df11_groups(const Df11View& view, int64_t first, int64_t last) {
  Df11View sub = view;
  sub.index = view.index + first * df11::kIndexWords;
  sub.signmant = view.signmant + first * df11::kGroupElements;
  sub.numel = std::min(view.numel, last * df11::kGroupElements) - first * df11::kGroupElements;
  return sub;
}

}  // namespace slimrt
