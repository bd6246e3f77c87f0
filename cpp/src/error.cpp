#include "slimrt/error.h"

namespace slimrt {

void throw_error(const char* function, const char* file, int line, const std::string& message) {
  // Only the file's base name: build paths mean nothing to the user reading the message.
  const std::string path(file);
  const std::string base = path.substr(path.find_last_of("/\\") + 1);
  std::ostringstream place;
  place << function << ", " << base << ":" << line;
  throw Error(message, place.str());
}

}  // namespace slimrt
