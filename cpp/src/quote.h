// Names from untrusted files quoted for messages as Python's repr() quotes a str ('a', "it's",
// control bytes escaped), so a message reads the same from the C++ and the Python halves.
//
//   SLIMRT_CHECK_AS(kModelFile, ok, where << ": tensor " << quote(name) << " ...");
#pragma once

#include <string>
#include <string_view>

namespace slimrt {

std::string quote(std::string_view text);

}  // namespace slimrt
