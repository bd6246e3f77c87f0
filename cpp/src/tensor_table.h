// The tensors of a Llama-family model, once: Hugging Face names, llama.cpp's GGUF names,
// shapes, and the place each takes in the engine's layer table. Every loader (safetensors
// directories, GGUF files, tensors handed over in memory) and the Weights class read it.
//
//   check_tensor_count(config, tensors_in_file, "model.gguf");   // before sizing anything
//   for (const TensorSpec& spec : model_tensors(config)) { ... spec.name, spec.shape ... }
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "slimrt/model.h"

namespace slimrt {

enum class TensorRole {
  kEmbedding,
  kInputNorm,
  kQ,
  kK,
  kV,
  kQBias,
  kKBias,
  kQNorm,  // per-head RMSNorm weights of q and k (ModelConfig::qk_norm), [head_dim] each
  kKNorm,
  kVBias,
  kO,
  kOBias,
  kPostNorm,
  kGate,
  kUp,
  kDown,
  kFinalNorm,
  kLmHead,
  kRouter,  // a MoE layer's [num_experts][hidden] gate
  kExpertGate,
  kExpertUp,
  kExpertDown,
};

struct TensorSpec {
  std::string name;       // Hugging Face
  std::string gguf_name;  // llama.cpp's converter
  TensorRole role = TensorRole::kEmbedding;
  int64_t layer = -1;   // -1 outside the layers
  int64_t expert = -1;  // kExpert*: which expert
  std::vector<int64_t> shape;
  // llama.cpp's converter permutes the rows of q and k (weights and biases) so that RoPE can
  // rotate adjacent pairs; a GGUF loader un-permutes them per head: this many heads (0: no).
  int64_t rope_heads = 0;

  bool matrix() const { return shape.size() == 2; }
  int64_t numel() const;
};

// Every tensor the engine needs for `config`, in the order of docs/ENGINE_API.md's table, so
// the first problem reported is the first there. The tied lm_head is left out. With
// fused_projections (Phi-3) the kQ tensor is qkv_proj, [q | k | v] rows, and the kGate tensor
// gate_up_proj, [gate | up]: the rows the engine multiplies in one matmul anyway, so they are
// used as they are; there is no kK, kV or kUp tensor. A MoE layer has kRouter and each expert's
// gate, up and down (in that order, so that each expert's gate and up lie back to back in the
// arena, and each is its own DF11 matrix) instead of kGate, kUp and kDown.
std::vector<TensorSpec> model_tensors(const ModelConfig& config);

// The fewest tensors a model with config.num_layers layers has. A source holding fewer than
// that (a config claiming a million layers) is refused before any per-layer table is built:
// "WHERE: config has N layers, which need at least M tensors; it holds K".
void check_tensor_count(const ModelConfig& config, int64_t tensors_held, const std::string& where);

// Whether `name` is a per-layer bias the config does not announce (an MLP bias, say): a model
// that has one computes something else than the engine would, so loaders refuse it.
bool is_unannounced_bias(const ModelConfig& config, const std::string& name);

}  // namespace slimrt
