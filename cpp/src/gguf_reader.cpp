// read_gguf: a llama.cpp GGUF file of architecture "llama", "qwen2" or "qwen3", mapped, its
// metadata turned into config.json keys (checked by the same rules as any config) and its tensors
// dequantized to BF16 under Hugging Face names: the model slimrt runs is the quantized model's
// values in BF16, not the original checkpoint.
#include <map>
#include <nlohmann/json.hpp>

#include "check.h"
#include "config_json.h"
#include "gguf.h"
#include "gguf_dequantize.h"
#include "model_source.h"
#include "quote.h"
#include "tensor_staging.h"
#include "tensor_table.h"

namespace slimrt {
namespace {

using json = nlohmann::ordered_json;

// A metadata value as JSON, for the config rules: numbers and strings as they are.
json as_json(const GgufValue& v) {
  switch (v.kind) {
    case GgufValue::Kind::kUint:
      return v.uint_value;
    case GgufValue::Kind::kInt:
      return v.int_value;
    case GgufValue::Kind::kFloat:
      return v.float_value;
    case GgufValue::Kind::kBool:
      return v.bool_value;
    case GgufValue::Kind::kString:
      return v.string_value;
    case GgufValue::Kind::kArray:
      return json::array();  // no config key is an array
  }
  return nullptr;
}

// GGUF general.architecture -> the Hugging Face class it was converted from. Only llama.cpp's
// "llama" converter permutes the rows of q and k for its RoPE; "qwen2" and "qwen3" keep HF's
// order (llama.cpp rotates them NeoX-style, as HF does).
struct GgufArchitecture {
  const char* gguf;
  const char* hf;
  bool permuted_qk;
};
constexpr GgufArchitecture kGgufArchitectures[] = {
    {"llama", "LlamaForCausalLM", true},
    {"qwen2", "Qwen2ForCausalLM", false},
    {"qwen3", "Qwen3ForCausalLM", false},
};

const GgufArchitecture& architecture_of(const GgufFile& file, const std::string& path) {
  const GgufValue* architecture = file.find("general.architecture");
  const std::string name = architecture && architecture->kind == GgufValue::Kind::kString
                               ? architecture->string_value
                               : "";
  const GgufArchitecture* found = nullptr;
  for (const GgufArchitecture& a : kGgufArchitectures) {
    if (name == a.gguf) found = &a;
  }
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, found != nullptr,
                  path << ": GGUF architecture '" << name
                       << "' is not supported; slimrt reads 'llama' (Llama, SmolLM, TinyLlama, "
                          "...), 'qwen2' and 'qwen3' GGUF files");
  return *found;
}

// config.json keys from the architecture's metadata (llama.*, qwen3.*, ...), then the config
// rules every model goes through.
ModelConfig config_of(const GgufFile& file, const GgufArchitecture& arch, const std::string& path) {
  const std::string where = path + " (GGUF metadata)";
  const std::string prefix = std::string(arch.gguf) + ".";
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, file.tensor("rope_freqs.weight") == nullptr,
                  path << ": GGUF has rope_freqs.weight (Llama 3.1 rope scaling), which slimrt "
                          "does not read from GGUF yet; load the Hugging Face directory instead");
  auto get = [&](const std::string& key) -> json {
    const GgufValue* v = file.find(prefix + key);
    return v ? as_json(*v) : json();
  };
  auto need = [&](const std::string& key) {
    const json v = get(key);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, !v.is_null(),
                    path << ": GGUF metadata lacks " << prefix << key);
    return v;
  };
  const json scaling = get("rope.scaling.type");
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported,
                  scaling.is_null() || (scaling.is_string() && scaling == "none"),
                  path << ": config: unsupported rope_scaling type "
                       << (scaling.is_string() ? scaling.get<std::string>() : scaling.dump()));

  json c;
  c["architectures"] = json::array({arch.hf});
  c["hidden_size"] = need("embedding_length");
  c["intermediate_size"] = need("feed_forward_length");
  c["num_hidden_layers"] = need("block_count");
  c["num_attention_heads"] = need("attention.head_count");
  c["num_key_value_heads"] = get("attention.head_count_kv");
  c["rms_norm_eps"] = need("attention.layer_norm_rms_epsilon");
  c["max_position_embeddings"] = need("context_length");
  c["rope_theta"] = get("rope.freq_base");
  // llama.cpp's converter leaves the output matrix out when it is the embedding.
  c["tie_word_embeddings"] = file.tensor("output.weight") == nullptr;
  c["attention_bias"] = file.tensor("blk.0.attn_q.bias") != nullptr;
  const json key_length = get("attention.key_length");
  if (!key_length.is_null()) c["head_dim"] = key_length;
  json vocab = get("vocab_size");
  if (vocab.is_null()) {
    const GgufValue* tokens = file.find("tokenizer.ggml.tokens");
    if (tokens != nullptr && tokens->kind == GgufValue::Kind::kArray) vocab = tokens->count;
  }
  c["vocab_size"] = vocab;
  ModelConfig config;
  try {
    config = config_from_json(c);
  } catch (const Error& e) {
    throw Error(e.category(), where + ": " + e.message());
  }
  const json value_length = get("attention.value_length");
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported,
                  value_length.is_null() || value_length == json(config.head_dim),
                  path << ": GGUF key_length and value_length differ; not supported");
  const json rope_dims = get("rope.dimension_count");
  SLIMRT_CHECK_AS(ErrorCategory::kUnsupported,
                  rope_dims.is_null() || rope_dims == json(config.head_dim),
                  path << ": rope covers " << rope_dims.dump() << " of " << config.head_dim
                       << " head dimensions; partial rope is not supported");
  return config;
}

}  // namespace

