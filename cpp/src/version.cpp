#include "slimrt/version.h"

#define SLIMRT_STRINGIFY2(x) #x
#define SLIMRT_STRINGIFY(x) SLIMRT_STRINGIFY2(x)

namespace slimrt {

const char* version() {
  return SLIMRT_STRINGIFY(SLIMRT_VERSION_MAJOR) "." SLIMRT_STRINGIFY(
      SLIMRT_VERSION_MINOR) "." SLIMRT_STRINGIFY(SLIMRT_VERSION_PATCH);
}

bool cuda_built() {
#ifdef SLIMRT_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() { return cuda_unavailable_reason()[0] == '\0'; }

}  // namespace slimrt
