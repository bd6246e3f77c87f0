// Round-trips a few BF16 values through the installed library; exit code 0 when bit-exact.
#include <cstdio>
#include <vector>

#include "slimrt/df11.h"

int main() {
  std::vector<uint16_t> in;
  for (int i = 0; i < 5000; ++i) in.push_back(static_cast<uint16_t>(0x3C00 + (i * 7919) % 2048));
  const slimrt::Df11Tensor t = slimrt::df11_compress(in.data(), in.size(), {});
  std::vector<uint16_t> out(in.size());
  slimrt::df11_decode_cpu(t.view(), out.data());
  const bool exact = out == in;
  std::printf("find_package(slimrt): %zu values, %s\n", in.size(),
              exact ? "bit-exact" : "MISMATCH");
  return exact ? 0 : 1;
}
