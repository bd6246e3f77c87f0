// The caps slimrt's C++ parsers put on sizes that come from untrusted bytes, where the file's
// own size is no bound (or too loose a one). docs/SECURITY.md lists them with the Python
// layer's (python/slimrt/input_limits.py). Every other size a file states is checked against
// the bytes that hold it before anything is allocated or looped over for it.
#pragma once

#include <cstddef>
#include <cstdint>

namespace slimrt::limits {

// A safetensors header: the official implementation's limit; a longer one is not safetensors.
constexpr uint64_t kSafetensorsHeaderBytes = 100'000'000;
// Nesting of any JSON slimrt parses (safetensors headers, DF11 descriptions, config.json):
// files nest a few levels; deeper ones are refused before a DOM is built (copying a value
// recurses once per level).
constexpr size_t kJsonDepth = 64;
// config.json is a few kilobytes; a file far larger is not one.
constexpr uint64_t kConfigBytes = 16 << 20;
// Elements of one GGUF metadata array. Each is decoded into 8 bytes (a 1-byte UINT8 element
// too), so the bytes left in the file bound it only loosely; the largest real arrays (a
// vocabulary, its merges) hold a few hundred thousand.
constexpr uint64_t kGgufArrayElements = 1 << 24;

}  // namespace slimrt::limits
