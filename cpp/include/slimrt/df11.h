// DF11: lossless compression of BF16 tensors (docs/FORMAT.md specifies the layout byte by byte).
//
//   slimrt::Df11Tensor t = slimrt::df11_compress(bits, n, {});   // bits: n BF16 values as uint16
//   std::vector<uint16_t> back(n);
//   slimrt::df11_decode_cpu(t.view(), back.data());             // bit-exact
//
// A Df11View is what decoders read: four arrays the caller owns (a Df11Tensor's vectors, an
// mmapped safetensors file, device buffers). df11_validate() checks a view taken from untrusted
// bytes so that decoding it cannot read out of bounds.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace slimrt {

namespace df11 {
constexpr int kVersion = 1;
constexpr int kLanes = 32;
constexpr int kLaneElements = 128;
constexpr int kVector = 8;
constexpr int kSteps = kLaneElements / kVector;
constexpr int64_t kGroupElements = int64_t{kLanes} * kLaneElements;
constexpr int kMaxCodeLength = 12;
constexpr int kIndexWords = 1 + kLanes / 2;
constexpr int64_t kTailPadWords = (kLaneElements * kMaxCodeLength + 31) / 32 + 2;
constexpr int kSymbols = 256;
}  // namespace df11

struct Df11View {
  const uint8_t* lengths = nullptr;     // [256]
  const uint32_t* bitstream = nullptr;  // [bitstream_words]
  int64_t bitstream_words = 0;
  const uint32_t* index = nullptr;    // [groups][17]
  const uint8_t* signmant = nullptr;  // [numel]
  int64_t numel = 0;

  int64_t groups() const { return (numel + df11::kGroupElements - 1) / df11::kGroupElements; }
};

struct Df11Tensor {
  std::array<uint8_t, df11::kSymbols> lengths{};
  std::vector<uint32_t> bitstream;
  std::vector<uint32_t> index;
  std::vector<uint8_t> signmant;
  int64_t numel = 0;
  uint32_t crc32 = 0;  // of the original BF16 bytes

  Df11View view() const;
  int64_t compressed_bytes() const;
};

struct Df11CompressOptions {
  int max_code_length = df11::kMaxCodeLength;  // 1..12; shorter codes cost ratio
  int num_threads = 0;                         // 0 = all hardware threads
};

// Compresses n BF16 values given as their uint16 bit patterns.
Df11Tensor df11_compress(const uint16_t* bf16, int64_t n, const Df11CompressOptions& options);

// Throws slimrt::Error naming the first inconsistency: lengths that are no valid code, offsets
// that run backwards or past the bitstream, a bitstream too short for safe over-read.
void df11_validate(const Df11View& view);

// The decoding table the kernels use: 1 << table_bits entries of (length << 8 | symbol), where
// table_bits is the longest code length present (0 for an empty tensor).
struct Df11Table {
  std::vector<uint16_t> entries;
  int table_bits = 0;
};
Df11Table df11_build_table(const uint8_t* lengths);

// Decodes into out[0, numel) on the CPU. The view must have passed df11_validate().
void df11_decode_cpu(const Df11View& view, uint16_t* out, int num_threads = 0);
// The same with the view's table already built (df11_build_table(view.lengths)): allocates
// nothing, for callers that decode the same tensor again and again.
void df11_decode_cpu(const Df11View& view, const Df11Table& table, uint16_t* out,
                     int num_threads = 0);

}  // namespace slimrt
