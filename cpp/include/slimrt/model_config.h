// ModelConfig: the shape of a Llama-family model (Llama, Mistral, Qwen2), as a Hugging Face
// config.json describes it.
//
// From config.json keys (what the Python bindings do with the dict they are given):
//
//   slimrt::ConfigMap map;
//   map["architectures"] = slimrt::ConfigValue::of_strings({"LlamaForCausalLM"});
//   map["hidden_size"] = slimrt::ConfigValue::of_int(4096);
//   map["rope_scaling"] = slimrt::ConfigValue::object();                       // nested object
//   map["rope_scaling.rope_type"] = slimrt::ConfigValue::of_string("llama3");  // its members
//   ...
//   slimrt::ModelConfig config = slimrt::ModelConfig::parse(map);  // HF defaults, validated
//
// Or fill the struct directly (every size must be set; there are no derived defaults here) and
// call config.validate(). Errors are slimrt::Error with the messages of docs/ENGINE_API.md.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace slimrt {

// One value of config.json. Nested objects are flattened: the object itself is recorded as
// kObject under its key and its members under "key.member". Values the runtime never reads as
// anything but "present" (lists of numbers, ...) are kOther, with their type name in `text`.
struct ConfigValue {
  enum class Kind { kNull, kBool, kInt, kFloat, kString, kStringList, kObject, kOther };
  Kind kind = Kind::kNull;
  bool boolean = false;
  int64_t integer = 0;
  double number = 0.0;
  std::string text;                  // kString; the type name for kOther
  std::vector<std::string> strings;  // kStringList

  static ConfigValue null() { return {}; }
  static ConfigValue of_bool(bool value);
  static ConfigValue of_int(int64_t value);
  static ConfigValue of_float(double value);
  static ConfigValue of_string(std::string value);
  static ConfigValue of_strings(std::vector<std::string> value);
  static ConfigValue object();
  static ConfigValue other(std::string type_name);
};

using ConfigMap = std::map<std::string, ConfigValue>;

enum class Architecture { kLlama, kMistral, kQwen2 };

// Llama 3.1's frequency-dependent RoPE scaling (rope_scaling.rope_type == "llama3").
struct RopeScaling {
  bool llama3 = false;  // false: plain RoPE
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  Architecture architecture = Architecture::kLlama;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 0;
  bool tie_word_embeddings = false;
  bool attention_bias = false;  // q/k/v projections carry biases
  bool o_proj_bias = false;     // o_proj carries one too (Llama's attention_bias; not Qwen2)
  int64_t sliding_window = 0;   // 0: full attention. Sequences may not grow past it.

  // Reads config.json keys with Hugging Face's defaults, then validate()s.
  static ModelConfig parse(const ConfigMap& map);

  // Throws "config: ..." naming the first field that cannot describe a runnable model.
  void validate() const;

  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }
  // Longest sequence the engine accepts: the position limit, and the sliding window if any
  // (attention is exact only while every token is inside the window).
  int64_t max_context() const;

  // RoPE inverse frequencies, head_dim / 2 of them, with llama3 scaling applied: the float32
  // values of Hugging Face's _compute_llama3_parameters (see model_config.cpp for the one
  // rounding step that may differ by 1 ulp).
  std::vector<float> rope_inv_freq() const;
};

const char* architecture_name(Architecture architecture);

}  // namespace slimrt
