// libFuzzer target: slimrt::fuzz::safetensors (fuzz_targets.h). Whatever the bytes, the parser
// accepts them and keeps its promises, or throws slimrt::Error; anything else is a finding.
#include <cstddef>
#include <cstdint>

#include "fuzz_targets.h"
#include "slimrt/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    slimrt::fuzz::safetensors(data, size);
  } catch (const slimrt::Error&) {
  }
  return 0;
}
