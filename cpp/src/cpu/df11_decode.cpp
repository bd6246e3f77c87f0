// The DF11 decoder on the CPU: the public df11_decode_cpu() and the kernel of ops::decode_df11.
#include <algorithm>

#include "df11_groups.h"
#include "df11_layout.h"
#include "kernels.h"
#include "parallel.h"
#include "slimrt/df11.h"

namespace slimrt {
namespace {

using namespace df11;

constexpr int kInterleave = 4;  // lanes decoded side by side (the initialiser below lists 4)
static_assert(kLanes % kInterleave == 0, "lanes split evenly");

// MSB-first reader over the bitstream. The format's tail padding makes its look-ahead safe.
class BitReader {
 public:
  BitReader(const uint32_t* words, uint64_t bit) : next_(words + (bit >> 5) + 2) {
    const uint64_t pair = uint64_t{next_[-2]} << 32 | next_[-1];
    const int skip = static_cast<int>(bit & 31);
    buffer_ = pair << skip;
    available_ = 64 - skip;
  }
  // Decodes one symbol with a table of 1 << bits entries.
  inline uint8_t decode(const uint16_t* table, int bits) {
    if (available_ < 32) {
      buffer_ |= uint64_t{*next_++} << (32 - available_);
      available_ += 32;
    }
    const uint16_t entry = table[buffer_ >> (64 - bits)];
    const int length = entry >> 8;
    buffer_ <<= length;
    available_ -= length;
    return static_cast<uint8_t>(entry);
  }

 private:
  const uint32_t* next_;
  uint64_t buffer_;
  int available_;
};

inline uint16_t join(uint8_t exponent, uint8_t signmant) {
  return static_cast<uint16_t>((signmant & 0x80) << 8 | exponent << 7 | (signmant & 0x7F));
}

// Groups [begin, end) of v into out. Kept out of line, with the view's arrays as restrict locals:
// inlined into its caller the loop ran 30 % slower (GCC 12, AVX-512 machine).
[[gnu::noinline]] void decode_groups(const Df11View& v, const uint16_t* __restrict entries,
                                     int bits, uint16_t* __restrict out, int64_t begin,
                                     int64_t end) {
  const uint32_t* __restrict bitstream = v.bitstream;
  const uint32_t* __restrict index_words = v.index;
  const uint8_t* __restrict signmant = v.signmant;
  const int64_t n = v.numel;
  for (int64_t g = begin; g < end; ++g) {
    const uint32_t* index = index_words + g * kIndexWords;
    const int64_t first = g * kGroupElements;
    const bool full = first + kGroupElements <= n;
    const uint64_t group_bit = uint64_t{index[0]} * 32;
    if (full) {
      // A lane's codes are one serial chain (lookup, shift, lookup...): kInterleave lanes
      // decoded side by side keep that many chains in flight. Their vectors of a step are
      // adjacent in the output.
      for (int lane = 0; lane < kLanes; lane += kInterleave) {
        BitReader readers[kInterleave] = {
            BitReader(bitstream, group_bit + lane_offset(index, lane)),
            BitReader(bitstream, group_bit + lane_offset(index, lane + 1)),
            BitReader(bitstream, group_bit + lane_offset(index, lane + 2)),
            BitReader(bitstream, group_bit + lane_offset(index, lane + 3))};
        for (int step = 0; step < kSteps; ++step) {
          const int64_t start = first + vector_start(step, lane);
          for (int k = 0; k < kVector; ++k) {
            for (int j = 0; j < kInterleave; ++j) {
              const int64_t at = start + j * kVector + k;
              out[at] = join(readers[j].decode(entries, bits), signmant[at]);
            }
          }
        }
      }
      continue;
    }
    for (int lane = 0; lane < kLanes; ++lane) {
      BitReader reader(bitstream, group_bit + lane_offset(index, lane));
      for (int step = 0; step < kSteps; ++step) {
        const int64_t start = first + vector_start(step, lane);
        const int count = static_cast<int>(std::clamp<int64_t>(n - start, 0, kVector));
        for (int k = 0; k < count; ++k) {
          out[start + k] = join(reader.decode(entries, bits), signmant[start + k]);
        }
      }
    }
  }
}

}  // namespace

void df11_decode_cpu(const Df11View& v, uint16_t* out, int num_threads) {
  df11_decode_cpu(v, df11_build_table(v.lengths), out, num_threads);
}

void df11_decode_cpu(const Df11View& v, const Df11Table& table, uint16_t* out, int num_threads) {
  const uint16_t* entries = table.entries.data();
  const int bits = table.table_bits;
  // One thread: a direct call, so that decoding allocates nothing (parallel_for's std::function
  // would); the engine splits its own work over its pool.
  if (resolve_threads(num_threads, v.groups()) == 1) {
    decode_groups(v, entries, bits, out, 0, v.groups());
  } else {
    parallel_for(v.groups(), num_threads, [&](int64_t begin, int64_t end) {
      decode_groups(v, entries, bits, out, begin, end);
    });
  }
}

namespace cpu {

void decode_df11(const Df11View& view, const Df11Table& table, uint16_t* out, ThreadPool& pool) {
  // One df11_decode_cpu call per range of groups on the engine's pool (its own num_threads
  // would start threads per call).
  pool.run(view.groups(), [&](int64_t begin, int64_t end) {
    df11_decode_cpu(df11_groups(view, begin, end), table, out + begin * df11::kGroupElements, 1);
  });
}

}  // namespace cpu

}  // namespace slimrt
