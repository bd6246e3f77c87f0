// Sampling on a CUDA GPU (cuda/sample.cu): one id per row of logits, drawn by the rules of
// sample_rules.h, so the ids are those cpu::sample draws from the same logits, greedy rows
// included (the largest logit, ties to the lowest id, NaNs skipped, id 0 when no logit is a
// number).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "kernel_args.h"

namespace slimrt {

// logits [rows][vocab] (overwritten: rows that are not greedy hold their weights afterwards),
// params [rows] and out [rows] in device memory. Enqueued on `stream`; allocates nothing and
// synchronises nothing. Throws slimrt::Error for a vocabulary above kMaxSampleVocab.
void sample_cuda(float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
                 int32_t* out, cudaStream_t stream);

}  // namespace slimrt
