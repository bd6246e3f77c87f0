// Dense tensors from a file into the forms the engine takes: matrices as BF16 bits, norms and
// biases as float. The element types are ggml's (F32, F16, BF16 and the quantized blocks), so
// a safetensors F16 and a GGUF Q4_1 go through the same conversions (gguf_dequantize.h).
//
//   WeightTensor w = stage_matrix(ggml::kBf16, bytes, {rows, cols}, 0, source, threads);
#pragma once

#include <cstdint>
#include <vector>

#include "model_source.h"

namespace slimrt {

namespace ggml {
constexpr uint32_t kF32 = 0, kF16 = 1, kBf16 = 30;
}  // namespace ggml

// A [rows][cols] matrix of `type` at `data`. BF16 on a 2-byte boundary is used in place (a view
// of the mapped file, copied once, into the arena); anything else is converted into a buffer
// of `source`, in parallel over rows. rope_heads > 0 un-permutes the rows of each of that many
// heads as llama.cpp's converter permuted them (TensorSpec::rope_heads).
WeightTensor stage_matrix(uint32_t type, const uint8_t* data, const std::vector<int64_t>& shape,
                          int64_t rope_heads, ModelSource& source, int num_threads);

// A 1-D tensor of `type` as float (exact from BF16 and F16), un-permuted like a matrix's rows.
WeightTensor stage_vector(uint32_t type, const uint8_t* data, int64_t size, int64_t rope_heads,
                          ModelSource& source);

}  // namespace slimrt
