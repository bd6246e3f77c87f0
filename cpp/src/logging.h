// How the library writes a log line: through the application's callback (slimrt/log.h), or to
// stderr (warnings and errors only) when it set none.
//
//   log_line(LogLevel::kInfo, "loaded " + path);
#pragma once

#include <string>

#include "slimrt/log.h"

namespace slimrt {

void log_line(LogLevel level, const std::string& text);

}  // namespace slimrt
