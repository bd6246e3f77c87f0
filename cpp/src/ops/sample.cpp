#include "ops/sample.h"

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "sample_rules.h"

namespace slimrt::ops {

void sample(Device& device, float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
            int32_t* out, void* scratch) {
  SLIMRT_CHECK(rows >= 0, "sample: " << rows << " rows");
  check_sample_vocab(vocab);
  SLIMRT_CHECK(
      rows == 0 || (logits != nullptr && params != nullptr && out != nullptr &&
                    (scratch != nullptr || sample_scratch_bytes(device, rows, vocab) == 0)),
      "sample: a null pointer");
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::sample(logits, rows, vocab, params, out, scratch, cpu_device(device).pool());
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::sample(cuda_device(device), logits, rows, vocab, params, out));
  }
}

int64_t sample_scratch_bytes(Device& device, int64_t rows, int64_t vocab) {
  // cpu::sample's documented need; the CUDA sampler keeps its state in shared memory.
  return device.backend() == Backend::kCpu ? rows * vocab * 8 : 0;
}

}  // namespace slimrt::ops
