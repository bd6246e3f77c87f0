#include "repeat_layers.h"

#include "check.h"
#include "tensor_table.h"

namespace slimrt {

void repeat_layers(int64_t layers, const std::string& where, ModelConfig& config,
                   WeightMap& tensors, std::map<std::string, Df11Checksum>* checksums) {
  SLIMRT_CHECK_AS(ErrorCategory::kInvalidArgument, config.num_layers == 1,
                  where << ": repeat_layers=" << layers
                        << " needs a model with one decoder layer; it has " << config.num_layers);
  // Layer 0's name of each role; a role appears once per layer in the table.
  std::map<TensorRole, std::string> first;
  for (const TensorSpec& spec : model_tensors(config)) {
    if (spec.layer == 0) first[spec.role] = spec.name;
  }
  config.num_layers = layers;
  for (const TensorSpec& spec : model_tensors(config)) {
    if (spec.layer <= 0) continue;
    const std::string& source = first.at(spec.role);
    // A missing layer-0 tensor is reported by Weights, under its own name, before any copy's.
    const auto tensor = tensors.find(source);
    if (tensor != tensors.end()) tensors[spec.name] = tensor->second;
    if (checksums == nullptr) continue;
    const auto sum = checksums->find(source);
    if (sum != checksums->end()) (*checksums)[spec.name] = sum->second;
  }
}

std::string repeated_note(int64_t layers) {
  if (layers == 0) return "";
  return "; one layer copied into " + std::to_string(layers) + " (repeat_layers)";
}

}  // namespace slimrt
