// UTF-8 validation of untrusted text (a safetensors header, GGUF keys and tensor names), with
// the position and reason Python's decoder gives, so both halves word the error alike.
//
//   if (const Utf8Error e = find_invalid_utf8(text, size); e.reason != nullptr)
//     ... "not UTF-8 text (" << e.reason << " at byte " << e.position << ")"
#pragma once

#include <cstddef>

namespace slimrt {

struct Utf8Error {
  const char* reason = nullptr;  // null: the text is valid
  size_t position = 0;           // where the offending sequence starts
};

// "invalid start byte", "invalid continuation byte" or "unexpected end of data" (overlong forms,
// surrogates and code points past U+10FFFF are invalid, as in Python).
Utf8Error find_invalid_utf8(const char* text, size_t size);

}  // namespace slimrt
