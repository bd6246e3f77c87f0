// GGUF, llama.cpp's model file (versions 2 and 3, little-endian): a header, key-value
// metadata, tensor infos, then the tensors' data, each tensor at an aligned offset.
//
//   MappedFile file = MappedFile::open(path);
//   GgufFile gguf = parse_gguf(file.data(), file.size(), path);
//   const GgufValue* layers = gguf.find("llama.block_count");      // kUint, uint_value
//   const GgufTensorInfo* w = gguf.tensor("blk.0.attn_q.weight");
//   ggml_type_name(w->type);                                      // "Q4_1"
//   // w's bytes are file.data()[w->begin, w->end): in bounds, checked against the size.
//
// Every defect throws slimrt::Error (kModelFile) "WHERE: <problem>": "truncated at byte N:
// ..." for anything that would be read past the end, and every count is checked against the
// bytes left before anything is allocated for it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "slimrt/model.h"

namespace slimrt {

// GGUF metadata value type ids.
namespace gguf_type {
constexpr uint32_t kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
                   kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11,
                   kFloat64 = 12;
}  // namespace gguf_type

// A metadata value: the public slimrt::MetadataValue (slimrt/model.h), which Model::metadata()
// hands to the application as it is.
using GgufValue = MetadataValue;

struct GgufTensorInfo {
  std::string name;
  std::vector<int64_t> dims;  // as stored: fastest-varying first (GGUF order)
  uint32_t type = 0;          // ggml type id
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;  // absolute byte offsets of its data in the file
};

struct GgufFile {
  uint32_t version = 0;
  std::map<std::string, GgufValue> metadata;  // every key, general.alignment included
  std::vector<GgufTensorInfo> tensors;        // in file order
  uint64_t alignment = 32;
  uint64_t data_offset = 0;  // where the data section starts (aligned)

  const GgufValue* find(const std::string& key) const;  // nullptr if absent
  // nullptr if absent. A linear search: build a map to look up many names.
  const GgufTensorInfo* tensor(const std::string& name) const;
};

GgufFile parse_gguf(const uint8_t* data, size_t size, const std::string& where);

// ggml tensor types: name and block geometry (block_size elements in type_size bytes), for every
// id llama.cpp defines, so tensors of any type can be sized and named.
struct GgmlTypeInfo {
  const char* name;    // "Q4_1"
  int64_t block_size;  // elements per block
  int64_t type_size;   // bytes per block
};
const GgmlTypeInfo* ggml_type_info(uint32_t type);  // nullptr for unknown ids
// "Q4_1", or "type 99" for unknown ids (a thread-local buffer, valid for the next 7 calls).
const char* ggml_type_name(uint32_t type);
// The name of a GGUF metadata value type id: "UINT32", "STRING", ... (or "type 13").
const char* gguf_value_type_name(uint32_t type);

}  // namespace slimrt
