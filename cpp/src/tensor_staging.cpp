#include "tensor_staging.h"

#include <cstring>

#include "gguf.h"
#include "gguf_dequantize.h"
#include "parallel.h"

namespace slimrt {
namespace {

// The row of llama.cpp's permuted layout that holds row `row` of Hugging Face's. Per head the
// converter interleaves the head's two halves (row i of the first half and row i of the second
// become rows 2i and 2i + 1), so HF row (half j, index i) sits at 2i + j.
int64_t stored_row(int64_t row, int64_t rows, int64_t heads) {
  if (heads <= 0) return row;
  const int64_t per_head = rows / heads, half = per_head / 2;
  const int64_t head = row / per_head, in_head = row % per_head;
  return head * per_head + (in_head % half) * 2 + in_head / half;
}

int64_t row_bytes(uint32_t type, int64_t cols) {
  const GgmlTypeInfo* info = ggml_type_info(type);
  return cols / info->block_size * info->type_size;
}

}  // namespace

WeightTensor stage_matrix(uint32_t type, const uint8_t* data, const std::vector<int64_t>& shape,
                          int64_t rope_heads, ModelSource& source, int num_threads) {
  const int64_t rows = shape[0], cols = shape[1];
  if (type == ggml::kBf16 && rope_heads == 0 && reinterpret_cast<uintptr_t>(data) % 2 == 0) {
    return WeightTensor::bf16(reinterpret_cast<const uint16_t*>(data), shape);
  }
  std::vector<uint16_t>& out = source.bf16_buffers.emplace_back(rows * cols);
  const int64_t stride = row_bytes(type, cols);
  parallel_for(rows, num_threads, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const uint8_t* src = data + stored_row(r, rows, rope_heads) * stride;
      gguf_dequantize_bf16(type, src, cols, out.data() + r * cols);
    }
  });
  return WeightTensor::bf16(out.data(), shape);
}

WeightTensor stage_vector(uint32_t type, const uint8_t* data, int64_t size, int64_t rope_heads,
                          ModelSource& source) {
  std::vector<float>& out = source.f32_buffers.emplace_back(size);
  if (rope_heads == 0) {
    gguf_dequantize_f32(type, data, size, out.data());
  } else {
    std::vector<float> stored(size);
    gguf_dequantize_f32(type, data, size, stored.data());
    for (int64_t r = 0; r < size; ++r) out[r] = stored[stored_row(r, size, rope_heads)];
  }
  return WeightTensor::f32(out.data(), {size});
}

}  // namespace slimrt
