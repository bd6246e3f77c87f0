// config.json as parsed JSON -> ModelConfig: the one place where Hugging Face's defaults and
// each architecture's rules are applied. ModelConfig::from_json parses text and calls this; the
// GGUF loader builds the same keys from a file's metadata and calls it too.
//
//   ModelConfig config = config_from_json(parse_json(text, size, where, "config"));
#pragma once

#include <nlohmann/json.hpp>

#include "slimrt/model.h"

namespace slimrt {

// Throws "config: ..." (kModelFile, or kUnsupported for a model slimrt cannot run).
ModelConfig config_from_json(const nlohmann::ordered_json& root);

}  // namespace slimrt
