// Weights: the model's tensors in the weights arena, per layer, as the executor reads them.
// Matrices stay as given: dense BF16, or DF11 arrays that the executor decodes into scratch
// just before use. Norm weights and biases are stored as FP32 (BF16 inputs are widened).
//
//   Weights weights(config, inputs);   // checks names, shapes, dtypes; measures the arena
//   plan.weights = weights.bytes_needed();
//   weights.load(device);               // reserves the arena and copies; inputs may go now
//   weights.layer(3).q.dense ...
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "arena.h"
#include "device.h"
#include "slimrt/model.h"
#include "tensor_table.h"

namespace slimrt {

// A [rows][cols] BF16 matrix in the weights arena: dense bits, or DF11 arrays (is_df11).
struct Matrix {
  int64_t rows = 0;
  int64_t cols = 0;
  bool is_df11 = false;
  const uint16_t* dense = nullptr;
  Df11View df11;
  int64_t numel() const { return rows * cols; }
};

struct LayerWeights {
  // With fused_projections (Phi-3) q holds q|k|v and gate holds gate|up (tensor_table.h); k, v
  // and up are empty. A MoE layer has no gate, up or down but a router and its experts'.
  Matrix q, k, v, o, gate, up, down;
  Matrix router;                                            // [num_experts][hidden]
  std::vector<Matrix> expert_gate, expert_up, expert_down;  // [num_experts] each
  const float* input_norm = nullptr;
  const float* post_norm = nullptr;
  const float* q_bias = nullptr;  // null unless attention_bias
  const float* k_bias = nullptr;
  const float* v_bias = nullptr;
  const float* o_bias = nullptr;  // null unless o_proj_bias
  const float* q_norm = nullptr;  // [head_dim], null unless qk_norm
  const float* k_norm = nullptr;
};

// df11_validate with the tensor's name in the message. DF11 arrays are checked once, where they
// enter (a file's container reader, Model::from_tensors): decoding cannot read out of bounds
// after it, and nothing downstream checks them again.
void validate_df11_tensor(const Df11View& view, const std::string& name);

class Weights {
 public:
  // Throws the docs/ENGINE_API.md error for the first tensor that is missing or does not fit.
  // DF11 views must have passed df11_validate().
  // Keeps pointers into `inputs` until load(): they must stay alive until then.
  Weights(const ModelConfig& config, const WeightMap& inputs);
  Weights(const Weights&) = delete;
  Weights& operator=(const Weights&) = delete;

  int64_t bytes_needed() const { return arena_.used(); }
  void load(Device& device);

  const Matrix& embedding() const { return embedding_; }
  const Matrix& lm_head() const { return tied_ ? embedding_ : lm_head_; }
  const float* final_norm() const { return final_norm_; }
  const LayerWeights& layer(int64_t index) const { return layers_[index]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t bytes() const { return arena_.capacity(); }
  // The matrix or vector a tensor name (docs/ENGINE_API.md) was loaded into; null if unknown.
  const Matrix* find_matrix(const std::string& name) const;
  // A vector and its length; {nullptr, 0} if unknown.
  std::pair<const float*, int64_t> find_vector(const std::string& name) const;

 private:
  // One tensor to place: where it comes from and which field receives its arena address.
  struct Entry {
    const WeightTensor* input = nullptr;
    Matrix* matrix = nullptr;        // a matrix, or
    const float** vector = nullptr;  // a 1-D FP32 tensor
  };

  void add_matrix(const WeightMap& inputs, const TensorSpec& spec, Matrix& matrix);
  void add_vector(const WeightMap& inputs, const TensorSpec& spec, const float*& vector);
  void lay_out(Device* device);  // device null: measure only

  bool tied_ = false;
  Matrix embedding_;
  Matrix lm_head_;
  const float* final_norm_ = nullptr;
  std::vector<LayerWeights> layers_;
  std::vector<Entry> entries_;  // cleared by load()
  std::map<std::string, Matrix*> matrices_by_name_;
  std::map<std::string, std::pair<const float**, int64_t>> vectors_by_name_;
  Arena arena_;
};

}  // namespace slimrt
