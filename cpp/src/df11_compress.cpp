#include <algorithm>
#include <vector>

#include "check.h"
#include "crc32.h"
#include "df11_layout.h"
#include "huffman.h"
#include "parallel.h"
#include "slimrt/df11.h"

namespace slimrt {
namespace {

using df11::kGroupElements;
using df11::kLanes;
using df11::kSteps;
using df11::kVector;

inline uint8_t exponent_of(uint16_t x) { return static_cast<uint8_t>(x >> 7); }
inline uint8_t signmant_of(uint16_t x) {
  return static_cast<uint8_t>(((x >> 8) & 0x80) | (x & 0x7F));
}

SymbolCounts count_exponents(const uint16_t* bf16, int64_t n, int num_threads) {
  const int threads = resolve_threads(num_threads, n / (1 << 16) + 1);
  std::vector<SymbolCounts> partial(threads, SymbolCounts{});
  const int64_t per = (n + threads - 1) / threads;
  parallel_for(threads, threads, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      // Four histograms break the store-to-load dependency when neighbours share an exponent.
      uint64_t h[4][256] = {};
      const int64_t lo = std::min(n, t * per), hi = std::min(n, lo + per);
      int64_t i = lo;
      for (; i + 4 <= hi; i += 4) {
        ++h[0][exponent_of(bf16[i])];
        ++h[1][exponent_of(bf16[i + 1])];
        ++h[2][exponent_of(bf16[i + 2])];
        ++h[3][exponent_of(bf16[i + 3])];
      }
      for (; i < hi; ++i) ++h[0][exponent_of(bf16[i])];
      for (int s = 0; s < 256; ++s) partial[t][s] = h[0][s] + h[1][s] + h[2][s] + h[3][s];
    }
  });
  SymbolCounts total{};
  for (const auto& p : partial) {
    for (int s = 0; s < 256; ++s) total[s] += p[s];
  }
  return total;
}

// Appends codes MSB-first to a word array that starts zeroed.
class BitWriter {
 public:
  explicit BitWriter(uint32_t* words) : words_(words) {}
  void put(uint32_t code, int length) {
    acc_ = (acc_ << length) | code;
    pending_ += length;
    written_ += length;
    if (pending_ >= 32) {
      pending_ -= 32;
      *words_++ = static_cast<uint32_t>(acc_ >> pending_);
    }
  }
  void flush() {
    if (pending_ > 0) *words_ = static_cast<uint32_t>(acc_ << (32 - pending_));
  }
  uint32_t written() const { return static_cast<uint32_t>(written_); }

 private:
  uint32_t* words_;
  uint64_t acc_ = 0;
  int pending_ = 0;
  int64_t written_ = 0;
};

}  // namespace

Df11Tensor df11_compress(const uint16_t* bf16, int64_t n, const Df11CompressOptions& options) {
  SLIMRT_CHECK(n >= 0, "element count must be >= 0, got " << n);
  SLIMRT_CHECK(n == 0 || bf16 != nullptr, "null input for " << n << " elements");
  SLIMRT_CHECK(options.max_code_length >= 1 && options.max_code_length <= df11::kMaxCodeLength,
               "max_code_length must be in [1, " << df11::kMaxCodeLength << "], got "
                                                 << options.max_code_length);
  Df11Tensor t;
  t.numel = n;
  t.crc32 = crc32(bf16, static_cast<size_t>(n) * 2, options.num_threads);
  const SymbolCounts counts = count_exponents(bf16, n, options.num_threads);
  const CodeLengths lengths = build_code_lengths(counts, options.max_code_length);
  std::copy(lengths.begin(), lengths.end(), t.lengths.begin());
  const auto codes = canonical_codes(lengths);

  const int64_t groups = t.view().groups();
  t.index.assign(groups * df11::kIndexWords, 0);
  t.signmant.resize(n);

  // Pass 1: each group's size in words, so groups can be written in parallel at known places.
  std::vector<int64_t> group_words(groups + 1, 0);
  parallel_for(groups, options.num_threads, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t first = g * kGroupElements;
      const int64_t last = std::min(n, first + kGroupElements);
      uint64_t bits = 0;
      for (int64_t i = first; i < last; ++i) bits += lengths[exponent_of(bf16[i])];
      group_words[g + 1] = static_cast<int64_t>((bits + 31) / 32);
    }
  });
  for (int64_t g = 0; g < groups; ++g) group_words[g + 1] += group_words[g];
  const int64_t used_words = group_words[groups];
  SLIMRT_CHECK(used_words <= int64_t{UINT32_MAX},
               "tensor too large for DF11 version 1: " << used_words << " bitstream words");
  t.bitstream.assign(used_words + df11::kTailPadWords, 0);

  // Pass 2: codes lane by lane in the interleaved element order, sign/mantissa bytes in place.
  parallel_for(groups, options.num_threads, [&](int64_t begin, int64_t end) {
    for (int64_t g = begin; g < end; ++g) {
      const int64_t first = g * kGroupElements;
      const bool full = first + kGroupElements <= n;
      uint32_t* index = t.index.data() + g * df11::kIndexWords;
      index[0] = static_cast<uint32_t>(group_words[g]);
      BitWriter writer(t.bitstream.data() + group_words[g]);
      for (int lane = 0; lane < kLanes; ++lane) {
        index[1 + lane / 2] |= writer.written() << ((lane & 1) * 16);
        for (int step = 0; step < kSteps; ++step) {
          const int64_t start = first + df11::vector_start(step, lane);
          const int count =
              full ? kVector : static_cast<int>(std::clamp<int64_t>(n - start, 0, kVector));
          for (int k = 0; k < count; ++k) {
            const uint16_t x = bf16[start + k];
            const uint8_t e = exponent_of(x);
            writer.put(codes[e], lengths[e]);
            t.signmant[start + k] = signmant_of(x);
          }
        }
      }
      writer.flush();
    }
  });
  return t;
}

}  // namespace slimrt
