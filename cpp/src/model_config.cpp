#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

#include "check.h"
#include "config_json.h"
#include "json_reader.h"
#include "slimrt/model.h"

namespace slimrt {
namespace {

using json = nlohmann::ordered_json;

// Raises a config error: a value that cannot describe a model is a bad file (kModelFile);
// a variant slimrt does not implement is kUnsupported.
#define CONFIG_CHECK(cond, msg) SLIMRT_CHECK_AS(ErrorCategory::kModelFile, cond, msg)
#define CONFIG_SUPPORTED(cond, msg) SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, cond, msg)

std::string describe(const json& value) { return json_python_type(value); }

// Typed reads of config.json keys; "a.b" reads member b of object a. A key whose value is null
// counts as absent, as in HF's config classes (Mistral's "head_dim": null means "derive it").
class Reader {
 public:
  explicit Reader(const json& root) : root_(root) {}

  const json* find(const std::string& key) const {
    const json* node = &root_;
    size_t start = 0;
    while (true) {
      const size_t dot = key.find('.', start);
      const std::string part = key.substr(start, dot == std::string::npos ? dot : dot - start);
      if (!node->is_object()) return nullptr;
      const auto it = node->find(part);
      if (it == node->end()) return nullptr;
      node = &*it;
      if (dot == std::string::npos) break;
      start = dot + 1;
    }
    return node->is_null() ? nullptr : node;
  }

  int64_t integer(const std::string& key) const {
    const json* value = find(key);
    CONFIG_CHECK(value != nullptr, "config: missing required key " << key);
    return as_integer(key, *value);
  }
  int64_t integer(const std::string& key, int64_t fallback) const {
    const json* value = find(key);
    return value ? as_integer(key, *value) : fallback;
  }
  double number(const std::string& key) const {
    const json* value = find(key);
    CONFIG_CHECK(value != nullptr, "config: missing required key " << key);
    return as_number(key, *value);
  }
  double number(const std::string& key, double fallback) const {
    const json* value = find(key);
    return value ? as_number(key, *value) : fallback;
  }
  bool flag(const std::string& key, bool fallback) const {
    const json* value = find(key);
    if (!value) return fallback;
    CONFIG_CHECK(value->is_boolean(),
                 "config: " << key << " must be true or false, got " << describe(*value));
    return value->get<bool>();
  }
  const std::string* text(const std::string& key) const {
    const json* value = find(key);
    if (!value) return nullptr;
    CONFIG_CHECK(value->is_string(),
                 "config: " << key << " must be a string, got " << describe(*value));
    return value->get_ptr<const std::string*>();
  }

 private:
  static int64_t as_integer(const std::string& key, const json& value) {
    if (value.is_number_integer()) {
      // number_unsigned above int64 max does not fit the sizes read here.
      CONFIG_CHECK(
          !value.is_number_unsigned() ||
              value.get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
          "config: " << key << " is too large: " << value.dump());
      return value.get<int64_t>();
    }
    // JSON writers sometimes print integral sizes as 4096.0; accept those exactly.
    if (value.is_number_float()) {
      const double number = value.get<double>();
      if (std::isfinite(number) && number == std::floor(number) && std::fabs(number) < 9.0e15) {
        return static_cast<int64_t>(number);
      }
    }
    CONFIG_CHECK(false, "config: " << key << " must be an integer, got " << describe(value));
  }
  static double as_number(const std::string& key, const json& value) {
    CONFIG_CHECK(value.is_number(),
                 "config: " << key << " must be a number, got " << describe(value));
    return value.get<double>();
  }

