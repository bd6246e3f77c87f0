#include "ops/embed.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"

namespace slimrt::ops {
namespace {

void check_lookup(const int32_t* ids, int64_t tokens, int64_t hidden, const void* table,
                  float* out) {
  SLIMRT_CHECK(tokens >= 0 && hidden > 0,
               "embed: " << tokens << " tokens of hidden size " << hidden);
  SLIMRT_CHECK(tokens == 0 || (ids != nullptr && table != nullptr && out != nullptr),
               "embed: a null pointer");
}

}  // namespace

void embed(Device& device, const int32_t* ids, int64_t tokens, const uint16_t* table,
           int64_t hidden, float* out) {
  check_lookup(ids, tokens, hidden, table, out);
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::embed(ids, tokens, table, hidden, out, cpu_device(device).pool());
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::embed(cuda_device(device), ids, tokens, table, hidden, out));
  }
}

void embed_df11(Device& device, const int32_t* ids, int64_t tokens, const Df11View& table,
                int64_t hidden, float* out, uint16_t* scratch) {
  check_lookup(ids, tokens, hidden, table.lengths, out);
  SLIMRT_CHECK(table.numel % hidden == 0,
               "embed: a DF11 table of " << table.numel << " elements has no rows of " << hidden);
  SLIMRT_CHECK(
      tokens == 0 || scratch != nullptr || embed_df11_scratch_elements(device, hidden) == 0,
      "embed: no scratch for decoding DF11 rows");
  switch (device.backend()) {
    case Backend::kCpu: {
      CpuDevice& cpu = cpu_device(device);
      return cpu::embed_df11(ids, tokens, table, cpu.df11_table(table.lengths), hidden, out,
                             scratch, cpu.pool());
    }
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::embed_df11(cuda_device(device), ids, tokens, table, hidden, out));
  }
}

int64_t embed_df11_scratch_elements(Device& device, int64_t hidden) {
  return device.backend() == Backend::kCpu
             ? cpu::embed_df11_scratch_elements(hidden, cpu_device(device).pool())
             : 0;  // CUDA's kernel needs none
}

}  // namespace slimrt::ops
