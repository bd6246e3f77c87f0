#include "check.h"

namespace slimrt {

const char* error_category_name(ErrorCategory category) {
  switch (category) {
    case ErrorCategory::kInvalidArgument:
      return "invalid argument";
    case ErrorCategory::kModelFile:
      return "model file";
    case ErrorCategory::kUnsupported:
      return "unsupported";
    case ErrorCategory::kOutOfMemory:
      return "out of memory";
    case ErrorCategory::kIo:
      return "I/O";
    case ErrorCategory::kInternal:
      return "internal";
  }
  return "?";
}

void throw_error(ErrorCategory category, const char* function, const char* file, int line,
                 const std::string& message) {
  // Only the file's base name: build paths mean nothing to the user reading the message.
  const std::string path(file);
  const std::string base = path.substr(path.find_last_of("/\\") + 1);
  std::ostringstream place;
  place << function << ", " << base << ":" << line;
  throw Error(category, message, place.str());
}

}  // namespace slimrt
