#include "tensor_table.h"

#include "check.h"

namespace slimrt {
namespace {

// A layer holds at least its two norms and seven projections.
constexpr int64_t kMinTensorsPerLayer = 9;

}  // namespace

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (const int64_t d : shape) n *= d;
  return n;
}

std::vector<TensorSpec> model_tensors(const ModelConfig& config) {
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  const int64_t q = config.q_width();
  const int64_t kv = config.kv_width();
  std::vector<TensorSpec> specs;
  specs.reserve(config.num_layers * 15 + 3);
  auto add = [&](std::string name, std::string gguf, TensorRole role, int64_t layer,
                 std::vector<int64_t> shape, int64_t rope_heads = 0) {
    specs.push_back({std::move(name), std::move(gguf), role, layer, std::move(shape), rope_heads});
  };
  add("model.embed_tokens.weight", "token_embd.weight", TensorRole::kEmbedding, -1,
      {config.vocab_size, hidden});
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const std::string g = "blk." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", g + "attn_norm.weight", TensorRole::kInputNorm, i, {hidden});
    add(p + "self_attn.q_proj.weight", g + "attn_q.weight", TensorRole::kQ, i, {q, hidden},
        config.num_heads);
    add(p + "self_attn.k_proj.weight", g + "attn_k.weight", TensorRole::kK, i, {kv, hidden},
        config.num_kv_heads);
    add(p + "self_attn.v_proj.weight", g + "attn_v.weight", TensorRole::kV, i, {kv, hidden});
    if (config.attention_bias) {
      add(p + "self_attn.q_proj.bias", g + "attn_q.bias", TensorRole::kQBias, i, {q},
          config.num_heads);
      add(p + "self_attn.k_proj.bias", g + "attn_k.bias", TensorRole::kKBias, i, {kv},
          config.num_kv_heads);
      add(p + "self_attn.v_proj.bias", g + "attn_v.bias", TensorRole::kVBias, i, {kv});
    }
    if (config.qk_norm) {
      add(p + "self_attn.q_norm.weight", g + "attn_q_norm.weight", TensorRole::kQNorm, i,
          {config.head_dim});
      add(p + "self_attn.k_norm.weight", g + "attn_k_norm.weight", TensorRole::kKNorm, i,
          {config.head_dim});
    }
    add(p + "self_attn.o_proj.weight", g + "attn_output.weight", TensorRole::kO, i, {hidden, q});
    if (config.o_proj_bias) {
      add(p + "self_attn.o_proj.bias", g + "attn_output.bias", TensorRole::kOBias, i, {hidden});
    }
    add(p + "post_attention_layernorm.weight", g + "ffn_norm.weight", TensorRole::kPostNorm, i,
        {hidden});
    add(p + "mlp.gate_proj.weight", g + "ffn_gate.weight", TensorRole::kGate, i, {inter, hidden});
    add(p + "mlp.up_proj.weight", g + "ffn_up.weight", TensorRole::kUp, i, {inter, hidden});
    add(p + "mlp.down_proj.weight", g + "ffn_down.weight", TensorRole::kDown, i, {hidden, inter});
  }
  add("model.norm.weight", "output_norm.weight", TensorRole::kFinalNorm, -1, {hidden});
  // A tied checkpoint may still carry lm_head.weight (a copy): the embedding is what HF uses.
  if (!config.tie_word_embeddings) {
    add("lm_head.weight", "output.weight", TensorRole::kLmHead, -1, {config.vocab_size, hidden});
  }
  return specs;
}

void check_tensor_count(const ModelConfig& config, int64_t tensors_held, const std::string& where) {
  // num_layers is at most 2^31 (validate()), so the product cannot overflow.
  const int64_t needed = config.num_layers * kMinTensorsPerLayer + 2;
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, tensors_held >= needed,
                  where << ": config has " << config.num_layers << " layers, which need at least "
                        << needed << " tensors; it holds " << tensors_held);
}

bool is_unannounced_bias(const ModelConfig& config, const std::string& name) {
  const std::string prefix = "model.layers.";
  const std::string suffix = ".bias";
  if (name.size() < prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) {
    return false;
  }
  const bool qkv = name.find(".self_attn.q_proj.") != std::string::npos ||
                   name.find(".self_attn.k_proj.") != std::string::npos ||
                   name.find(".self_attn.v_proj.") != std::string::npos;
  const bool o = name.find(".self_attn.o_proj.") != std::string::npos;
  return !((qkv && config.attention_bias) || (o && config.o_proj_bias));
}

}  // namespace slimrt
