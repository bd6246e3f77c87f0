// A tiny Llama-family model with seeded random weights, and the step helpers the engine tests
// share (test_engine.cpp against a double-precision reference, test_engine_cuda.cpp against
// the CPU backend).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "df11_test_data.h"
#include "slimrt/df11.h"
#include "slimrt/engine.h"

namespace slimrt::test {

inline double widen(uint16_t bits) {
  const uint32_t word = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &word, sizeof(f));
  return f;
}

enum class Variant {
  kLlama,   // GQA, untied lm_head, plain RoPE
  kQwen2,   // q/k/v biases (given as BF16), tied embeddings, hidden 96 (rows straddle DF11 groups)
  kLlama3,  // llama3 RoPE scaling that matters at short positions, attention_bias incl. o_proj
  kLlamaHead128,   // head_dim 128, 4 query heads per KV head: the shapes of Llama-3's attention
  kLlamaOddSizes,  // hidden 38, head_dim 10: q, k, v (and gate, up) sizes that break the arena's
                   // 64-byte alignment, so they are not back to back: separate matmuls
  kQwen3,          // per-head q/k RMSNorm before RoPE, no biases
  kLlamaWide,      // hidden 256, intermediate 768, q/k/v biases: widths the CUDA fused DF11
                   // matmul takes (multiples of 256), rows within groups and across them
};

// A tiny model with seeded random weights, kept as the caller would hand them over.
struct TinyModel {
  ModelConfig config;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, std::vector<uint16_t>> bf16;  // BF16 bit patterns
  std::map<std::string, std::vector<float>> f32;      // 1-D FP32 tensors
  std::map<std::string, Df11Tensor> df11;             // filled by compress()

  std::vector<double> values(const std::string& name) const {
    if (f32.count(name)) return {f32.at(name).begin(), f32.at(name).end()};
    std::vector<double> out;
    for (uint16_t b : bf16.at(name)) out.push_back(widen(b));
    return out;
  }
  bool has(const std::string& name) const { return shapes.count(name) > 0; }

  void compress(const std::function<bool(const std::string&)>& which) {
    for (const auto& [name, bits] : bf16) {
      if (shapes.at(name).size() == 2 && which(name)) {
        df11[name] = df11_compress(bits.data(), static_cast<int64_t>(bits.size()), {});
      }
    }
  }

  WeightMap weights() const {
    WeightMap map;
    for (const auto& [name, shape] : shapes) {
      if (df11.count(name)) {
        map[name] = WeightTensor::compressed(df11.at(name).view(), shape);
      } else if (f32.count(name)) {
        map[name] = WeightTensor::f32(f32.at(name).data(), shape);
      } else {
        map[name] = WeightTensor::bf16(bf16.at(name).data(), shape);
      }
    }
    return map;
  }
};

