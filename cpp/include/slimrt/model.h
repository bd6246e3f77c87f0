// Model: an immutable model whose weights live in a device's arena, loaded from a path with
// default options (as llama.cpp's llama_model_load_from_file) and shared by any number of
// engines (slimrt/engine.h), each with its own KV cache. Tokenization stays with the
// application: a GGUF file's tokenizer arrays are in metadata(); a Hugging Face directory keeps
// its tokenizer files for the caller to read.
//
//   slimrt::ModelOptions options;                 // defaults: cpu, BF16 weights, CRCs verified
//   options.weights = "df11";                     // keep matrices DF11-compressed in memory
//   options.progress = [](const slimrt::LoadProgress& p) { ... p.done / p.total ... };
//   std::shared_ptr<const slimrt::Model> model = slimrt::Model::load("SmolLM2.gguf", options);
//   model->config().vocab_size;
//
// Paths: a Hugging Face directory (config.json and every *.safetensors shard), a slimrt
// directory written by `slimrt compress` (the same, with DF11 tensors; docs/FORMAT.md) or a
// llama.cpp .gguf file (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 tensors, dequantized to
// BF16). Every problem with a file is a slimrt::Error (category kModelFile or kUnsupported)
// naming the file.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "slimrt/df11.h"

namespace slimrt {

enum class Architecture { kLlama, kMistral, kQwen2, kQwen3, kPhi3, kMixtral, kQwen3Moe };

// "LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
// "Phi3ForCausalLM", "MixtralForCausalLM", "Qwen3MoeForCausalLM".
const char* architecture_name(Architecture architecture);

// Llama 3.1's frequency-dependent RoPE scaling (rope_scaling.rope_type == "llama3"), or Phi-3's
// LongRoPE ("longrope", formerly "su"): each frequency divided by its short factor while a
// sequence is within original_max_position_embeddings, by its long factor once a step takes it
// past that, and cos and sin multiplied by attention_factor.
struct RopeScaling {
  bool llama3 = false;  // neither: plain RoPE
  bool longrope = false;
  double factor = 8.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 8192;
  std::vector<double> short_factor;  // longrope: head_dim / 2 each
  std::vector<double> long_factor;
  double attention_factor = 1.0;
};

// The shape of a Llama-family model, as a Hugging Face config.json describes it, normalised:
// every default filled in, the rules of each architecture applied (docs/ENGINE_API.md).
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
  bool qk_norm = false;         // q and k RMS-normalised per head before RoPE (Qwen3)
  int64_t sliding_window = 0;   // 0: full attention. Sequences may not grow past it.
  // Q, K and V in one qkv_proj tensor, gate and up in one gate_up_proj (Phi-3); split at load.
  bool fused_projections = false;
  // Mixture of experts (Mixtral, Qwen3-MoE): a router picks experts_per_token of num_experts
  // SwiGLU experts per token (softmax, top-k, renormalised to sum 1 if norm_topk_prob). 0
  // experts: a dense MLP in every layer. A dense layer of a MoE model has intermediate_size.
  int64_t num_experts = 0;
  int64_t experts_per_token = 0;
  int64_t moe_intermediate_size = 0;
  bool norm_topk_prob = true;
  int64_t decoder_sparse_step = 1;       // Qwen3-MoE: layer l is sparse if (l + 1) % step == 0
  std::vector<int64_t> mlp_only_layers;  // ... and l is not listed here

  // Parses config.json text with Hugging Face's defaults, then validate()s. Errors start with
  // "`where`: " (kModelFile for malformed values, kUnsupported for models slimrt cannot run).
  static ModelConfig from_json(const std::string& json_text, const std::string& where);

  // Throws "config: ..." naming the first field that cannot describe a runnable model.
  void validate() const;

  int64_t q_width() const { return num_heads * head_dim; }
  int64_t kv_width() const { return num_kv_heads * head_dim; }
  // Longest sequence the engine accepts: the position limit, and the sliding window if any
  // (attention is exact only while every token is inside the window).
  int64_t max_context() const;
  // Whether layer `layer` has experts rather than a dense MLP, as transformers decides it.
  bool moe_layer(int64_t layer) const;

  // RoPE inverse frequencies, head_dim / 2 of them, with llama3 scaling applied: the float32
  // values of Hugging Face's _compute_llama3_parameters (see model_config.cpp for the one
  // rounding step that may differ by 1 ulp); with longrope, those of the short factors, or of
  // the long ones if `long_factors`.
  std::vector<float> rope_inv_freq(bool long_factors = false) const;
};

