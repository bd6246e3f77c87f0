// Round-trips a few BF16 values through the installed library and checks that the CMake
// package's version, the header's SLIMRT_VERSION_* macros and slimrt::version() agree; exit code
// 0 when both hold.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "slimrt/df11.h"
#include "slimrt/version.h"

#define SLIMRT_CONSUMER_STR2(x) #x
#define SLIMRT_CONSUMER_STR(x) SLIMRT_CONSUMER_STR2(x)

int main() {
  const std::string header = SLIMRT_CONSUMER_STR(SLIMRT_VERSION_MAJOR) "." SLIMRT_CONSUMER_STR(
      SLIMRT_VERSION_MINOR) "." SLIMRT_CONSUMER_STR(SLIMRT_VERSION_PATCH);
  const bool versions = header == SLIMRT_PACKAGE_VERSION && header == slimrt::version();
  std::printf("find_package(slimrt): package %s, header %s, library %s: %s\n",
              SLIMRT_PACKAGE_VERSION, header.c_str(), slimrt::version(),
              versions ? "one version" : "MISMATCH");

  std::vector<uint16_t> in;
  for (int i = 0; i < 5000; ++i) in.push_back(static_cast<uint16_t>(0x3C00 + (i * 7919) % 2048));
  const slimrt::Df11Tensor t = slimrt::df11_compress(in.data(), in.size(), {});
  std::vector<uint16_t> out(in.size());
  slimrt::df11_decode_cpu(t.view(), out.data());
  const bool exact = out == in;
  std::printf("find_package(slimrt): %zu values, %s\n", in.size(),
              exact ? "bit-exact" : "MISMATCH");
  return versions && exact ? 0 : 1;
}