inline TinyModel make_model(Variant variant, uint32_t seed = 1234) {
  TinyModel m;
  ModelConfig& c = m.config;
  c.architecture = variant == Variant::kQwen2   ? Architecture::kQwen2
                   : variant == Variant::kQwen3 ? Architecture::kQwen3
                                                : Architecture::kLlama;
  c.qk_norm = variant == Variant::kQwen3;
  c.vocab_size = 97;
  c.hidden_size = variant == Variant::kQwen2           ? 96
                  : variant == Variant::kLlamaOddSizes ? 38
                  : variant == Variant::kLlamaWide     ? 256
                                                       : 64;
  c.num_heads = variant == Variant::kQwen2 ? 6 : 4;
  c.num_kv_heads = variant == Variant::kLlamaHead128 ? 1 : 2;
  c.head_dim = variant == Variant::kLlamaHead128    ? 128
               : variant == Variant::kLlamaOddSizes ? 10
               : variant == Variant::kLlamaWide     ? 64
                                                    : 16;
  c.intermediate_size = variant == Variant::kQwen2           ? 160
                        : variant == Variant::kLlamaOddSizes ? 100
                        : variant == Variant::kLlamaWide     ? 768
                                                             : 128;
  c.num_layers = 2;
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = variant == Variant::kQwen2;
  c.attention_bias =
      variant == Variant::kQwen2 || variant == Variant::kLlama3 || variant == Variant::kLlamaWide;
  c.o_proj_bias = variant == Variant::kLlama3;
  if (variant == Variant::kLlama3) {
    c.rope_theta = 500000.0;
    c.rope_scaling.llama3 = true;
    c.rope_scaling.factor = 8.0;
    c.rope_scaling.low_freq_factor = 1.0;
    c.rope_scaling.high_freq_factor = 4.0;
    c.rope_scaling.original_max_position_embeddings = 32;  // every band present at head_dim 16
  }
  c.validate();

  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto matrix = [&](const std::string& name, int64_t rows, int64_t cols, float scale) {
    std::vector<uint16_t> bits(rows * cols);
    for (auto& b : bits) b = to_bf16(normal(rng) * scale);
    m.shapes[name] = {rows, cols};
    m.bf16[name] = std::move(bits);
  };
  auto vector = [&](const std::string& name, int64_t n, float mean, float scale, bool as_bf16) {
    m.shapes[name] = {n};
    if (as_bf16) {
      std::vector<uint16_t> bits(n);
      for (auto& b : bits) b = to_bf16(mean + normal(rng) * scale);
      m.bf16[name] = std::move(bits);
    } else {
      std::vector<float> v(n);
      for (auto& x : v) x = mean + normal(rng) * scale;
      m.f32[name] = std::move(v);
    }
  };
  const int64_t H = c.hidden_size, Q = c.q_width(), KV = c.kv_width(), I = c.intermediate_size;
  const bool bf16_vectors = variant == Variant::kQwen2;  // exercises widening at load
  matrix("model.embed_tokens.weight", c.vocab_size, H, 1.0f);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    vector(p + "input_layernorm.weight", H, 1.0f, 0.1f, bf16_vectors);
    matrix(p + "self_attn.q_proj.weight", Q, H, 1.0f / std::sqrt(float(H)));
    matrix(p + "self_attn.k_proj.weight", KV, H, 1.0f / std::sqrt(float(H)));
    matrix(p + "self_attn.v_proj.weight", KV, H, 1.0f / std::sqrt(float(H)));
    if (c.attention_bias) {
      vector(p + "self_attn.q_proj.bias", Q, 0.0f, 0.2f, bf16_vectors);
      vector(p + "self_attn.k_proj.bias", KV, 0.0f, 0.2f, bf16_vectors);
      vector(p + "self_attn.v_proj.bias", KV, 0.0f, 0.2f, bf16_vectors);
    }
    matrix(p + "self_attn.o_proj.weight", H, Q, 1.0f / std::sqrt(float(Q)));
    if (c.o_proj_bias) vector(p + "self_attn.o_proj.bias", H, 0.0f, 0.2f, bf16_vectors);
    if (c.qk_norm) {
      vector(p + "self_attn.q_norm.weight", c.head_dim, 1.0f, 0.2f, bf16_vectors);
      vector(p + "self_attn.k_norm.weight", c.head_dim, 1.0f, 0.2f, bf16_vectors);
    }
    vector(p + "post_attention_layernorm.weight", H, 1.0f, 0.1f, bf16_vectors);
    matrix(p + "mlp.gate_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
    matrix(p + "mlp.up_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
    matrix(p + "mlp.down_proj.weight", H, I, 1.0f / std::sqrt(float(I)));
  }
  vector("model.norm.weight", H, 1.0f, 0.1f, bf16_vectors);
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, H, 1.0f / std::sqrt(float(H)));
  return m;
}

inline EngineOptions test_options(const std::string& kv_dtype = "f32") {
  EngineOptions o;
  o.max_batch = 4;
  o.kv_tokens = 256;
  o.page_size = 4;  // small pages: every prompt spans several, scattered by interleaving
  o.max_step_tokens = 64;
  o.kv_dtype = kv_dtype;
  o.memory_limit_bytes = int64_t{1} << 30;
  return o;
}

// The tensors as a Model on `device`, each matrix as given (BF16 or DF11), with the CPU
// kernels on 2 threads.
inline std::shared_ptr<const Model> tiny_model(const ModelConfig& config, const WeightMap& weights,
                                               const std::string& device = "cpu") {
  ModelOptions o;
  o.device = device;
  o.weights = "stored";
  o.num_threads = 2;
  o.memory_limit_bytes = int64_t{1} << 30;
  return Model::from_tensors(config, weights, o);
}

// One step: sequence ids[b] gets chunks[b]. Returns [B][vocab] logits.
inline std::vector<float> run_step(Engine& engine, const std::vector<int64_t>& ids,
                                   const std::vector<std::vector<int32_t>>& chunks) {
  std::vector<int32_t> tokens, counts;
  for (const auto& chunk : chunks) {
    tokens.insert(tokens.end(), chunk.begin(), chunk.end());
    counts.push_back(static_cast<int32_t>(chunk.size()));
  }
  StepInput in;
  in.seq_ids = ids.data();
  in.counts = counts.data();
  in.batch = static_cast<int64_t>(ids.size());
  in.tokens = tokens.data();
  in.num_tokens = static_cast<int64_t>(tokens.size());
  std::vector<float> logits(in.batch * engine.vocab_size());
  engine.step(in, logits.data());
  return logits;
}

inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

}  // namespace slimrt::test
