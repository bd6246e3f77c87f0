// Model: the weight formats a model is made in, reading its tensors back, one model shared by
// engines, and sizes refused before anything is built from them.
#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "error_message.h"
#include "slimrt/engine.h"
#include "slimrt/error.h"
#include "slimrt/model.h"
#include "tiny_engine_model.h"

namespace slimrt {
namespace {

using test::make_model;
using test::random_tokens;
using test::run_step;
using test::test_options;
using test::TinyModel;
using test::Variant;

using test::error_message;

ModelOptions options(const std::string& weights) {
  ModelOptions o;
  o.weights = weights;
  o.num_threads = 2;
  return o;
}

TEST(Model, Df11WeightsAreCompressedOnTheWayInAndReadBackBitExact) {
  const TinyModel m = make_model(Variant::kQwen2);  // tied embeddings, biases
  const auto dense = Model::from_tensors(m.config, m.weights(), options("bf16"));
  const auto compressed = Model::from_tensors(m.config, m.weights(), options("df11"));
  EXPECT_EQ(dense->df11_matrices(), 0);
  // Every matrix of 2 layers (7 each) and the tied embedding.
  EXPECT_EQ(compressed->df11_matrices(), 2 * 7 + 1);
  EXPECT_LT(compressed->weight_bytes(), dense->weight_bytes());
  for (const std::string name :
       {"model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.down_proj.weight"}) {
    const std::string source = name == "lm_head.weight" ? "model.embed_tokens.weight" : name;
    EXPECT_EQ(compressed->matrix_bf16(name), m.bf16.at(source)) << name;
    EXPECT_EQ(dense->matrix_bf16(name), m.bf16.at(source)) << name;
  }
  EXPECT_EQ(compressed->vector_f32("model.layers.0.self_attn.q_proj.bias"),
            dense->vector_f32("model.layers.0.self_attn.q_proj.bias"));
  Engine a(dense, test_options("bf16")), b(compressed, test_options("bf16"));
  const std::vector<int32_t> prompt = random_tokens(13, m.config.vocab_size, 4);
  EXPECT_EQ(run_step(b, {b.add_sequence()}, {prompt}), run_step(a, {a.add_sequence()}, {prompt}));
  EXPECT_EQ(error_message([&] { dense->matrix_bf16("model.norm.weight"); }),
            "no matrix named model.norm.weight");
  EXPECT_EQ(error_message([&] { dense->vector_f32("nope"); }), "no vector named nope");
}

TEST(Model, Bf16WeightsDecodeDf11InputsAndStoredKeepsThem) {
  TinyModel m = make_model(Variant::kLlama);
  m.compress([](const std::string& name) { return name.find("mlp") != std::string::npos; });
  EXPECT_EQ(Model::from_tensors(m.config, m.weights(), options("bf16"))->df11_matrices(), 0);
  const auto stored = Model::from_tensors(m.config, m.weights(), options("stored"));
  EXPECT_EQ(stored->df11_matrices(), 2 * 3);
  EXPECT_EQ(stored->matrix_bf16("model.layers.0.mlp.up_proj.weight"),
            m.bf16.at("model.layers.0.mlp.up_proj.weight"));
  EXPECT_EQ(stored->format(), "tensors");
  EXPECT_EQ(stored->device(), "cpu");
  EXPECT_TRUE(stored->metadata().empty());
}

TEST(Model, ALayerCountTheTensorsCannotHoldIsRefusedBeforeAnyTableIsBuilt) {
  const TinyModel m = make_model(Variant::kLlama);
  ModelConfig huge = m.config;
  huge.num_layers = 1000000;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_message([&] { Model::from_tensors(huge, m.weights(), options("bf16")); }),
            "tensors: config has 1000000 layers, which need at least 9000002 tensors; it holds " +
                std::to_string(m.weights().size()));
  // Refused from the counts alone: no per-layer table of a million entries was built first.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(500));
}

TEST(Model, ErrorsCarryTheirCategory) {
  auto category = [](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return std::string(error_category_name(e.category()));
    }
    return std::string("<no error>");
  };
  const TinyModel m = make_model(Variant::kLlama);
  EXPECT_EQ(category([&] { ModelConfig::from_json("{\"architectures\": [\"Gpt\"]}", "c"); }),
            "unsupported");
  EXPECT_EQ(category([&] { ModelConfig::from_json("{\"architectures\": ", "c"); }), "model file");
  EXPECT_EQ(error_message([&] { ModelConfig::from_json("{\"architectures\": ", "c.json"); }),
            "c.json: config is not valid JSON: syntax error while parsing value - unexpected end "
            "of input; expected '[', '{', or a literal at byte 18");
  EXPECT_EQ(error_message([&] { ModelConfig::from_json("{\"a\": 1, \"a\": 2}", "c.json"); }),
            "c.json: config lists 'a' twice");
  ModelOptions tight = options("bf16");
  tight.memory_limit_bytes = 1000;
  EXPECT_EQ(category([&] { Model::from_tensors(m.config, m.weights(), tight); }), "out of memory");
  EXPECT_EQ(error_message([&] {
              Model::from_tensors(m.config, m.weights(), tight);
            }).rfind("not enough memory: weights ", 0),
            0u);
  EXPECT_EQ(category([&] { Model::from_tensors(m.config, {}, options("bf16")); }), "model file");
}

}  // namespace
}  // namespace slimrt
