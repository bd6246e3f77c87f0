// Sampling one token id per row of logits, on the device, by the rules of sample_rules.h: every
// backend draws the same ids from the same logits (cpu/sample.cpp, cuda/sample.cu).
//
//   ops::sample(device, logits, batch, vocab, params, ids, scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "kernel_args.h"

namespace slimrt::ops {

// One id per row of logits [rows][vocab] (cpu::sample), vocab at most kMaxSampleVocab (whose
// fixed-point sums fit 64 bits). params: device memory, one per row. logits may be overwritten.
// scratch: sample_scratch_bytes(rows, vocab) bytes.
void sample(Device& device, float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
            int32_t* out, void* scratch);
int64_t sample_scratch_bytes(Device& device, int64_t rows, int64_t vocab);

}  // namespace slimrt::ops
