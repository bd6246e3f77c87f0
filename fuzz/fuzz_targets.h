// What each fuzz target runs on one input, shared by the libFuzzer programs (fuzz_NAME.cpp) and
// the C++ tests, which run every file of fuzz/corpus/NAME through the same function
// (tests/cpp/test_fuzz_corpus.cpp): a seed must be accepted, a crasher found once must now be
// accepted or refused with slimrt::Error.
//
// Each function parses like the loader does and checks what the result promises beyond "no
// crash"; a bad input throws slimrt::Error, a broken promise aborts (a finding for libFuzzer).
// Byte ranges a parser hands out are proven inside the input by reading their first and last
// byte: ASan reports a read past the buffer libFuzzer allocated for exactly `size` bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "df11_container.h"
#include "gguf.h"
#include "safetensors.h"
#include "slimrt/df11.h"
#include "slimrt/model.h"

namespace slimrt::fuzz {

inline void touch_range(const uint8_t* data, size_t size, uint64_t begin, uint64_t end) {
  if (begin > end || end > size) std::abort();
  if (begin == end) return;
  volatile uint8_t sink = data[begin];
  sink = data[end - 1];
  (void)sink;
}

// The safetensors header and tensor table.
inline void safetensors(const uint8_t* data, size_t size) {
  const SafetensorsHeader header = parse_safetensors(data, size, "fuzz");
  for (const SafetensorsTensor& t : header.tensors) touch_range(data, size, t.begin, t.end);
}

// `count` elements of T from data[at...] into a vector of exactly that size; advances `at`.
template <class T>
std::vector<T> take(const uint8_t* data, size_t& at, size_t count) {
  std::vector<T> out(count);
  if (count) std::memcpy(out.data(), data + at, count * sizeof(T));
  at += count * sizeof(T);
  return out;
}

// DF11 tensors as a model directory reads them: the safetensors table, the JSON description,
// the arrays' dtypes, shapes and alignment, df11_validate, then a decode of each, which must
// stay inside the arrays the file holds.
inline void df11_file(const uint8_t* data, size_t size) {
  const SafetensorsHeader header = parse_safetensors(data, size, "fuzz");
  for (const Df11Entry& e : read_df11_tensors(header, data, "fuzz")) {
    std::vector<uint16_t> out(static_cast<size_t>(e.view.numel));
    df11_decode_cpu(e.view, out.data(), 1);
  }
}

// df11_validate and the CPU decoder on arrays taken straight from the input, so that mutations
// reach code lengths, lane offsets and bitstream without a container to get through first.
// Each array is copied into a buffer of exactly its size, so ASan catches a decoder that reads
// past one. Layout: 256 code lengths, a uint16 element count (little-endian), the index
// (groups x 17 uint32), the sign-mantissa bytes (one per element), then the bitstream (the
// rest, whole uint32 words). Inputs too short for their count are skipped.
inline void df11_arrays(const uint8_t* data, size_t size) {
  using namespace df11;
  if (size < kSymbols + 2) return;
  size_t at = 0;
  const std::vector<uint8_t> lengths = take<uint8_t>(data, at, kSymbols);
  Df11View view;
  view.numel = data[at] | data[at + 1] << 8;
  at += 2;
  const size_t index_words = static_cast<size_t>(view.groups()) * kIndexWords;
  if (size - at < index_words * 4 + static_cast<size_t>(view.numel)) return;
  const std::vector<uint32_t> index = take<uint32_t>(data, at, index_words);
  const std::vector<uint8_t> signmant = take<uint8_t>(data, at, static_cast<size_t>(view.numel));
  const std::vector<uint32_t> bitstream = take<uint32_t>(data, at, (size - at) / 4);
  view.lengths = lengths.data();
  view.index = index.data();
  view.signmant = signmant.data();
  view.bitstream = bitstream.data();
  view.bitstream_words = static_cast<int64_t>(bitstream.size());
  df11_validate(view);
  std::vector<uint16_t> out(static_cast<size_t>(view.numel));
  df11_decode_cpu(view, out.data(), 1);
}

// GGUF's header, metadata and tensor table.
inline void gguf(const uint8_t* data, size_t size) {
  const GgufFile file = parse_gguf(data, size, "fuzz");
  for (const GgufTensorInfo& t : file.tensors) touch_range(data, size, t.begin, t.end);
}

// config.json normalisation. A config that passes holds validate()'s rules. (Its sizes are
// not bounded here: a model's tensors must match them, and those are checked against the file.)
inline void config(const uint8_t* data, size_t size) {
  const ModelConfig c = ModelConfig::from_json(
      std::string(reinterpret_cast<const char*>(data), size), "fuzz/config.json");
  c.validate();
  if (c.max_context() <= 0) std::abort();
}

}  // namespace slimrt::fuzz
