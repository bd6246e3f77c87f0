#include "random_model.h"

#include <algorithm>
#include <string>
#include <vector>

#include "bench.h"
#include "model_impl.h"
#include "slimrt/error.h"

namespace slimrt_bench {

slimrt::ModelConfig random_model_config(const RandomModelShape& shape) {
  slimrt::ModelConfig c;
  c.architecture = slimrt::Architecture::kLlama;
  c.vocab_size = shape.vocab;
  c.hidden_size = shape.hidden;
  c.intermediate_size = shape.intermediate;
  c.num_layers = shape.layers;
  c.num_heads = shape.heads;
  c.num_kv_heads = shape.kv_heads;
  c.head_dim = shape.head_dim;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 100000.0;
  c.max_position_embeddings = shape.max_position;
  c.tie_word_embeddings = shape.tied;
  try {
    c.validate();
  } catch (const slimrt::Error& e) {
    throw UsageError(std::string("the model shape: ") + e.what());
  }
  return c;
}

std::shared_ptr<const slimrt::Model> make_random_model(const slimrt::ModelConfig& c,
                                                       const slimrt::ModelOptions& options,
                                                       uint64_t seed) {
  std::vector<std::vector<uint16_t>> matrices;
  std::vector<float> ones(static_cast<size_t>(std::max(c.hidden_size, c.head_dim)), 1.0f);
  matrices.reserve(static_cast<size_t>(2 + 7 * c.num_layers));
  slimrt::WeightMap map;
  const int threads = options.num_threads;
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols) {
    matrices.push_back(make_matrix(rows * cols, 0.02, seed + matrices.size(), threads));
    map[name] = slimrt::WeightTensor::bf16(matrices.back().data(), {rows, cols});
  };
  const int64_t H = c.hidden_size, Q = c.q_width(), KV = c.kv_width(), I = c.intermediate_size;
  matrix("model.embed_tokens.weight", c.vocab_size, H);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    map[p + "input_layernorm.weight"] = slimrt::WeightTensor::f32(ones.data(), {H});
    map[p + "post_attention_layernorm.weight"] = slimrt::WeightTensor::f32(ones.data(), {H});
    matrix(p + "self_attn.q_proj.weight", Q, H);
    matrix(p + "self_attn.k_proj.weight", KV, H);
    matrix(p + "self_attn.v_proj.weight", KV, H);
    matrix(p + "self_attn.o_proj.weight", H, Q);
    matrix(p + "mlp.gate_proj.weight", I, H);
    matrix(p + "mlp.up_proj.weight", I, H);
    matrix(p + "mlp.down_proj.weight", H, I);
  }
  map["model.norm.weight"] = slimrt::WeightTensor::f32(ones.data(), {H});
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, H);
  return slimrt::Model::from_tensors(c, map, options);
}

namespace {

int64_t matrix_bytes(const slimrt::Matrix& m) {
  if (!m.is_df11) return 2 * m.numel();
  return slimrt::df11::kSymbols + 4 * m.df11.bitstream_words +
         4 * m.df11.groups() * slimrt::df11::kIndexWords + m.df11.numel;
}

}  // namespace

int64_t weight_bytes_per_step(const slimrt::Model& model) {
  const slimrt::Weights& w = *model.impl().weights;
  int64_t bytes = matrix_bytes(w.lm_head());
  for (int64_t l = 0; l < w.num_layers(); ++l) {
    const slimrt::LayerWeights& layer = w.layer(l);
    for (const slimrt::Matrix* m :
         {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down}) {
      bytes += matrix_bytes(*m);
    }
  }
  return bytes;
}

}  // namespace slimrt_bench
