// ModelConfig: config.json parsing with Hugging Face's defaults, the exact errors of
// docs/ENGINE_API.md, and RoPE inverse frequencies (llama3 scaling) against transformers.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "check.h"
#include "error_message.h"
#include "slimrt/model.h"

namespace slimrt {
namespace {

using nlohmann::json;

json llama_map() {
  json m;
  m["architectures"] = json::array({"LlamaForCausalLM"});
  m["vocab_size"] = 32000;
  m["hidden_size"] = 4096;
  m["intermediate_size"] = 11008;
  m["num_hidden_layers"] = 32;
  m["num_attention_heads"] = 32;
  m["rms_norm_eps"] = 1e-5;
  m["max_position_embeddings"] = 4096;
  m["torch_dtype"] = "bfloat16";  // unknown keys are ignored
  m["eos_token_id"] = json::array({2, 3});
  return m;
}

using test::error_message;

ModelConfig parse(const json& m) { return ModelConfig::from_json(m.dump(), "config.json"); }

std::string parse_error(const json& m) {
  return error_message([&] { parse(m); });
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

// Produced offline with transformers 5.23.0 and torch 2.13.0 (CPU):
//   LlamaRotaryEmbedding(LlamaConfig(hidden_size=4 * head_dim, num_attention_heads=4,
//       head_dim=head_dim, rope_theta=theta, rope_scaling=scaling)).inv_freq.numpy().view(uint32)
// Llama 3.1 8B: theta 500000, head_dim 128, llama3 factor 8, low 1, high 4, original 8192.
const uint32_t kLlama31[] = {
    0x3f800000, 0x3f508ac1, 0x3f29e1c6, 0x3f0a6384, 0x3ee177bc, 0x3eb7ab7d, 0x3e959ee3, 0x3e73c461,
    0x3e4693b0, 0x3e21c3a0, 0x3e03c6a0, 0x3dd6b19c, 0x3daee4ad, 0x3d8e7898, 0x3d681e67, 0x3d3d1684,
    0x3d1a08c8, 0x3cfaf53f, 0x3ccc6f49, 0x3ca68939, 0x3c87a9c3, 0x3c5d06ec, 0x3c340d6d, 0x3c12ac7f,
    0x3beef74f, 0x3bc2aa76, 0x3b9e9402, 0x3b812e35, 0x3b527720, 0x3b0dfd06, 0x3ab3d11d, 0x3a60979e,
    0x3a0995d2, 0x39a3f108, 0x393b2dd2, 0x38c86886, 0x38a3418d, 0x3884fdbf, 0x3858ac81, 0x38308199,
    0x380fc8f8, 0x37ea426f, 0x37bed4f4, 0x379b7475, 0x377d45c3, 0x374e51f5, 0x3728126b, 0x3708ea0f,
    0x36df10c4, 0x36b5b687, 0x369406cb, 0x36712b80, 0x36447610, 0x36200a69, 0x36025f34, 0x35d46808,
    0x35ad07a7, 0x358cf400, 0x3565a54d, 0x353b12c7, 0x351864a7, 0x34f848c2, 0x34ca41b0, 0x34a4c2ff,
};
// theta 10000, head_dim 16, llama3 factor 4, low 1, high 4, original 64: one frequency above
// the band, two inside it (smoothed), five below.
const uint32_t kSmallBands[] = {0x3f800000, 0x3e826136, 0x3cd09b89, 0x3c0186e3,
                                0x3b23d70a, 0x3a4f3e38, 0x3983126f, 0x38a5cb60};
// theta 10000, head_dim 64, no scaling.
const uint32_t kPlain[] = {
    0x3f800000, 0x3f3ff911, 0x3f0ff59a, 0x3ed7e89b, 0x3ea1e89b, 0x3e72d423, 0x3e361887, 0x3e088d77,
    0x3dcccccd, 0x3d99940d, 0x3d6655c2, 0x3d2cba15, 0x3d0186e3, 0x3cc2434f, 0x3c91ad39, 0x3c5a7bf2,
    0x3c23d70a, 0x3bf5b9b0, 0x3bb8449c, 0x3b8a2e77, 0x3b4f3e38, 0x3b1b690d, 0x3ae91528, 0x3aaec98e,
    0x3a83126f, 0x3a44948c, 0x3a136a16, 0x39dd1725, 0x39a5cb60, 0x3978a815, 0x393a7753, 0x390bd472,
};

// torch's vectorized float32 pow can be 1 ulp off the correctly rounded power slimrt uses
// (model_config.cpp); everything after it follows HF's float32 operations exactly, so the
// scaled values are allowed the same 1 ulp (positive floats: ulps = distance of bit patterns).
template <size_t N>
void expect_within_one_ulp(const std::vector<float>& got, const uint32_t (&want)[N]) {
  ASSERT_EQ(got.size(), N);
  int exact = 0;
  for (size_t i = 0; i < N; ++i) {
    const int64_t ulps = std::llabs(int64_t{bits_of(got[i])} - int64_t{want[i]});
    EXPECT_LE(ulps, 1) << "frequency " << i;
    exact += ulps == 0;
  }
  EXPECT_GE(exact, static_cast<int>(N) - 2) << "more than two frequencies differ from HF";
}

TEST(ModelConfig, FillsHuggingFaceDefaults) {
  const ModelConfig c = parse(llama_map());
  EXPECT_EQ(c.architecture, Architecture::kLlama);
  EXPECT_EQ(c.num_kv_heads, 32);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.rope_theta, 10000.0);
  EXPECT_FALSE(c.rope_scaling.llama3);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.sliding_window, 0);
  EXPECT_EQ(c.max_context(), 4096);
  EXPECT_FLOAT_EQ(static_cast<float>(c.rms_norm_eps), 1e-5f);
}

TEST(ModelConfig, NullMeansAbsentAndIntegralFloatsAreIntegers) {
  json m = llama_map();
  m["head_dim"] = nullptr;  // Mistral configs write this
  m["num_key_value_heads"] = 8.0;
  m["rope_scaling"] = nullptr;
  const ModelConfig c = parse(m);
  EXPECT_EQ(c.head_dim, 128);
  EXPECT_EQ(c.num_kv_heads, 8);
  EXPECT_FALSE(c.rope_scaling.llama3);
}

TEST(ModelConfig, Qwen2HasQkvBiasesByDefaultButNoOProjBias) {
  json m = llama_map();
  m["architectures"] = json::array({"Qwen2ForCausalLM"});
  m["sliding_window"] = 4096;  // ignored without use_sliding_window
  ModelConfig c = parse(m);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_FALSE(c.o_proj_bias);
  EXPECT_EQ(c.sliding_window, 0);
  m["use_sliding_window"] = true;
  c = parse(m);
  EXPECT_EQ(c.sliding_window, 4096);
}

TEST(ModelConfig, LlamaAttentionBiasAlsoBiasesOProj) {
  json m = llama_map();
  m["attention_bias"] = true;
  const ModelConfig c = parse(m);
  EXPECT_TRUE(c.attention_bias);
  EXPECT_TRUE(c.o_proj_bias);
}

TEST(ModelConfig, MistralSlidingWindowLimitsTheContext) {
  json m = llama_map();
  m["architectures"] = json::array({"MistralForCausalLM"});
  m["max_position_embeddings"] = 32768;
  m["sliding_window"] = 4096;
  EXPECT_EQ(parse(m).max_context(), 4096);
  m["sliding_window"] = nullptr;
  EXPECT_EQ(parse(m).max_context(), 32768);
}

TEST(ModelConfig, ErrorsUseTheContractMessages) {
  json m = llama_map();
  m["architectures"] = json::array({"GPT2LMHeadModel"});
  EXPECT_EQ(parse_error(m),
            "config.json: unsupported architecture GPT2LMHeadModel; supported: LlamaForCausalLM, "
            "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
            "MixtralForCausalLM, Qwen3MoeForCausalLM");

  m = llama_map();
  m.erase("hidden_size");
  EXPECT_EQ(parse_error(m), "config.json: config: missing required key hidden_size");

  m = llama_map();
  m["intermediate_size"] = 0;
  EXPECT_EQ(parse_error(m), "config.json: config: intermediate_size must be positive, got 0");

  m = llama_map();
  m["vocab_size"] = "32000";
  EXPECT_EQ(parse_error(m), "config.json: config: vocab_size must be an integer, got str");

  m = llama_map();
  m["num_key_value_heads"] = 5;
  EXPECT_EQ(parse_error(m),
            "config.json: config: num_attention_heads (32) must be a multiple of "
            "num_key_value_heads (5)");

  m = llama_map();
  m["rope_scaling"] = json::object();
  m["rope_scaling"]["rope_type"] = "yarn";
  m["rope_scaling"]["factor"] = 4.0;
  EXPECT_EQ(parse_error(m), "config.json: unsupported rope_scaling type yarn");

  m = llama_map();
  m["rope_scaling"] = json::object();
  m["rope_scaling"]["rope_type"] = "llama3";
  m["rope_scaling"]["factor"] = 8.0;
  EXPECT_EQ(parse_error(m),
            "config.json: config: missing required key rope_scaling.low_freq_factor");

  m = llama_map();
  m["hidden_act"] = "gelu";
  EXPECT_EQ(parse_error(m),
            "config.json: config: hidden_act gelu is not supported (Llama-family models use silu)");

  m = llama_map();
  m["architectures"] = json::array({1, 2});
  EXPECT_EQ(parse_error(m),
            "config.json: config: architectures must be a non-empty list of strings");
}

TEST(ModelConfig, FilledDirectlyIsValidatedToo) {
  ModelConfig c;
  c.vocab_size = 10;
  c.hidden_size = 8;
  c.intermediate_size = 16;
  c.num_layers = 1;
  c.num_heads = 2;
  c.num_kv_heads = 2;
  c.head_dim = 3;
  c.max_position_embeddings = 16;
  EXPECT_EQ(error_message([&] { c.validate(); }), "config: head_dim must be even for RoPE, got 3");
  c.head_dim = 4;
  EXPECT_NO_THROW(c.validate());
}

TEST(ModelConfig, Llama3RopeFrequenciesMatchTransformers) {
  json m = llama_map();
  m["rope_theta"] = 500000.0;
  m["rope_scaling"] = json::object();
  m["rope_scaling"]["rope_type"] = "llama3";
  m["rope_scaling"]["factor"] = 8.0;
  m["rope_scaling"]["low_freq_factor"] = 1.0;
  m["rope_scaling"]["high_freq_factor"] = 4.0;
  m["rope_scaling"]["original_max_position_embeddings"] = 8192;
  expect_within_one_ulp(parse(m).rope_inv_freq(), kLlama31);
}

TEST(ModelConfig, Llama3SmoothBandMatchesTransformers) {
  ModelConfig c = parse(llama_map());
  c.head_dim = 16;
  c.rope_scaling.llama3 = true;
  c.rope_scaling.factor = 4.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 64;
  expect_within_one_ulp(c.rope_inv_freq(), kSmallBands);
}

TEST(ModelConfig, PlainRopeFrequenciesMatchTransformers) {
  json m = llama_map();
  m["hidden_size"] = 64 * 32;
  expect_within_one_ulp(parse(m).rope_inv_freq(), kPlain);
}

TEST(ModelConfig, RopeParametersOfTransformersV5AreRead) {
  json m = llama_map();
  m["rope_parameters"] = json::object();
  m["rope_parameters"]["rope_type"] = "llama3";
  m["rope_parameters"]["rope_theta"] = 500000.0;
  m["rope_parameters"]["factor"] = 8.0;
  m["rope_parameters"]["low_freq_factor"] = 1.0;
  m["rope_parameters"]["high_freq_factor"] = 4.0;
  m["rope_parameters"]["original_max_position_embeddings"] = 8192;
  const ModelConfig c = parse(m);
  EXPECT_EQ(c.rope_theta, 500000.0);
  EXPECT_TRUE(c.rope_scaling.llama3);
  expect_within_one_ulp(c.rope_inv_freq(), kLlama31);
}

}  // namespace
}  // namespace slimrt
