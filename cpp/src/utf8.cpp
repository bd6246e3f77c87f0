#include "utf8.h"

#include <cstdint>

namespace slimrt {

Utf8Error find_invalid_utf8(const char* text, size_t size) {
  const auto* s = reinterpret_cast<const uint8_t*>(text);
  size_t i = 0;
  while (i < size) {
    const uint8_t lead = s[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    int length = 0;
    uint8_t low = 0x80, high = 0xBF;  // the range of the second byte (RFC 3629's table)
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) low = 0xA0;   // overlong
      if (lead == 0xED) high = 0x9F;  // surrogates
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) low = 0x90;   // overlong
      if (lead == 0xF4) high = 0x8F;  // past U+10FFFF
    } else {
      return {"invalid start byte", i};
    }
    for (int k = 1; k < length; ++k) {
      if (i + k >= size) return {"unexpected end of data", i};
      const uint8_t byte = s[i + k];
      const bool in_range = k == 1 ? byte >= low && byte <= high : byte >= 0x80 && byte <= 0xBF;
      if (!in_range) return {"invalid continuation byte", i};
    }
    i += length;
  }
  return {};
}

}  // namespace slimrt
