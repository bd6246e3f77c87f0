// The weight format a model is asked for (ModelOptions::weights), applied to its matrices on
// the way into the arena: "df11" compresses BF16 matrices (multithreaded; a matrix whose DF11
// form would not be smaller stays BF16), "bf16" decodes DF11 ones, "stored" keeps each as it
// is. Vectors pass through.
//
//   WeightStaging staging;                          // owns what the conversions produce
//   WeightMap converted = to_weight_format(config, tensors, options, staging);
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "model_source.h"
#include "slimrt/model.h"

namespace slimrt {

struct WeightStaging {
  std::vector<std::unique_ptr<Df11Tensor>> compressed;
  std::vector<std::vector<uint16_t>> decoded;
};

// Throws "FILE: tensor NAME: CRC-32 mismatch (...): the file is corrupt" (kModelFile) unless
// `crc`, of the tensor's decoded bits, is the stored checksum.
void check_checksum(const std::string& name, const Df11Checksum& sum, uint32_t crc);

// `tensors` stays borrowed: the result points into it and into `staging`. A DF11 matrix decoded
// to BF16 is checked against its entry in `checksums`, if any. Reports progress in bytes of
// matrices converted, as stage "compress" or "decode".
WeightMap to_weight_format(const ModelConfig& config, const WeightMap& tensors,
                           const ModelOptions& options, WeightStaging& staging,
                           const std::map<std::string, Df11Checksum>* checksums = nullptr);

// How `tensors` (the result of to_weight_format) hold the model's matrices, for a summary:
// "BF16 weights", "DF11 weights", or "DF11 weights (N of M matrices; the rest BF16)".
std::string weights_held(const ModelConfig& config, const WeightMap& tensors);

}  // namespace slimrt
