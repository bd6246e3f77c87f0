#include "ops/df11_decode.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {
namespace {

void check_decode(const Df11View& view, const uint16_t* out) {
  SLIMRT_CHECK(view.numel >= 0, "decode_df11: " << view.numel << " elements");
  SLIMRT_CHECK(
      view.numel == 0 || (view.lengths != nullptr && view.bitstream != nullptr &&
                          view.index != nullptr && view.signmant != nullptr && out != nullptr),
      "decode_df11: a null pointer");
}

void decode_on_cpu(Device& device, const Df11View& view, uint16_t* out) {
  if (view.numel == 0) return;  // an empty view may have no table to look up
  CpuDevice& cpu = cpu_device(device);
  cpu::decode_df11(view, cpu.df11_table(view.lengths), out, cpu.pool());
}

}  // namespace

void decode_df11(Device& device, const Df11View& view, uint16_t* out) {
  check_decode(view, out);
  switch (device.backend()) {
    case Backend::kCpu:
      return decode_on_cpu(device, view, out);
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::decode_df11(cuda_device(device), view, out));
  }
}

void decode_df11_ahead(Device& device, const Df11View& view, uint16_t* out) {
  check_decode(view, out);
  switch (device.backend()) {
    case Backend::kCpu:  // no second lane: decodes at once
      return decode_on_cpu(device, view, out);
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::decode_df11_ahead(cuda_device(device), view, out));
  }
}

}  // namespace slimrt::ops
