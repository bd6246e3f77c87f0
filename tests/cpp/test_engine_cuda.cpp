// The CUDA backend against the CPU backend: the same tiny random models (from test_engine.cpp),
// the same steps (a batch of two sequences of different lengths: a prefill chunk, the rest of
// a prompt next to a decode, then decode steps), BF16 and F32 KV caches, dense and DF11
// weights. Logits must agree to a relative tolerance; sampled ids must be the CPU's.
// Skipped where no CUDA device is usable.
#include <gtest/gtest.h>

#include <algorithm>
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
#include "slimrt/df11_cuda.h"
#include "slimrt/engine.h"
#include "slimrt/error.h"

namespace slimrt {
namespace {

using test::to_bf16;

double widen(uint16_t bits) {
  const uint32_t word = uint32_t{bits} << 16;
  float f;
  std::memcpy(&f, &word, sizeof(f));
  return f;
}

enum class Variant {
  kLlama,   // GQA, untied lm_head, plain RoPE
  kQwen2,   // q/k/v biases (given as BF16), tied embeddings, hidden 96 (rows straddle DF11 groups)
  kLlama3,  // llama3 RoPE scaling that matters at short positions, attention_bias incl. o_proj
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

TinyModel make_model(Variant variant, uint32_t seed = 1234) {
  TinyModel m;
  ModelConfig& c = m.config;
  c.architecture = variant == Variant::kQwen2 ? Architecture::kQwen2 : Architecture::kLlama;
  c.vocab_size = 97;
  c.hidden_size = variant == Variant::kQwen2 ? 96 : 64;
  c.num_heads = variant == Variant::kQwen2 ? 6 : 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.intermediate_size = variant == Variant::kQwen2 ? 160 : 128;
  c.num_layers = 2;
  c.rms_norm_eps = 1e-5;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = variant == Variant::kQwen2;
  c.attention_bias = variant != Variant::kLlama;
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
    vector(p + "post_attention_layernorm.weight", H, 1.0f, 0.1f, bf16_vectors);
    matrix(p + "mlp.gate_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
    matrix(p + "mlp.up_proj.weight", I, H, 1.0f / std::sqrt(float(H)));
    matrix(p + "mlp.down_proj.weight", H, I, 1.0f / std::sqrt(float(I)));
  }
  vector("model.norm.weight", H, 1.0f, 0.1f, bf16_vectors);
  if (!c.tie_word_embeddings) matrix("lm_head.weight", c.vocab_size, H, 1.0f / std::sqrt(float(H)));
  return m;
}

EngineOptions test_options(const std::string& kv_dtype = "f32") {
  EngineOptions o;
  o.max_batch = 4;
  o.kv_tokens = 256;
  o.page_size = 4;  // small pages: every prompt spans several, scattered by interleaving
  o.max_step_tokens = 64;
  o.kv_dtype = kv_dtype;
  o.num_threads = 2;
  o.memory_limit_bytes = int64_t{1} << 30;
  return o;
}

// One step: sequence ids[b] gets chunks[b]. Returns [B][vocab] logits.
std::vector<float> run_step(Engine& engine, const std::vector<int64_t>& ids,
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

std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (auto& x : t) x = static_cast<int32_t>(rng() % vocab);
  return t;
}

// max |cpu - cuda| / max |cpu| over one step's logits.
double relative_diff(const std::vector<float>& cpu, const std::vector<float>& cuda) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    diff = std::max(diff, std::fabs(double(cpu[i]) - double(cuda[i])));
    scale = std::max(scale, std::fabs(double(cpu[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// FP32 activations and accumulation on both backends: they differ by summation order and
// exp/sin/cos implementations (~1e-6 of the largest logit), and with a BF16 KV cache by K/V
// values that round to neighbouring BF16 values (~1e-3). 1e-2 leaves margin; a wrong kernel
// is off by O(1).
constexpr double kTolerance = 1e-2;

// Two sequences: A (24 tokens) and B (7 tokens, then decodes), as the steps
// {A:16, B:7}, {A:8, B:1}, then 5 x {A:1, B:1} (and once {B:1, A:1}).
struct Steps {
  std::vector<std::vector<int32_t>> streams;
  std::vector<std::vector<std::pair<int, int>>> steps;
};

Steps two_sequences(int64_t vocab) {
  Steps s;
  s.streams = {random_tokens(24 + 6, vocab, 11), random_tokens(7 + 7, vocab, 12)};
  s.steps = {{{0, 16}, {1, 7}}, {{0, 8}, {1, 1}}, {{0, 1}, {1, 1}}, {{1, 1}, {0, 1}},
             {{0, 1}, {1, 1}},  {{0, 1}, {1, 1}}, {{0, 1}, {1, 1}}};
  return s;
}

// Runs the steps; returns each step's [batch][vocab] logits.
std::vector<std::vector<float>> run_steps(Engine& engine, const Steps& s) {
  std::vector<int64_t> ids;
  for (size_t i = 0; i < s.streams.size(); ++i) ids.push_back(engine.add_sequence());
  std::vector<size_t> consumed(s.streams.size(), 0);
  std::vector<std::vector<float>> out;
  for (const auto& step : s.steps) {
    std::vector<int64_t> step_ids;
    std::vector<std::vector<int32_t>> chunks;
    for (const auto& [seq, count] : step) {
      step_ids.push_back(ids[seq]);
      const auto& p = s.streams[seq];
      chunks.emplace_back(p.begin() + consumed[seq], p.begin() + consumed[seq] + count);
      consumed[seq] += count;
    }
    out.push_back(run_step(engine, step_ids, chunks));
  }
  return out;
}

EngineOptions options_for(const std::string& device, const std::string& kv_dtype) {
  EngineOptions o = test_options(kv_dtype);
  o.device = device;
  return o;
}

void expect_cuda_matches_cpu(const TinyModel& m, const std::string& kv_dtype,
                             const std::string& what) {
  SCOPED_TRACE(what + ", kv_dtype " + kv_dtype);
  const Steps s = two_sequences(m.config.vocab_size);
  Engine cpu(m.config, m.weights(), options_for("cpu", kv_dtype));
  Engine cuda(m.config, m.weights(), options_for("cuda", kv_dtype));
  EXPECT_EQ(cuda.memory().df11_scratch > 0, cpu.memory().df11_scratch > 0);
  const auto want = run_steps(cpu, s);
  const auto got = run_steps(cuda, s);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    for (float v : got[i]) ASSERT_TRUE(std::isfinite(v)) << "step " << i;
    EXPECT_LT(relative_diff(want[i], got[i]), kTolerance) << "step " << i;
  }
}

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device"

TEST(EngineCuda, LogitsMatchTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  for (Variant variant : {Variant::kLlama, Variant::kQwen2, Variant::kLlama3}) {
    const TinyModel m = make_model(variant);
    const std::string name = variant == Variant::kLlama   ? "llama"
                             : variant == Variant::kQwen2 ? "qwen2"
                                                          : "llama3";
    for (const std::string kv : {"f32", "bf16"}) expect_cuda_matches_cpu(m, kv, name);
  }
}

TEST(EngineCuda, Df11WeightsMatchTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  for (Variant variant : {Variant::kLlama, Variant::kQwen2}) {
    TinyModel m = make_model(variant);
    // Every matrix, the embedding (tied or not) and lm_head included.
    m.compress([](const std::string&) { return true; });
    const std::string name = variant == Variant::kLlama ? "llama df11" : "qwen2 df11";
    for (const std::string kv : {"f32", "bf16"}) expect_cuda_matches_cpu(m, kv, name);
  }
}

TEST(EngineCuda, Df11LogitsAreTheDenseLogits) {
  // DF11 is lossless: on one backend, compressed weights give the dense weights' logits.
  SKIP_WITHOUT_CUDA();
  TinyModel m = make_model(Variant::kQwen2);
  const Steps s = two_sequences(m.config.vocab_size);
  Engine dense(m.config, m.weights(), options_for("cuda", "bf16"));
  const auto expected = run_steps(dense, s);
  m.compress([](const std::string&) { return true; });
  Engine compressed(m.config, m.weights(), options_for("cuda", "bf16"));
  EXPECT_EQ(run_steps(compressed, s), expected);
}

TEST(EngineCuda, LargeDf11LmHeadInChunksMatchesTheCpuBackend) {
  // 70001 x 64: more than one 2^22-element chunk of lm_head, the last one partial.
  SKIP_WITHOUT_CUDA();
  TinyModel m = make_model(Variant::kLlama);
  m.config.vocab_size = 70001;
  m.config.num_layers = 1;
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t H = m.config.hidden_size;
  for (const std::string name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    std::vector<uint16_t> bits(m.config.vocab_size * H);
    const float scale = name == "lm_head.weight" ? 1.0f / std::sqrt(float(H)) : 1.0f;
    for (auto& b : bits) b = to_bf16(normal(rng) * scale);
    m.shapes[name] = {m.config.vocab_size, H};
    m.bf16[name] = std::move(bits);
  }
  for (auto it = m.shapes.begin(); it != m.shapes.end();) {
    if (it->first.rfind("model.layers.1.", 0) == 0) {
      m.bf16.erase(it->first);
      m.f32.erase(it->first);
      it = m.shapes.erase(it);
    } else {
      ++it;
    }
  }
  m.compress([](const std::string& name) { return name == "lm_head.weight"; });
  expect_cuda_matches_cpu(m, "bf16", "vocab 70001, df11 lm_head");
}

// Greedy and seeded sampling on the GPU draw the CPU's ids. Both engines get the same tokens
// (the CPU's draws) so that their inputs never diverge; greedy ids are compared where the
// CPU's top logit leads the runner-up by more than 5 % of the largest |logit|.
TEST(EngineCuda, SamplingDrawsTheCpuIds) {
  SKIP_WITHOUT_CUDA();
  const TinyModel m = make_model(Variant::kLlama);
  const int64_t V = m.config.vocab_size;
  for (const bool greedy : {true, false}) {
    SCOPED_TRACE(greedy ? "greedy" : "seeded");
    Engine logits_engine(m.config, m.weights(), options_for("cpu", "bf16"));
    Engine cpu(m.config, m.weights(), options_for("cpu", "bf16"));
    Engine cuda(m.config, m.weights(), options_for("cuda", "bf16"));
    std::vector<std::vector<int32_t>> next = {random_tokens(11, V, 21), random_tokens(4, V, 22)};
    std::vector<int64_t> ids_l, ids_c, ids_g;
    for (int i = 0; i < 2; ++i) {
      ids_l.push_back(logits_engine.add_sequence());
      ids_c.push_back(cpu.add_sequence());
      ids_g.push_back(cuda.add_sequence());
    }
    SamplingParams params[2];
    for (int b = 0; b < 2; ++b) {
      if (greedy) {
        params[b].temperature = 0.0f;
      } else {
        params[b].temperature = 0.9f;
        params[b].top_k = 40;
        params[b].top_p = 0.95f;
        params[b].seed = 77 + b;
      }
    }
    int compared = 0;
    for (int step = 0; step < 8; ++step) {
      std::vector<int32_t> tokens, counts;
      for (const auto& chunk : next) {
        tokens.insert(tokens.end(), chunk.begin(), chunk.end());
        counts.push_back(static_cast<int32_t>(chunk.size()));
      }
      const std::vector<float> logits = run_step(logits_engine, ids_l, next);
      auto sample = [&](Engine& engine, const std::vector<int64_t>& seq_ids) {
        StepInput in;
        in.seq_ids = seq_ids.data();
        in.counts = counts.data();
        in.batch = 2;
        in.tokens = tokens.data();
        in.num_tokens = static_cast<int64_t>(tokens.size());
        std::vector<int32_t> out(2, -1);
        engine.step(in, params, out.data());
        return out;
      };
      const std::vector<int32_t> want = sample(cpu, ids_c);
      const std::vector<int32_t> got = sample(cuda, ids_g);
      for (int b = 0; b < 2; ++b) {
        std::vector<float> row(logits.begin() + b * V, logits.begin() + (b + 1) * V);
        const float biggest = std::max(std::fabs(*std::max_element(row.begin(), row.end())),
                                       std::fabs(*std::min_element(row.begin(), row.end())));
        std::vector<float> sorted = row;
        std::sort(sorted.begin(), sorted.end(), std::greater<float>());
        const bool clear = sorted[0] - sorted[1] > 0.05f * biggest;
        if (greedy) {
          const int32_t argmax =
              static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
          EXPECT_EQ(want[b], argmax) << "step " << step << " row " << b;
          if (!clear) continue;
        }
        EXPECT_EQ(got[b], want[b]) << "step " << step << " row " << b;
        ++compared;
      }
      next = {{want[0]}, {want[1]}};
    }
    EXPECT_GT(compared, 0);
  }
}

TEST(EngineCuda, ReportsItsDeviceMemory) {
  SKIP_WITHOUT_CUDA();
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions o = options_for("cuda", "bf16");
  o.memory_limit_bytes = 0;  // what the GPU has free
  Engine engine(m.config, m.weights(), o);
  EXPECT_GT(engine.memory().total(), 0);
  const int64_t seq = engine.add_sequence();
  const std::vector<float> logits = run_step(engine, {seq}, {random_tokens(5, 97, 5)});
  for (float v : logits) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace slimrt
