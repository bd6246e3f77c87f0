// The safetensors container: an 8-byte little-endian header length N, N bytes of JSON header,
// then the data section, which the header's tensors must cover exactly (as the official reader
// demands).
//
//   MappedFile file = MappedFile::open(path);
//   SafetensorsHeader header = parse_safetensors(file.data(), file.size(), path);
//   if (const SafetensorsTensor* t = header.find("lm_head.weight"))
//     use(file.data() + t->begin, t->end - t->begin);   // in bounds: checked against the size
//
// Every defect throws slimrt::Error (kModelFile) "WHERE: <problem>", worded as the Python
// reader (python/slimrt/safetensors_file.py) words it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace slimrt {

struct SafetensorsTensor {
  std::string name;
  std::string dtype;     // "BF16", "F32", ...: BOOL U8 I8 U16 I16 F16 BF16 U32 I32 F32 U64 I64
                         // F64 F8_E4M3 F8_E5M2 F8_E8M0
  int64_t itemsize = 0;  // bytes per element (1 for BOOL and the F8s)
  std::vector<int64_t> shape;
  int64_t numel = 0;
  uint64_t begin = 0, end = 0;  // absolute byte offsets in the file
};

struct SafetensorsHeader {
  std::vector<SafetensorsTensor> tensors;       // in the order of their data (sorted by begin)
  std::map<std::string, std::string> metadata;  // __metadata__
  uint64_t data_offset = 0;                     // 8 + header length

  // nullptr if absent. A linear search: build a map to look up many names.
  const SafetensorsTensor* find(const std::string& name) const;
};

// Parses and validates the header of the file data[0, size); reads only its first 8 + N bytes.
SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& where);

// Bytes per element of a safetensors dtype name; 0 for names the format does not define.
int64_t safetensors_itemsize(const std::string& dtype);

}  // namespace slimrt
