#include "tensor_table.h"

#include <limits>
#include <set>

#include "check.h"

namespace slimrt {
namespace {

// The fewest tensors of the model: a layer holds at least its two norms and seven projections
// (four when fused, Phi-3's); a MoE layer four attention projections, the router and three per
// expert. Saturates (a config may claim 2^31 layers of 2^31 experts).
int64_t min_tensors(const ModelConfig& config) {
  const int64_t dense_layer = config.fused_projections ? 6 : 9;
  int64_t moe_layers = 0;
  if (config.num_experts > 0) {
    moe_layers = config.num_layers / config.decoder_sparse_step;
    const std::set<int64_t> dense_only(config.mlp_only_layers.begin(),
                                       config.mlp_only_layers.end());
    for (const int64_t l : dense_only) {
      moe_layers -= l >= 0 && l < config.num_layers && (l + 1) % config.decoder_sparse_step == 0;
    }
  }
  const int64_t moe_layer = 7 + 3 * config.num_experts;  // num_experts <= 2^31 (validate())
  const int64_t dense = (config.num_layers - moe_layers) * dense_layer;
  if (moe_layers > 0 && moe_layer > (std::numeric_limits<int64_t>::max() - dense) / moe_layers) {
    return std::numeric_limits<int64_t>::max();
  }
  return dense + moe_layers * moe_layer + 2;
}

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
                 std::vector<int64_t> shape, int64_t rope_heads = 0, int64_t expert = -1) {
    specs.push_back(
        {std::move(name), std::move(gguf), role, layer, expert, std::move(shape), rope_heads});
  };
  add("model.embed_tokens.weight", "token_embd.weight", TensorRole::kEmbedding, -1,
      {config.vocab_size, hidden});
  for (int64_t i = 0; i < config.num_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    const std::string g = "blk." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", g + "attn_norm.weight", TensorRole::kInputNorm, i, {hidden});
    if (config.fused_projections) {
      add(p + "self_attn.qkv_proj.weight", g + "attn_qkv.weight", TensorRole::kQ, i,
          {q + 2 * kv, hidden});
    } else {
      add(p + "self_attn.q_proj.weight", g + "attn_q.weight", TensorRole::kQ, i, {q, hidden},
          config.num_heads);
      add(p + "self_attn.k_proj.weight", g + "attn_k.weight", TensorRole::kK, i, {kv, hidden},
          config.num_kv_heads);
      add(p + "self_attn.v_proj.weight", g + "attn_v.weight", TensorRole::kV, i, {kv, hidden});
    }
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
    if (config.moe_layer(i)) {
      // Hugging Face's per-expert names (Mixtral's w1 = gate, w3 = up, w2 = down), as the Hub's
      // checkpoints and transformers' save_pretrained write them. llama.cpp stacks the experts
      // into one 3-D tensor per kind (ffn_gate_exps), which no GGUF name here stands for.
      const bool mixtral = config.architecture == Architecture::kMixtral;
      const std::string moe = p + (mixtral ? "block_sparse_moe." : "mlp.");
      const int64_t expert_inter = config.moe_intermediate_size;
      add(moe + "gate.weight", g + "ffn_gate_inp.weight", TensorRole::kRouter, i,
          {config.num_experts, hidden});
      for (int64_t e = 0; e < config.num_experts; ++e) {
        const std::string x = moe + "experts." + std::to_string(e) + ".";
        add(x + (mixtral ? "w1.weight" : "gate_proj.weight"), "", TensorRole::kExpertGate, i,
            {expert_inter, hidden}, 0, e);
        add(x + (mixtral ? "w3.weight" : "up_proj.weight"), "", TensorRole::kExpertUp, i,
            {expert_inter, hidden}, 0, e);
        add(x + (mixtral ? "w2.weight" : "down_proj.weight"), "", TensorRole::kExpertDown, i,
            {hidden, expert_inter}, 0, e);
      }
    } else if (config.fused_projections) {
      add(p + "mlp.gate_up_proj.weight", g + "ffn_up.weight", TensorRole::kGate, i,
          {2 * inter, hidden});
      add(p + "mlp.down_proj.weight", g + "ffn_down.weight", TensorRole::kDown, i, {hidden, inter});
    } else {
      add(p + "mlp.gate_proj.weight", g + "ffn_gate.weight", TensorRole::kGate, i, {inter, hidden});
      add(p + "mlp.up_proj.weight", g + "ffn_up.weight", TensorRole::kUp, i, {inter, hidden});
      add(p + "mlp.down_proj.weight", g + "ffn_down.weight", TensorRole::kDown, i, {hidden, inter});
    }
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
  const int64_t needed = min_tensors(config);
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
