// Dequantization of GGUF tensor data to float32 or BF16, bit-identical to gguf-py's
// gguf.quants.dequantize (and so to what the Python loader produced before). One exception: in a
// Q4_1/Q5_1 block whose scale and minimum are both NaN, d * q + m is a NaN whose payload may be
// either's (which operand wins is the compiler's choice, in numpy too).
//
//   const GgufTensorInfo& t = ...;                        // from parse_gguf
//   std::vector<uint16_t> w(t.numel);
//   gguf_dequantize_bf16(t.type, file.data() + t.begin, t.numel, w.data());
//
// Single-threaded and allocation-free: a caller splits big tensors into whole blocks per thread.
#pragma once

#include <cstdint>

namespace slimrt {

// F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
bool gguf_dequantize_supported(uint32_t type);

// Converts `count` consecutive elements (a multiple of the type's block size) stored at src,
// which must hold count / block_size blocks. Throws kUnsupported naming an unsupported type.
void gguf_dequantize_f32(uint32_t type, const uint8_t* src, int64_t count, float* out);

// The same values rounded to BF16 bits (nearest even, NaNs kept and made quiet, as
// python/slimrt/bfloat16.py round_to_bf16 does): bit-identical to rounding the f32 result.
void gguf_dequantize_bf16(uint32_t type, const uint8_t* src, int64_t count, uint16_t* out);

}  // namespace slimrt