ModelSource read_gguf(const std::string& path, const ModelOptions& options) {
  ModelSource source;
  source.format = "gguf";
  source.files.push_back(MappedFile::open(path));
  const MappedFile& mapped = source.files.back();
  const GgufFile file = parse_gguf(mapped.data(), mapped.size(), path);
  const GgufArchitecture& arch = architecture_of(file, path);
  source.config = config_of(file, arch, path);
  const ModelConfig& config = source.config;
  check_tensor_count(config, static_cast<int64_t>(file.tensors.size()), path);

  const std::vector<TensorSpec> specs = model_tensors(config);
  std::map<std::string, const TensorSpec*> by_gguf_name;
  for (const TensorSpec& spec : specs) by_gguf_name[spec.gguf_name] = &spec;
  std::map<std::string, const GgufTensorInfo*> stored;
  int64_t total = 0;
  for (const GgufTensorInfo& t : file.tensors) {
    SLIMRT_CHECK_AS(
        ErrorCategory::kUnsupported, by_gguf_name.count(t.name),
        path << ": unexpected GGUF tensor " << t.name << " (not a " << arch.gguf << " tensor)");
    stored[t.name] = &t;
    total += t.numel * 2;
  }
  std::map<std::string, int64_t> converted;  // ggml type name -> matrices
  int64_t done = 0;
  for (const TensorSpec& spec : specs) {
    const auto it = stored.find(spec.gguf_name);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, it != stored.end(),
                    path << ": missing tensor " << spec.name << " (GGUF " << spec.gguf_name << ")");
    const GgufTensorInfo& t = *it->second;
    SLIMRT_CHECK_AS(
        ErrorCategory::kUnsupported, gguf_dequantize_supported(t.type),
        path << ": unsupported GGUF tensor type " << ggml_type_name(t.type) << " in " << t.name);
    // GGUF lists dimensions fastest-first; Hugging Face slowest-first.
    const std::vector<int64_t> shape(t.dims.rbegin(), t.dims.rend());
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, shape == spec.shape,
                    path << ": tensor " << t.name << " has shape " << list_repr(shape)
                         << ", config expects " << list_repr(spec.shape));
    const uint8_t* data = mapped.data() + t.begin;
    const int64_t rope_heads = arch.permuted_qk ? spec.rope_heads : 0;
    if (spec.matrix()) {
      source.tensors[spec.name] =
          stage_matrix(t.type, data, spec.shape, rope_heads, source, options.num_threads);
      ++converted[ggml_type_name(t.type)];
    } else {
      source.tensors[spec.name] = stage_vector(t.type, data, spec.shape[0], rope_heads, source);
    }
    done += t.numel * 2;
    if (options.progress) options.progress({"load", done, total});
  }
  for (const auto& [key, value] : file.metadata) source.metadata[key] = value;
  std::string types;
  for (const auto& [type, count] : converted) types += (types.empty() ? "" : "/") + type;
  source.summary = path + " (GGUF " + types + " dequantized to BF16)";
  return source;
}

}  // namespace slimrt
