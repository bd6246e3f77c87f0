#include <algorithm>

#include "check.h"
#include "df11_layout.h"
#include "slimrt/df11.h"

namespace slimrt {

void df11_validate(const Df11View& v) {
  using namespace df11;
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, v.numel >= 0,
                  "DF11: negative element count " << v.numel);
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, v.lengths != nullptr, "DF11: missing code lengths");
  int distinct = 0;
  uint64_t kraft = 0;  // in units of 2^-kMaxCodeLength
  for (int s = 0; s < kSymbols; ++s) {
    const int len = v.lengths[s];
    SLIMRT_CHECK_AS(
        ErrorCategory::kModelFile, len <= kMaxCodeLength,
        "DF11: code length " << len << " of exponent " << s << " exceeds " << kMaxCodeLength);
    if (len == 0) continue;
    ++distinct;
    kraft += uint64_t{1} << (kMaxCodeLength - len);
  }
  if (v.numel == 0) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, distinct == 0,
                    "DF11: empty tensor with " << distinct << " exponent codes");
  } else if (distinct == 1) {
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, kraft == (uint64_t{1} << (kMaxCodeLength - 1)),
                    "DF11: a single exponent code must have length 1");
  } else {
    SLIMRT_CHECK_AS(
        ErrorCategory::kModelFile, distinct > 1 && kraft == (uint64_t{1} << kMaxCodeLength),
        "DF11: code lengths do not form a complete prefix code ("
            << distinct << " codes, Kraft sum " << kraft << "/" << (1 << kMaxCodeLength) << ")");
  }
  const int64_t groups = v.groups();
  if (groups == 0) return;
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile,
                  v.index != nullptr && v.signmant != nullptr && v.bitstream != nullptr,
                  "DF11: missing arrays for " << v.numel << " elements");
  uint64_t previous_end = 0;  // first bit past the previous group's last lane start
  for (int64_t g = 0; g < groups; ++g) {
    const uint32_t* index = v.index + g * kIndexWords;
    const uint64_t base = uint64_t{index[0]} * 32;
    SLIMRT_CHECK_AS(
        ErrorCategory::kModelFile, base >= previous_end,
        "DF11: group " << g << " starts at bit " << base << ", inside the previous group");
    SLIMRT_CHECK_AS(
        ErrorCategory::kModelFile, lane_offset(index, 0) == 0,
        "DF11: group " << g << " lane 0 offset is " << lane_offset(index, 0) << ", not 0");
    uint32_t previous = 0;
    for (int lane = 1; lane < kLanes; ++lane) {
      const uint32_t offset = lane_offset(index, lane);
      SLIMRT_CHECK_AS(ErrorCategory::kModelFile, offset >= previous,
                      "DF11: group " << g << " lane " << lane << " offset runs backwards");
      previous = offset;
    }
    previous_end = base + previous;
    // FORMAT.md "Safe over-read": from its first bit B a lane may read up to word
    // ceil((B + 128 * 12) / 32) + 1, so the stream needs that plus one words.
    const uint64_t needed = (previous_end + kLaneElements * kMaxCodeLength + 31) / 32 + 2;
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, needed <= static_cast<uint64_t>(v.bitstream_words),
                    "DF11: bitstream of " << v.bitstream_words << " words is too short for group "
                                          << g << " (needs " << needed << ")");
  }
}

}  // namespace slimrt