  const json& root_;
};

Architecture parse_architecture(const Reader& reader) {
  const json* value = reader.find("architectures");
  CONFIG_CHECK(value != nullptr, "config: missing required key architectures");
  CONFIG_CHECK(value->is_array() && !value->empty() && value->front().is_string(),
               "config: architectures must be a non-empty list of strings");
  const std::string& name = value->front().get_ref<const std::string&>();
  if (name == "LlamaForCausalLM") return Architecture::kLlama;
  if (name == "MistralForCausalLM") return Architecture::kMistral;
  if (name == "Qwen2ForCausalLM") return Architecture::kQwen2;
  if (name == "Qwen3ForCausalLM") return Architecture::kQwen3;
  if (name == "Phi3ForCausalLM") return Architecture::kPhi3;
  if (name == "MixtralForCausalLM") return Architecture::kMixtral;
  if (name == "Qwen3MoeForCausalLM") return Architecture::kQwen3Moe;
  CONFIG_SUPPORTED(false, "unsupported architecture "
                              << name
                              << "; supported: LlamaForCausalLM, MistralForCausalLM, "
                                 "Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
                                 "MixtralForCausalLM, Qwen3MoeForCausalLM");
}

std::vector<double> numbers(const Reader& reader, const std::string& key) {
  const json* value = reader.find(key);
  CONFIG_CHECK(value != nullptr, "config: missing required key " << key);
  CONFIG_CHECK(value->is_array(),
               "config: " << key << " must be a list of numbers, got " << describe(*value));
  std::vector<double> out;
  for (const json& item : *value) {
    CONFIG_CHECK(item.is_number(),
                 "config: " << key << " must be a list of numbers, got an item " << describe(item));
    out.push_back(item.get<double>());
  }
  return out;
}

// transformers' _compute_longrope_parameters: Phi-3 keeps original_max_position_embeddings at
// the top level, where it wins over rope_scaling's; factor defaults to the ratio of the two
// context lengths and attention_factor to sqrt(1 + ln(factor) / ln(original)).
void parse_longrope(const Reader& reader, const std::string& prefix, ModelConfig& config) {
  RopeScaling& s = config.rope_scaling;
  s.longrope = true;
  s.short_factor = numbers(reader, prefix + "short_factor");
  s.long_factor = numbers(reader, prefix + "long_factor");
  const int64_t max_positions = reader.integer("max_position_embeddings");
  s.original_max_position_embeddings =
      reader.integer("original_max_position_embeddings",
                     reader.integer(prefix + "original_max_position_embeddings", max_positions));
  CONFIG_CHECK(s.original_max_position_embeddings > 0,
               "config: original_max_position_embeddings must be positive, got "
                   << s.original_max_position_embeddings);
  s.factor = reader.number(prefix + "factor",
                           static_cast<double>(max_positions) / s.original_max_position_embeddings);
  const double fallback =
      s.factor <= 1.0
          ? 1.0
          : std::sqrt(1 + std::log(s.factor) /
                              std::log(static_cast<double>(s.original_max_position_embeddings)));
  s.attention_factor = reader.number(prefix + "attention_factor", fallback);
}

// rope_theta and rope_scaling, from the classic keys or from the `rope_parameters` object that
// transformers v5 writes instead.
void parse_rope(const Reader& reader, ModelConfig& config) {
  const json* scaling = reader.find("rope_scaling");
  const json* parameters = reader.find("rope_parameters");
  CONFIG_CHECK(scaling == nullptr || scaling->is_object(),
               "config: rope_scaling must be an object or null, got " << describe(*scaling));
  std::string prefix;
  if (scaling != nullptr) {
    prefix = "rope_scaling.";
  } else if (parameters != nullptr && parameters->is_object()) {
    prefix = "rope_parameters.";
  }
  config.rope_theta =
      reader.number("rope_theta", prefix == "rope_parameters."
                                      ? reader.number("rope_parameters.rope_theta", 10000.0)
                                      : 10000.0);
  if (prefix.empty()) return;

  // Older configs spell rope_type as "type"; HF reads either.
  const std::string* type = reader.text(prefix + "rope_type");
  if (type == nullptr) type = reader.text(prefix + "type");
  CONFIG_CHECK(type != nullptr, "config: " << prefix << "rope_type is missing");
  if (*type == "default") return;
  // transformers' Phi3Config reads the older names "su" and "yarn" as longrope.
  const bool phi3 = config.architecture == Architecture::kPhi3;
  if (*type == "longrope" || (phi3 && (*type == "su" || *type == "yarn"))) {
    return parse_longrope(reader, prefix, config);
  }
  CONFIG_SUPPORTED(*type == "llama3", "unsupported rope_scaling type " << *type);
  RopeScaling& s = config.rope_scaling;
  s.llama3 = true;
  s.factor = reader.number(prefix + "factor");
  s.low_freq_factor = reader.number(prefix + "low_freq_factor");
  s.high_freq_factor = reader.number(prefix + "high_freq_factor");
  s.original_max_position_embeddings = reader.integer(prefix + "original_max_position_embeddings");
}

// Mixtral: num_local_experts experts of intermediate_size in every layer, always renormalised.
// Qwen3-MoE: num_experts (transformers v5 writes num_local_experts) of moe_intermediate_size,
// renormalised only with norm_topk_prob, in the layers decoder_sparse_step and mlp_only_layers
// leave sparse.
void parse_experts(const Reader& reader, ModelConfig& c) {
  if (c.architecture == Architecture::kMixtral) {
    c.num_experts = reader.integer("num_local_experts", 8);
    c.experts_per_token = reader.integer("num_experts_per_tok", 2);
    c.moe_intermediate_size = c.intermediate_size;
    c.norm_topk_prob = true;
    return;
  }
  if (c.architecture != Architecture::kQwen3Moe) return;
  c.num_experts = reader.integer("num_experts", reader.integer("num_local_experts", 128));
  c.experts_per_token = reader.integer("num_experts_per_tok", 8);
  c.moe_intermediate_size = reader.integer("moe_intermediate_size", 768);
  c.norm_topk_prob = reader.flag("norm_topk_prob", false);
  c.decoder_sparse_step = reader.integer("decoder_sparse_step", 1);
  const json* only = reader.find("mlp_only_layers");
  if (only == nullptr) return;
  CONFIG_CHECK(only->is_array(),
               "config: mlp_only_layers must be a list of layer numbers, got " << describe(*only));
  for (const json& item : *only) {
    CONFIG_CHECK(
        item.is_number_integer(),
        "config: mlp_only_layers must be a list of layer numbers, got an item " << describe(item));
    c.mlp_only_layers.push_back(item.get<int64_t>());
  }
}

// More layers than any model has; a per-layer table of this many entries is a few megabytes, so
// an absurd num_hidden_layers is refused before the table of windows is built (the loader
// refuses the rest once it knows how many tensors the file holds).
constexpr int64_t kMaxLayers = int64_t{1} << 20;

void check_layers(int64_t layers) {
  SLIMRT_CHECK(layers > 0 && layers <= kMaxLayers,
               "config: num_hidden_layers " << layers << " outside [1, " << kMaxLayers << "]");
}

// Which layers attend within a sliding window, as transformers decides: Mistral's, Mixtral's and
// Phi-3's every layer whenever sliding_window is set; Qwen2's, Qwen3's and Qwen3-MoE's only with
// use_sliding_window, then for Qwen2 and Qwen3 the layers that layer_types names
// "sliding_attention", or without layer_types those from max_window_layers (default 28) on
// (Qwen3-MoE: every layer). Llama has none. An absent sliding_window is the config class's
// default: 4096 for Mistral and the Qwens, none for Mixtral and Phi-3; null means none.
void parse_sliding_window(const json& root, const Reader& reader, ModelConfig& c) {
  const Architecture a = c.architecture;
  const bool qwen =
      a == Architecture::kQwen2 || a == Architecture::kQwen3 || a == Architecture::kQwen3Moe;
  const bool always =
      a == Architecture::kMistral || a == Architecture::kMixtral || a == Architecture::kPhi3;
  if (!always && !(qwen && reader.flag("use_sliding_window", false))) return;
  if (root.contains("sliding_window") && reader.find("sliding_window") == nullptr) return;
  const bool default_on = a == Architecture::kMistral || qwen;
  if (!default_on && !root.contains("sliding_window")) return;
  c.sliding_window = reader.integer("sliding_window", 4096);
  CONFIG_CHECK(c.sliding_window > 0,
               "config: sliding_window must be positive or null, got " << c.sliding_window);
  check_layers(c.num_layers);
  c.layer_windows.assign(c.num_layers, c.sliding_window);
  if (a != Architecture::kQwen2 && a != Architecture::kQwen3) return;
  const json* types = reader.find("layer_types");
  if (types == nullptr) {
    const int64_t first = reader.integer("max_window_layers", 28);
    for (int64_t l = 0; l < std::min(first, c.num_layers); ++l) c.layer_windows[l] = 0;
    return;
  }
  CONFIG_CHECK(
      types->is_array() && static_cast<int64_t>(types->size()) == c.num_layers,
      "config: layer_types must be a list of num_hidden_layers (" << c.num_layers << ") strings");
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const json& type = (*types)[l];
    const bool sliding =
        type.is_string() && type.get_ref<const std::string&>() == "sliding_attention";
    CONFIG_SUPPORTED(
        sliding || (type.is_string() && type.get_ref<const std::string&>() == "full_attention"),
        "config: layer_types[" << l << "] " << type.dump()
                               << " is not supported (full_attention or "
                                  "sliding_attention)");
    if (!sliding) c.layer_windows[l] = 0;
  }
}

void check_size(const char* key, int64_t value) {
  SLIMRT_CHECK(value > 0, "config: " << key << " must be positive, got " << value);
  // Kernels index rows and slots with 32-bit integers.
  SLIMRT_CHECK(value <= std::numeric_limits<int32_t>::max(),
               "config: " << key << " is too large: " << value);
}

}  // namespace

