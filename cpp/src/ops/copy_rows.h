// Copies of FP32 activation rows within device memory: a gather by row index (each sequence's
// last token before the head) and a strided block (a chunk of logits into place)
// (cpu/copy_rows.cpp, cuda/copy_rows.cu).
//
//   ops::gather_rows(device, x, last_rows, batch, hidden, last);
//   ops::copy_block(device, chunk, rows, logits + start, vocab, batch, rows);
#pragma once

#include <cstdint>

#include "device.h"

namespace slimrt::ops {

// dst[i][:] = src[rows[i]][:] for i < count, rows `width` floats wide. Every index must be a row
// of src (not checked: the indices live on the device).
void gather_rows(Device& device, const float* src, const int32_t* rows, int64_t count,
                 int64_t width, float* dst);

// dst[r][0, cols) = src[r][0, cols) for r < rows, rows `*_stride` (>= cols) floats apart.
void copy_block(Device& device, const float* src, int64_t src_stride, float* dst,
                int64_t dst_stride, int64_t rows, int64_t cols);

}  // namespace slimrt::ops
