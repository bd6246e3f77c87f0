// ModelSource: what a model file or directory holds, read and checked, before the weight format
// is applied and the arena filled: the config, every tensor the model needs (pointing into the
// mapped files or into buffers converted on the way), the checksums of DF11 tensors and GGUF
// metadata. One reader per format; Model::load (model_loader.cpp) picks one.
//
//   ModelSource source = read_hf_dir("llama-dir", options);   // or read_gguf("model.gguf", ...)
//   ... source.tensors points into source's files and buffers: keep source alive ...
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mapped_file.h"
#include "slimrt/model.h"

namespace slimrt {

// The stored CRC-32 of a DF11 tensor's original bytes, and the file it came from (for errors).
struct Df11Checksum {
  uint32_t crc32 = 0;
  std::string file;
};

struct ModelSource {
  ModelConfig config;
  WeightMap tensors;  // Hugging Face names
  std::map<std::string, Df11Checksum> checksums;
  std::map<std::string, MetadataValue> metadata;
  std::string format;  // "hf", "slimrt" or "gguf"
  // One line, "PATH (what was read and how it was converted)"; Model::load adds how the
  // matrices are held inside the parentheses.
  std::string summary;
  // What `tensors` points into.
  std::vector<MappedFile> files;
  std::deque<std::vector<uint16_t>> bf16_buffers;
  std::deque<std::vector<float>> f32_buffers;
};

// A Hugging Face or slimrt directory: config.json and every *.safetensors shard.
ModelSource read_hf_dir(const std::string& path, const ModelOptions& options);
// A llama.cpp GGUF file of architecture "llama".
ModelSource read_gguf(const std::string& path, const ModelOptions& options);

}  // namespace slimrt
