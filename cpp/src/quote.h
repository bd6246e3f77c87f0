// Values from untrusted files written into messages as Python's repr() writes them ('a', "it's",
// control bytes escaped; [2, 3]), so a message reads the same from the C++ and Python halves.
//
//   SLIMRT_CHECK_AS(kModelFile, ok, where << ": tensor " << quote(name) << " has shape "
//                                         << list_repr(shape));
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace slimrt {

std::string quote(std::string_view text);
std::string list_repr(const std::vector<int64_t>& values);

}  // namespace slimrt
