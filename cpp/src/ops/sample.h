// Sampling one token id per row of logits, on the device, by the rules of sample_rules.h: every
// backend draws the same ids from the same logits (cpu/sample.cpp, cuda/sample.cu).
//
//   ops::sample(device, logits, batch, vocab, params, ids, scratch);
//   ops::sample(device, logits, batch, vocab, params, ids, scratch, &logprobs);  // and theirs
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// One id per row of logits [rows][vocab] (cpu::sample), vocab at most kMaxSampleVocab (whose
// fixed-point sums fit 64 bits). params: device memory, one per row. The logits are left as they
// are. scratch: sample_scratch_bytes(rows, vocab) bytes. logprobs, when given, also receives the
// log-probabilities of the raw logits (kernel_args.h, sample_rules.h).
void sample(Device& device, float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
            int32_t* out, void* scratch, const SampleLogprobs* logprobs = nullptr);
int64_t sample_scratch_bytes(Device& device, int64_t rows, int64_t vocab);

}  // namespace slimrt::ops