const char* architecture_name(Architecture architecture) {
  switch (architecture) {
    case Architecture::kLlama:
      return "LlamaForCausalLM";
    case Architecture::kMistral:
      return "MistralForCausalLM";
    case Architecture::kQwen2:
      return "Qwen2ForCausalLM";
    case Architecture::kQwen3:
      return "Qwen3ForCausalLM";
    case Architecture::kPhi3:
      return "Phi3ForCausalLM";
    case Architecture::kMixtral:
      return "MixtralForCausalLM";
    case Architecture::kQwen3Moe:
      return "Qwen3MoeForCausalLM";
  }
  return "?";
}

ModelConfig config_from_json(const json& root) {
  CONFIG_CHECK(root.is_object(), "config: not a JSON object");
  const Reader reader(root);
  ModelConfig c;
  c.architecture = parse_architecture(reader);
  c.vocab_size = reader.integer("vocab_size");
  c.hidden_size = reader.integer("hidden_size");
  c.intermediate_size = reader.integer("intermediate_size");
  c.num_layers = reader.integer("num_hidden_layers");
  c.num_heads = reader.integer("num_attention_heads");
  c.num_kv_heads = reader.integer("num_key_value_heads", c.num_heads);
  CONFIG_CHECK(c.num_heads > 0,
               "config: num_attention_heads must be positive, got " << c.num_heads);
  c.head_dim = reader.integer("head_dim", c.hidden_size / c.num_heads);
  c.rms_norm_eps = reader.number("rms_norm_eps");
  c.max_position_embeddings = reader.integer("max_position_embeddings");
  c.tie_word_embeddings = reader.flag("tie_word_embeddings", false);
  parse_rope(reader, c);

  // docs/ENGINE_API.md: attention_bias (default on for Qwen2) puts biases on q/k/v. In
  // Hugging Face's Llama it also puts one on o_proj; Qwen2 never has an o_proj bias.
  c.attention_bias = reader.flag("attention_bias", c.architecture == Architecture::kQwen2);
  c.o_proj_bias = c.architecture == Architecture::kLlama && c.attention_bias;
  // Qwen3 drops the biases (attention_bias defaults to false there, and when set, HF's Qwen3
  // puts one on o_proj too) and normalises q and k per head instead.
  if (c.architecture == Architecture::kQwen3) c.o_proj_bias = c.attention_bias;
  c.qk_norm = c.architecture == Architecture::kQwen3;

  if (c.architecture == Architecture::kQwen3Moe) {
    c.o_proj_bias = c.attention_bias;
    c.qk_norm = true;
  }
  c.fused_projections = c.architecture == Architecture::kPhi3;
  if (c.architecture == Architecture::kPhi3) {
    // Phi3Config has no attention_bias: its projections never carry biases.
    c.attention_bias = c.o_proj_bias = false;
  }
  parse_experts(reader, c);

  parse_sliding_window(root, reader, c);

  // Variants this runtime does not implement must fail here, never run silently wrong.
  const std::string* act = reader.text("hidden_act");
  CONFIG_SUPPORTED(
      act == nullptr || *act == "silu",
      "config: hidden_act " << *act << " is not supported (Llama-family models use silu)");
  CONFIG_SUPPORTED(!reader.flag("mlp_bias", false), "config: mlp_bias=true is not supported");
  // transformers v5 writes it inside rope_parameters too.
  for (const char* key : {"partial_rotary_factor", "rope_parameters.partial_rotary_factor"}) {
    const double partial = reader.number(key, 1.0);
    CONFIG_SUPPORTED(partial == 1.0, "config: " << key << " " << partial << " is not supported");
  }

  c.validate();
  return c;
}

