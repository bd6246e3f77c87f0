#include "ops/sample.h"

#include <algorithm>

#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "sample_rules.h"

namespace slimrt::ops {

void sample(Device& device, float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
            int32_t* out, void* scratch, const SampleLogprobs* logprobs) {
  SLIMRT_CHECK(rows >= 0, "sample: " << rows << " rows");
  check_sample_vocab(vocab);
  SLIMRT_CHECK(
      rows == 0 || (logits != nullptr && params != nullptr && out != nullptr &&
                    (scratch != nullptr || sample_scratch_bytes(device, rows, vocab) == 0)),
      "sample: a null pointer");
  if (logprobs != nullptr) {
    SLIMRT_CHECK(
        logprobs->top_n >= 0 && logprobs->top_n <= kMaxTopLogprobs && logprobs->top_n <= vocab,
        "sample: " << logprobs->top_n << " top logprobs; at most "
                   << std::min<int64_t>(kMaxTopLogprobs, vocab));
    SLIMRT_CHECK(rows == 0 || (logprobs->sampled != nullptr &&
                               (logprobs->top_n == 0 || (logprobs->top_ids != nullptr &&
                                                         logprobs->top_logprobs != nullptr))),
                 "sample: a null logprobs pointer");
  }
  switch (device.backend()) {
    case Backend::kCpu:
      return cpu::sample(logits, rows, vocab, params, out, scratch, cpu_device(device).pool(),
                         logprobs);
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::sample(cuda_device(device), logits, rows, vocab, params, out,
                                      static_cast<float*>(scratch), logprobs));
  }
}

int64_t sample_scratch_bytes(Device& device, int64_t rows, int64_t vocab) {
  // cpu::sample's documented need; the CUDA sampler's weights (written apart from the logits, which
  // logprobs read after the draw).
  return rows * vocab * (device.backend() == Backend::kCpu ? 8 : 4);
}

}  // namespace slimrt::ops
