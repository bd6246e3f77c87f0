#include "weights.h"

#include <cstring>
#include <sstream>

#include "check.h"
#include "cpu/bf16.h"
#include "quote.h"

namespace slimrt {
namespace {

const WeightTensor& find_tensor(const WeightMap& inputs, const std::string& name,
                                const std::vector<int64_t>& expected) {
  const auto it = inputs.find(name);
  SLIMRT_CHECK(it != inputs.end(), "missing tensor " << name);
  const WeightTensor& t = it->second;
  SLIMRT_CHECK(t.kind != WeightTensor::Kind::kUnsupported,
               "tensor " << name << ": unsupported dtype " << t.dtype
                         << "; expected uint16 (BF16 bits), float32 (1-D only) or DF11");
  SLIMRT_CHECK(t.shape == expected, "tensor " << name << " has shape " << list_repr(t.shape)
                                              << ", config expects " << list_repr(expected));
  return t;
}

}  // namespace

void validate_df11_tensor(const Df11View& view, const std::string& name) {
  try {
    df11_validate(view);
  } catch (const Error& e) {
    SLIMRT_CHECK_AS(e.category(), false, "tensor " << name << ": " << e.message());
  }
}

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
  check_tensor_count(config, static_cast<int64_t>(inputs.size()), "weights");
  layers_.resize(config.num_layers);  // sized once: entries_ point into it
  for (int64_t l = 0; l < config.num_layers; ++l) {
    if (!config.moe_layer(l)) continue;
    layers_[l].expert_gate.resize(config.num_experts);
    layers_[l].expert_up.resize(config.num_experts);
    layers_[l].expert_down.resize(config.num_experts);
  }
  for (const TensorSpec& spec : model_tensors(config)) {
    LayerWeights* l = spec.layer >= 0 ? &layers_[spec.layer] : nullptr;
    switch (spec.role) {
      case TensorRole::kEmbedding:
        add_matrix(inputs, spec, embedding_);
        break;
      case TensorRole::kLmHead:
        add_matrix(inputs, spec, lm_head_);
        break;
      case TensorRole::kFinalNorm:
        add_vector(inputs, spec, final_norm_);
        break;
      case TensorRole::kInputNorm:
        add_vector(inputs, spec, l->input_norm);
        break;
      case TensorRole::kPostNorm:
        add_vector(inputs, spec, l->post_norm);
        break;
      case TensorRole::kQ:
        add_matrix(inputs, spec, l->q);
        break;
      case TensorRole::kK:
        add_matrix(inputs, spec, l->k);
        break;
      case TensorRole::kV:
        add_matrix(inputs, spec, l->v);
        break;
      case TensorRole::kO:
        add_matrix(inputs, spec, l->o);
        break;
      case TensorRole::kGate:
        add_matrix(inputs, spec, l->gate);
        break;
      case TensorRole::kUp:
        add_matrix(inputs, spec, l->up);
        break;
      case TensorRole::kDown:
        add_matrix(inputs, spec, l->down);
        break;
      case TensorRole::kQBias:
        add_vector(inputs, spec, l->q_bias);
        break;
      case TensorRole::kKBias:
        add_vector(inputs, spec, l->k_bias);
        break;
      case TensorRole::kVBias:
        add_vector(inputs, spec, l->v_bias);
        break;
      case TensorRole::kOBias:
        add_vector(inputs, spec, l->o_bias);
        break;
      case TensorRole::kQNorm:
        add_vector(inputs, spec, l->q_norm);
        break;
      case TensorRole::kKNorm:
        add_vector(inputs, spec, l->k_norm);
        break;
      case TensorRole::kRouter:
        add_matrix(inputs, spec, l->router);
        break;
      case TensorRole::kExpertGate:
        add_matrix(inputs, spec, l->expert_gate[spec.expert]);
        break;
      case TensorRole::kExpertUp:
        add_matrix(inputs, spec, l->expert_up[spec.expert]);
        break;
      case TensorRole::kExpertDown:
        add_matrix(inputs, spec, l->expert_down[spec.expert]);
        break;
    }
  }
  lay_out(nullptr);
}

const Matrix* Weights::find_matrix(const std::string& name) const {
  const auto it = matrices_by_name_.find(name);
  if (it != matrices_by_name_.end()) return it->second;
  return tied_ && name == "lm_head.weight" ? &embedding_ : nullptr;
}

std::pair<const float*, int64_t> Weights::find_vector(const std::string& name) const {
  const auto it = vectors_by_name_.find(name);
  if (it == vectors_by_name_.end()) return {nullptr, 0};
  return {*it->second.first, it->second.second};
}

void Weights::add_matrix(const WeightMap& inputs, const TensorSpec& spec, Matrix& matrix) {
  const std::string& name = spec.name;
  const int64_t rows = spec.shape[0], cols = spec.shape[1];
  const WeightTensor& t = find_tensor(inputs, name, spec.shape);
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
  } else {
    SLIMRT_CHECK(t.data != nullptr, "tensor " << name << ": null data");
  }
  entries_.push_back({&t, &matrix, nullptr});
  matrices_by_name_[name] = &matrix;
}

void Weights::add_vector(const WeightMap& inputs, const TensorSpec& spec, const float*& vector) {
  const std::string& name = spec.name;
  const WeightTensor& t = find_tensor(inputs, name, spec.shape);
  SLIMRT_CHECK(t.kind != WeightTensor::Kind::kDf11,
               "tensor " << name << ": DF11 is accepted for matrices only");
  SLIMRT_CHECK(t.data != nullptr, "tensor " << name << ": null data");
  entries_.push_back({&t, nullptr, &vector});
  vectors_by_name_[name] = {&vector, spec.shape[0]};
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