ModelConfig ModelConfig::from_json(const std::string& json_text, const std::string& where) {
  // Strict: duplicate keys and deep nesting are refused, like every JSON slimrt reads.
  const json root = parse_json(json_text.data(), json_text.size(), where, "config");
  try {
    return config_from_json(root);
  } catch (const Error& e) {
    // validate() reports bad values as invalid arguments; read from a file, they are the file's.
    const ErrorCategory category =
        e.category() == ErrorCategory::kInvalidArgument ? ErrorCategory::kModelFile : e.category();
    throw Error(category, where + ": " + e.message());
  }
}

void ModelConfig::validate() const {
  check_size("vocab_size", vocab_size);
  check_size("hidden_size", hidden_size);
  check_size("intermediate_size", intermediate_size);
  check_size("num_hidden_layers", num_layers);
  check_size("num_attention_heads", num_heads);
  check_size("num_key_value_heads", num_kv_heads);
  check_size("head_dim", head_dim);
  check_size("max_position_embeddings", max_position_embeddings);
  SLIMRT_CHECK(num_heads % num_kv_heads == 0, "config: num_attention_heads ("
                                                  << num_heads
                                                  << ") must be a multiple of num_key_value_heads ("
                                                  << num_kv_heads << ")");
  SLIMRT_CHECK(head_dim % 2 == 0, "config: head_dim must be even for RoPE, got " << head_dim);
  SLIMRT_CHECK(std::isfinite(rms_norm_eps) && rms_norm_eps > 0,
               "config: rms_norm_eps must be positive, got " << rms_norm_eps);
  SLIMRT_CHECK(std::isfinite(rope_theta) && rope_theta > 0,
               "config: rope_theta must be positive, got " << rope_theta);
  SLIMRT_CHECK(sliding_window >= 0,
               "config: sliding_window must be positive or null, got " << sliding_window);
  if (rope_scaling.longrope) {
    const RopeScaling& s = rope_scaling;
    const size_t half = static_cast<size_t>(head_dim / 2);
    SLIMRT_CHECK(s.short_factor.size() == half && s.long_factor.size() == half,
                 "config: rope_scaling.short_factor and long_factor need head_dim / 2 = "
                     << half << " values each, got " << s.short_factor.size() << " and "
                     << s.long_factor.size());
    for (const std::vector<double>* factors : {&s.short_factor, &s.long_factor}) {
      for (const double f : *factors) {
        SLIMRT_CHECK(std::isfinite(f) && f > 0,
                     "config: rope_scaling factors must be positive, got " << f);
      }
    }
    SLIMRT_CHECK(
        std::isfinite(s.attention_factor) && s.attention_factor > 0,
        "config: rope_scaling.attention_factor must be positive, got " << s.attention_factor);
    SLIMRT_CHECK(s.original_max_position_embeddings > 0,
                 "config: original_max_position_embeddings must be positive, got "
                     << s.original_max_position_embeddings);
  }
  if (num_experts > 0) {
    check_size("num_experts", num_experts);
    check_size("num_experts_per_tok", experts_per_token);
    check_size("moe_intermediate_size", moe_intermediate_size);
    check_size("decoder_sparse_step", decoder_sparse_step);
    SLIMRT_CHECK(experts_per_token <= num_experts, "config: num_experts_per_tok ("
                                                       << experts_per_token
                                                       << ") exceeds the number of experts ("
                                                       << num_experts << ")");
  }
  SLIMRT_CHECK(
      layer_windows.empty() || static_cast<int64_t>(layer_windows.size()) == num_layers,
      "config: " << layer_windows.size() << " layer windows for " << num_layers << " layers");
  for (const int64_t window : layer_windows) {
    SLIMRT_CHECK(window >= 0 && window <= std::numeric_limits<int32_t>::max(),
                 "config: a layer's sliding window " << window << " is outside [0, 2^31)");
  }
  if (rope_scaling.llama3) {
    const RopeScaling& s = rope_scaling;
    SLIMRT_CHECK(std::isfinite(s.factor) && s.factor > 0,
                 "config: rope_scaling.factor must be positive, got " << s.factor);
    SLIMRT_CHECK(s.low_freq_factor > 0 && s.high_freq_factor > s.low_freq_factor &&
                     std::isfinite(s.high_freq_factor),
                 "config: rope_scaling needs 0 < low_freq_factor < high_freq_factor, got "
                     << s.low_freq_factor << " and " << s.high_freq_factor);
    SLIMRT_CHECK(s.original_max_position_embeddings > 0,
                 "config: rope_scaling.original_max_position_embeddings must be positive, got "
                     << s.original_max_position_embeddings);
  }
}

