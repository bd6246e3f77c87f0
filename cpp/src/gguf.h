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

namespace slimrt {

// GGUF metadata value type ids.
namespace gguf_type {
constexpr uint32_t kUint8 = 0, kInt8 = 1, kUint16 = 2, kInt16 = 3, kUint32 = 4, kInt32 = 5,
                   kFloat32 = 6, kBool = 7, kString = 8, kArray = 9, kUint64 = 10, kInt64 = 11,
                   kFloat64 = 12;
}  // namespace gguf_type

struct GgufValue {
  enum class Kind { kUint, kInt, kFloat, kBool, kString, kArray };
  Kind kind = Kind::kUint;
  uint32_t type = 0;  // the GGUF value type id of this value (for arrays: of its elements)
  uint64_t uint_value = 0;
  int64_t int_value = 0;
  double float_value = 0;
  bool bool_value = false;
  std::string string_value;
  // Arrays: one of these is filled, by element type. Strings as one blob + offsets (a 49k-entry
  // vocabulary must not become 49k heap strings): element i is blob[offsets[i], offsets[i+1]).
  std::vector<int64_t> ints;      // integer and bool elements (UINT64 ones as their bits)
  std::vector<double> floats;     // float elements
  std::string blob;               // string elements
  std::vector<uint64_t> offsets;  // string elements (offsets.size() == count + 1)
  uint64_t count = 0;             // array length
  // An array of arrays (gguf-py writes and reads them; one level of nesting only): the inner
  // arrays' elements, which must share one type, are stored flat as above (type, count and the
  // vectors describe the flat sequence) and inner array i is flat elements [rows[i], rows[i+1]).
  // Empty for every other value.
  std::vector<uint64_t> rows;

  std::string_view string_at(uint64_t i) const {
    return std::string_view(blob).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

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
