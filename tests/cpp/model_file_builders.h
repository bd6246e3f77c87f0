// Model files built in memory, so a test can make one wrong in exactly one way, and checks of
// the exact errors the parsers raise for them.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check.h"

namespace slimrt::test {

using Bytes = std::vector<uint8_t>;

// Runs `parse` and expects slimrt::Error of `category` whose message is exactly `message`.
template <class Parse>
void expect_error(const Parse& parse, ErrorCategory category, const std::string& message) {
  try {
    parse();
    ADD_FAILURE() << "accepted; expected: " << message;
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), message);
    EXPECT_EQ(error_category_name(e.category()), std::string(error_category_name(category)))
        << e.message();
  }
}

template <class T>
void append_le(Bytes& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

// A safetensors file: 8-byte length (`length` or the header's size), header, `data_bytes` bytes
// of data (byte i is i % 251).
inline Bytes safetensors_bytes(const std::string& header, size_t data_bytes,
                               uint64_t length = UINT64_MAX) {
  Bytes out;
  append_le<uint64_t>(out, length == UINT64_MAX ? header.size() : length);
  out.insert(out.end(), header.begin(), header.end());
  for (size_t i = 0; i < data_bytes; ++i) out.push_back(static_cast<uint8_t>(i % 251));
  return out;
}

struct StoredTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  Bytes data;
};

// A safetensors file of these tensors, stored in the order given (so a test controls their
// alignment), the header padded with spaces to a multiple of 8 bytes as slimrt's writer does.
inline Bytes safetensors_file(const std::vector<StoredTensor>& tensors,
                              const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const StoredTensor& t : tensors) {
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  Bytes out = safetensors_bytes(text, 0);
  for (const StoredTensor& t : tensors) out.insert(out.end(), t.data.begin(), t.data.end());
  return out;
}

// A GGUF file, little-endian, written field by field as llama.cpp's gguf_write does.
class GgufBuilder {
 public:
  explicit GgufBuilder(uint32_t version = 3) : version_(version) {}

  GgufBuilder& u32(const std::string& key, uint32_t value) {
    key_header(key, 4);
    append_le(kv_, value);
    return *this;
  }
  GgufBuilder& f32(const std::string& key, float value) {
    key_header(key, 6);
    append_le(kv_, value);
    return *this;
  }
  GgufBuilder& str(const std::string& key, const std::string& value) {
    key_header(key, 8);
    string(kv_, value);
    return *this;
  }
  // A raw value: type id, then the bytes as given (for types and corruptions of any kind).
  GgufBuilder& raw(const std::string& key, uint32_t type, const Bytes& value) {
    key_header(key, type);
    kv_.insert(kv_.end(), value.begin(), value.end());
    return *this;
  }
  GgufBuilder& strings(const std::string& key, const std::vector<std::string>& values) {
    key_header(key, 9);
    append_le<uint32_t>(kv_, 8);
    append_le<uint64_t>(kv_, values.size());
    for (const auto& v : values) string(kv_, v);
    return *this;
  }
  template <class T>
  GgufBuilder& array(const std::string& key, uint32_t element_type, const std::vector<T>& values) {
    key_header(key, 9);
    append_le<uint32_t>(kv_, element_type);
    append_le<uint64_t>(kv_, values.size());
    for (const T& v : values) append_le(kv_, v);
    return *this;
  }
  // A tensor of `bytes` bytes; its data offset is the next aligned one unless given.
  GgufBuilder& tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                      uint64_t bytes, uint64_t offset = UINT64_MAX) {
    string(ti_, name);
    append_le<uint32_t>(ti_, static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) append_le(ti_, d);
    append_le(ti_, type);
    if (offset == UINT64_MAX) offset = (data_size_ + alignment_ - 1) / alignment_ * alignment_;
    append_le(ti_, offset);
    data_size_ = std::max(data_size_, offset + bytes);
    ++tensors_;
    return *this;
  }
  GgufBuilder& alignment(uint32_t a) {
    alignment_ = a;
    return u32("general.alignment", a);
  }

  // The file; without `data`, only the header, key-values and tensor infos (no padding either).
  Bytes bytes(bool data = true) const {
    Bytes out;
    append_le<uint32_t>(out, 0x46554747);
    append_le<uint32_t>(out, version_);
    append_le<uint64_t>(out, tensors_);
    append_le<uint64_t>(out, kvs_);
    out.insert(out.end(), kv_.begin(), kv_.end());
    out.insert(out.end(), ti_.begin(), ti_.end());
    if (!data) return out;
    while (out.size() % alignment_) out.push_back(0);
    for (uint64_t i = 0; i < data_size_; ++i) out.push_back(static_cast<uint8_t>(i * 7 + 1));
    return out;
  }

 private:
  static void string(Bytes& out, const std::string& s) {
    append_le<uint64_t>(out, s.size());
    out.insert(out.end(), s.begin(), s.end());
  }
  void key_header(const std::string& key, uint32_t type) {
    string(kv_, key);
    append_le(kv_, type);
    ++kvs_;
  }

  uint32_t version_;
  Bytes kv_, ti_;
  uint64_t kvs_ = 0, tensors_ = 0, data_size_ = 0, alignment_ = 32;
};

}  // namespace slimrt::test