bool ModelConfig::moe_layer(int64_t layer) const {
  return num_experts > 0 && (layer + 1) % decoder_sparse_step == 0 &&
         std::find(mlp_only_layers.begin(), mlp_only_layers.end(), layer) == mlp_only_layers.end();
}

int64_t ModelConfig::layer_window(int64_t layer) const {
  return layer_windows.empty() ? 0 : layer_windows[layer];
}

int64_t ModelConfig::shared_window() const {
  if (layer_windows.empty()) return 0;
  return *std::min_element(layer_windows.begin(), layer_windows.end()) == 0
             ? 0
             : *std::max_element(layer_windows.begin(), layer_windows.end());
}

// Follows transformers' float32 arithmetic operation by operation (torch evaluates
// `2 * math.pi / inv_freq` as `inv_freq.reciprocal() * (2 * math.pi)`, and so on), so the
// values are HF's bit for bit except where torch's vectorized float32 pow is itself 1 ulp off
// the correctly rounded power this computes; that happens for about one frequency in a hundred.
std::vector<float> ModelConfig::rope_inv_freq(bool long_factors) const {
  const int64_t half = head_dim / 2;
  std::vector<float> inv_freq(half);
  const float dim = static_cast<float>(head_dim);
  const double base = static_cast<float>(rope_theta);
  const std::vector<double>& ext =
      long_factors ? rope_scaling.long_factor : rope_scaling.short_factor;
  for (int64_t i = 0; i < half; ++i) {
    const float exponent = static_cast<float>(2 * i) / dim;
    const float power = static_cast<float>(std::pow(base, static_cast<double>(exponent)));
    // longrope: 1 / (ext_factors * base ** (2i / dim)), in float32 as transformers has it.
    inv_freq[i] =
        rope_scaling.longrope ? 1.0f / (static_cast<float>(ext[i]) * power) : 1.0f / power;
  }
  if (!rope_scaling.llama3) return inv_freq;

  const RopeScaling& s = rope_scaling;
  const double old_context = static_cast<double>(s.original_max_position_embeddings);
  const float factor = static_cast<float>(s.factor);
  const float low = static_cast<float>(s.low_freq_factor);
  const float low_wavelen = static_cast<float>(old_context / s.low_freq_factor);
  const float high_wavelen = static_cast<float>(old_context / s.high_freq_factor);
  const float band = static_cast<float>(s.high_freq_factor - s.low_freq_factor);
  const float two_pi = static_cast<float>(2.0 * M_PI);
  for (float& f : inv_freq) {
    const float wavelen = (1.0f / f) * two_pi;
    if (wavelen > low_wavelen) {
      f = f / factor;  // long wavelengths: interpolate fully
    } else if (!(wavelen < high_wavelen)) {
      // The band in between blends the two smoothly.
      const float smooth = ((1.0f / wavelen) * static_cast<float>(old_context) - low) / band;
      f = (1.0f - smooth) * f / factor + smooth * f;
    }
  }
  return inv_freq;
}

}  // namespace slimrt