// One metadata value of a GGUF file. Arrays keep their elements in one container per kind; a
// string array is one blob with offsets, so a 49k-entry vocabulary is two allocations.
struct MetadataValue {
  enum class Kind { kUint, kInt, kFloat, kBool, kString, kArray };
  Kind kind = Kind::kUint;
  uint32_t type = 0;  // GGUF's value type id (of the elements, for an array)
  uint64_t uint_value = 0;
  int64_t int_value = 0;
  double float_value = 0.0;
  bool bool_value = false;
  std::string string_value;
  uint64_t count = 0;          // array elements
  std::vector<int64_t> ints;   // integer and bool elements
  std::vector<double> floats;  // float elements
  std::string blob;            // string elements: element i is blob[offsets[i], offsets[i+1])
  std::vector<uint64_t> offsets;
  // An array of arrays (one level): the inner arrays' elements stored flat as above, inner
  // array i being flat elements [rows[i], rows[i+1]). Empty for every other value.
  std::vector<uint64_t> rows;

  std::string_view string_at(uint64_t i) const {
    return std::string_view(blob).substr(offsets[i], offsets[i + 1] - offsets[i]);
  }
};

// Load progress: `done` of `total` bytes of the current stage ("load", "compress", "verify").
struct LoadProgress {
  const char* stage = "load";
  int64_t done = 0;
  int64_t total = 0;
};
using ProgressCallback = std::function<void(const LoadProgress& progress)>;

struct ModelOptions {
  std::string device = "cpu";      // "cpu", "cuda", or "auto" (cuda when cuda_available())
  std::string weights = "bf16";    // "bf16": every matrix BF16 (DF11 ones decoded);
                                   // "df11": compressed in memory (BF16 ones compressed on load);
                                   // "stored": each matrix as the file (or caller) holds it
  bool verify = true;              // check every DF11 tensor's CRC-32 at load
  int num_threads = 0;             // 0 = all hardware threads (loading and the CPU kernels)
  int64_t memory_limit_bytes = 0;  // 0 = what the device has available
  ProgressCallback progress;       // called from the loading thread; may be empty
  // A benchmarking aid, 0 (off) or 1..1024: a model of one decoder layer (its embeddings, final
  // norm and lm_head as usual) is loaded as this many layers, each a real copy of that layer in
  // the arena, so that a model too large for the disk as files can be measured (bench/
  // big_model.py). Any other model is refused. Weight conversions happen once, before copying.
  int64_t repeat_layers = 0;

  // Throws "options: ..." naming the first value out of range (load() calls it).
  void validate() const;
};

// One tensor handed to Model::from_tensors, borrowed only for the duration of the call.
struct WeightTensor {
  enum class Kind { kBf16, kF32, kDf11, kUnsupported };
  Kind kind = Kind::kUnsupported;
  std::vector<int64_t> shape;
  const void* data = nullptr;  // kBf16: uint16 BF16 bit patterns; kF32: float; row-major
  Df11View df11;               // kDf11: the four arrays (docs/FORMAT.md)
  std::string dtype;           // kUnsupported: the dtype's name, for the error message

  static WeightTensor bf16(const uint16_t* bits, std::vector<int64_t> shape);
  static WeightTensor f32(const float* values, std::vector<int64_t> shape);
  static WeightTensor compressed(const Df11View& view, std::vector<int64_t> shape);
  static WeightTensor unsupported(std::string dtype, std::vector<int64_t> shape);
};

// Hugging Face tensor names -> tensors (docs/ENGINE_API.md lists them). Names the model does
// not use are ignored.
using WeightMap = std::map<std::string, WeightTensor>;

class Model {
 public:
  static std::shared_ptr<const Model> load(const std::string& path,
                                           const ModelOptions& options = {});
  // A model from tensors already in memory (converters, tests): copied into the arena.
  static std::shared_ptr<const Model> from_tensors(const ModelConfig& config,
                                                   const WeightMap& tensors,
                                                   const ModelOptions& options = {});
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const;
  const std::string& device() const;   // "cpu" or "cuda"
  const std::string& format() const;   // "hf", "slimrt", "gguf" or "tensors"
  const std::string& summary() const;  // one line: what was loaded and how
  int64_t weight_bytes() const;        // the weights arena
  int64_t df11_matrices() const;       // matrices kept DF11-compressed
  // GGUF metadata (tokenizer arrays, chat template, general.*); empty for other formats.
  const std::map<std::string, MetadataValue>& metadata() const;

  // A tensor as the engine holds it, copied back to the host (inspection and tests): a matrix
  // as BF16 bits (decoded if DF11), a norm or bias as float. Throws for an unknown name.
  std::vector<uint16_t> matrix_bf16(const std::string& name) const;
  std::vector<float> vector_f32(const std::string& name) const;

  // Internal (cpp/src/model_impl.h: the device, the arena, the layer table): an application
  // cannot make an Impl, so it makes models with load() and from_tensors() only.
  struct Impl;
  explicit Model(std::unique_ptr<Impl> impl);
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace slimrt
