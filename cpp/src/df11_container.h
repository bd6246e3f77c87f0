// DF11 tensors stored in a safetensors file (docs/FORMAT.md, "Container: safetensors"): tensor
// NAME is the four arrays NAME.df11.lengths, .bitstream, .index and .signmant plus the JSON
// description __metadata__["slimrt.df11:NAME"].
//
//   SafetensorsHeader header = parse_safetensors(file.data(), file.size(), file.path());
//   for (const Df11Entry& e : read_df11_tensors(header, file.data(), file.path()))
//     df11_decode_cpu(e.view, out);   // e.view points into the file; validated
//
// Every defect throws slimrt::Error (kModelFile) "WHERE: tensor 'NAME': <problem>", worded as
// python/slimrt/df11.py words it.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "safetensors.h"
#include "slimrt/df11.h"

namespace slimrt {

struct Df11Entry {
  std::string name;  // the tensor's name (without the .df11.* suffixes)
  std::vector<int64_t> shape;
  Df11View view;       // pointers into the file's bytes; df11_validate()d
  uint32_t crc32 = 0;  // of the original BF16 bytes
};

// Every DF11 tensor of the parsed file whose bytes start at `data` (the buffer the header was
// parsed from), in the order their first array is stored. Plain tensors are not listed.
std::vector<Df11Entry> read_df11_tensors(const SafetensorsHeader& header, const uint8_t* data,
                                         const std::string& where);

}  // namespace slimrt
