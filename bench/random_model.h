// A Llama-architecture model of given shapes with seeded N(0, 0.02) BF16 matrices and unit
// norms, made in memory through slimrt::Model::from_tensors: what `slimrt-bench decode-step`
// times when it is given shapes instead of a model file. Its tokens are noise; its cost per step
// is a real model's of the same shapes.
//
//   slimrt::ModelConfig config = random_model_config({});   // SmolLM2-135M's shapes
//   auto model = make_random_model(config, options, /*seed=*/1);
#pragma once

#include <cstdint>
#include <memory>

#include "slimrt/model.h"

namespace slimrt_bench {

struct RandomModelShape {
  int64_t vocab = 49152;  // SmolLM2-135M
  int64_t hidden = 576;
  int64_t intermediate = 1536;
  int64_t layers = 30;
  int64_t heads = 9;
  int64_t kv_heads = 3;
  int64_t head_dim = 64;
  int64_t max_position = 8192;
  bool tied = true;  // lm_head is the embedding table
};

// Throws UsageError naming the first shape the engine cannot run.
slimrt::ModelConfig random_model_config(const RandomModelShape& shape);

std::shared_ptr<const slimrt::Model> make_random_model(const slimrt::ModelConfig& config,
                                                       const slimrt::ModelOptions& options,
                                                       uint64_t seed);

// Bytes one decode step reads of the model's weights: every matrix of every layer and lm_head
// as stored (2 per weight in BF16, the compressed arrays in DF11), plus one embedding row per
// token (negligible, left out).
int64_t weight_bytes_per_step(const slimrt::Model& model);

}  // namespace slimrt_bench
