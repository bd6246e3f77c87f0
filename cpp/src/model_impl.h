// Model::Impl: what an Engine reads of its model. The device is shared: every engine made on
// this model allocates its own arenas from it and runs its steps there, one engine's step at a
// time (step_mutex), since backends keep per-device state (a thread pool, a stream, graphs).
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "device.h"
#include "slimrt/model.h"
#include "weights.h"

namespace slimrt {

struct Model::Impl {
  ModelConfig config;
  std::string device_name;
  std::string format;
  std::string summary;
  std::map<std::string, MetadataValue> metadata;
  // Declared before the weights, so that it is destroyed after them.
  std::shared_ptr<Device> device;
  std::unique_ptr<Weights> weights;
  mutable std::mutex step_mutex;
};

// The options a model is made with, checked, with "auto" resolved to a device name.
ModelOptions resolve_model_options(const ModelOptions& options);

// Makes the model's device, lays the weights out in its arena (after checking the budget) and
// copies `tensors` there. The tensors may be dropped once this returns.
std::shared_ptr<const Model> make_model(const ModelConfig& config, const WeightMap& tensors,
                                        const ModelOptions& options, std::string format,
                                        std::string summary,
                                        std::map<std::string, MetadataValue> metadata);

}  // namespace slimrt
