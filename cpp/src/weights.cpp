#include "weights.h"

#include <cstring>
#include <sstream>

#include "check.h"
#include "cpu/bf16.h"

namespace slimrt {
namespace {

std::string format_shape(const std::vector<int64_t>& shape) {
  std::ostringstream out;
  out << "[";
  for (size_t i = 0; i < shape.size(); ++i) out << (i ? ", " : "") << shape[i];
  out << "]";
  return out.str();
}

const WeightTensor& find_tensor(const WeightMap& inputs, const std::string& name,
                                const std::vector<int64_t>& expected) {
  const auto it = inputs.find(name);
  SLIMRT_CHECK(it != inputs.end(), "missing tensor " << name);
  const WeightTensor& t = it->second;
  SLIMRT_CHECK(t.kind != WeightTensor::Kind::kUnsupported,
               "tensor " << name << ": unsupported dtype " << t.dtype
                         << "; expected uint16 (BF16 bits), float32 (1-D only) or DF11");
  SLIMRT_CHECK(t.shape == expected, "tensor " << name << " has shape " << format_shape(t.shape)
                                              << ", config expects " << format_shape(expected));
  return t;
}

}  // namespace

WeightTensor WeightTensor::bf16(const uint16_t* bits, std::vector<int64_t> shape) {
  WeightTensor t;
  t.kind = Kind::kBf16;
  t.data = bits;
  t.shape = std::move(shape);
  return t;
}

WeightTensor WeightTensor::f32(const float* values, std::vector<int64_t> shape) {
  WeightTensor t;
  t.kind = Kind::kF32;
  t.data = values;
  t.shape = std::move(shape);
  return t;
}

WeightTensor WeightTensor::compressed(const Df11View& view, std::vector<int64_t> shape) {
  WeightTensor t;
  t.kind = Kind::kDf11;
  t.df11 = view;
  t.shape = std::move(shape);
  return t;
}

WeightTensor WeightTensor::unsupported(std::string dtype, std::vector<int64_t> shape) {
  WeightTensor t;
  t.kind = Kind::kUnsupported;
  t.dtype = std::move(dtype);
  t.shape = std::move(shape);
  return t;
}

Weights::Weights(const ModelConfig& config, const WeightMap& inputs)
    : tied_(config.tie_word_embeddings), arena_("weights") {
  const int64_t hidden = config.hidden_size;
  const int64_t inter = config.intermediate_size;
  const int64_t q = config.q_width();
  const int64_t kv = config.kv_width();
  layers_.resize(config.num_layers);  // sized once: entries_ point into it

  // The order of docs/ENGINE_API.md's table, so the first problem reported is the first there.
  add_matrix(inputs, "model.embed_tokens.weight", config.vocab_size, hidden, embedding_);
  for (int64_t i = 0; i < config.num_layers; ++i) {
    LayerWeights& l = layers_[i];
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add_vector(inputs, p + "input_layernorm.weight", hidden, l.input_norm);
    add_matrix(inputs, p + "self_attn.q_proj.weight", q, hidden, l.q);
    add_matrix(inputs, p + "self_attn.k_proj.weight", kv, hidden, l.k);
    add_matrix(inputs, p + "self_attn.v_proj.weight", kv, hidden, l.v);
    if (config.attention_bias) {
      add_vector(inputs, p + "self_attn.q_proj.bias", q, l.q_bias);
      add_vector(inputs, p + "self_attn.k_proj.bias", kv, l.k_bias);
      add_vector(inputs, p + "self_attn.v_proj.bias", kv, l.v_bias);
    }
    add_matrix(inputs, p + "self_attn.o_proj.weight", hidden, q, l.o);
    if (config.o_proj_bias) add_vector(inputs, p + "self_attn.o_proj.bias", hidden, l.o_bias);
    add_vector(inputs, p + "post_attention_layernorm.weight", hidden, l.post_norm);
    add_matrix(inputs, p + "mlp.gate_proj.weight", inter, hidden, l.gate);
    add_matrix(inputs, p + "mlp.up_proj.weight", inter, hidden, l.up);
    add_matrix(inputs, p + "mlp.down_proj.weight", hidden, inter, l.down);
  }
  add_vector(inputs, "model.norm.weight", hidden, final_norm_);
  // A tied checkpoint may still carry lm_head.weight (a copy): the embedding is what HF uses.
  if (!tied_) add_matrix(inputs, "lm_head.weight", config.vocab_size, hidden, lm_head_);

  lay_out(nullptr);
}

void Weights::add_matrix(const WeightMap& inputs, const std::string& name, int64_t rows,
                         int64_t cols, Matrix& matrix) {
  // A named shape: GCC 13 warns (-Wdangling-reference) when a temporary is passed to a
  // function returning a reference, although the reference points into `inputs`.
  const std::vector<int64_t> shape{rows, cols};
  const WeightTensor& t = find_tensor(inputs, name, shape);
  SLIMRT_CHECK(t.kind != WeightTensor::Kind::kF32,
               "tensor " << name << ": float32 matrices are not accepted; cast to BF16 first");
  matrix.rows = rows;
  matrix.cols = cols;
  matrix.is_df11 = t.kind == WeightTensor::Kind::kDf11;
  if (matrix.is_df11) {
    const Df11View& view = t.df11;
    SLIMRT_CHECK(view.numel == rows * cols, "tensor " << name << ": DF11 data holds " << view.numel
                                                      << " elements, shape [" << rows << ", "
                                                      << cols << "] has " << rows * cols);
    SLIMRT_CHECK(view.lengths && view.bitstream && view.index && view.signmant,
                 "tensor " << name << ": DF11 view has a null array");
    try {
      df11_validate(view);
    } catch (const Error& e) {
      SLIMRT_CHECK(false, "tensor " << name << ": " << e.what());
    }
  } else {
    SLIMRT_CHECK(t.data != nullptr, "tensor " << name << ": null data");
  }
  entries_.push_back({&t, &matrix, nullptr});
}

void Weights::add_vector(const WeightMap& inputs, const std::string& name, int64_t size,
                         const float*& vector) {
  const std::vector<int64_t> shape{size};  // named, as in add_matrix
  const WeightTensor& t = find_tensor(inputs, name, shape);
  SLIMRT_CHECK(t.kind != WeightTensor::Kind::kDf11,
               "tensor " << name << ": DF11 is accepted for matrices only");
  SLIMRT_CHECK(t.data != nullptr, "tensor " << name << ": null data");
  entries_.push_back({&t, nullptr, &vector});
}

void Weights::load(Device& device) {
  arena_.reserve(&device, arena_.used());
  lay_out(&device);
  entries_.clear();
  entries_.shrink_to_fit();
}

void Weights::lay_out(Device* device) {
  const bool copy = device != nullptr;
  for (const Entry& e : entries_) {
    const WeightTensor& t = *e.input;
    if (e.vector != nullptr) {
      const int64_t n = t.shape[0];
      float* dst = arena_.allocate<float>(n);
      if (copy) {
        std::vector<float> values(n);  // load time: the widened copy of one small vector
        for (int64_t i = 0; i < n; ++i) {
          values[i] = t.kind == WeightTensor::Kind::kF32
                          ? static_cast<const float*>(t.data)[i]
                          : cpu::bf16_to_f32(static_cast<const uint16_t*>(t.data)[i]);
        }
        device->copy_to_device(dst, values.data(), n * static_cast<int64_t>(sizeof(float)));
      }
      *e.vector = dst;
      continue;
    }
    Matrix& m = *e.matrix;
    if (!m.is_df11) {
      uint16_t* dst = arena_.allocate<uint16_t>(m.numel());
      if (copy) device->copy_to_device(dst, t.data, m.numel() * 2);
      m.dense = dst;
      continue;
    }
    // DF11 stays compressed: its four arrays move into the arena as they are.
    const Df11View& src = t.df11;
    const int64_t index_words = src.groups() * df11::kIndexWords;
    auto* lengths = arena_.allocate<uint8_t>(df11::kSymbols);
    auto* bitstream = arena_.allocate<uint32_t>(src.bitstream_words);
    auto* index = arena_.allocate<uint32_t>(index_words);
    auto* signmant = arena_.allocate<uint8_t>(src.numel);
    if (copy) {
      device->copy_to_device(lengths, src.lengths, df11::kSymbols);
      device->copy_to_device(bitstream, src.bitstream, src.bitstream_words * 4);
      device->copy_to_device(index, src.index, index_words * 4);
      device->copy_to_device(signmant, src.signmant, src.numel);
    }
    m.df11.lengths = lengths;
    m.df11.bitstream = bitstream;
    m.df11.bitstream_words = src.bitstream_words;
    m.df11.index = index;
    m.df11.signmant = signmant;
    m.df11.numel = src.numel;
    if (copy) device->prepare_df11(m.df11);
  }
}

}  // namespace slimrt
