// Model: options, the budget check and the arena of the weights; what to load from a path is
// model_loader.cpp's.
#include "slimrt/model.h"

#include <utility>

#include "arena.h"
#include "check.h"
#include "model_impl.h"
#include "repeat_layers.h"
#include "slimrt/version.h"
#include "tensor_table.h"
#include "weights.h"
#include "weights_format.h"

namespace slimrt {
namespace {

// More layers than any published model has (Llama 3.1 405B: 126); bounds the layer table a
// caller's typo would otherwise have built before the memory budget refused it.
constexpr int64_t kMaxRepeatLayers = 1024;

}  // namespace

void ModelOptions::validate() const {
  const ModelOptions& o = *this;
  if (o.device != "auto") check_device_name(o.device);
  SLIMRT_CHECK(
      o.weights == "bf16" || o.weights == "df11" || o.weights == "stored",
      "options: weights must be \"bf16\", \"df11\" or \"stored\", got \"" << o.weights << "\"");
  SLIMRT_CHECK(o.num_threads >= 0 && o.num_threads <= (1 << 16),
               "options: num_threads must be >= 0, got " << o.num_threads);
  SLIMRT_CHECK(o.memory_limit_bytes >= 0,
               "options: memory_limit_bytes must be >= 0, got " << o.memory_limit_bytes);
  SLIMRT_CHECK(o.repeat_layers >= 0 && o.repeat_layers <= kMaxRepeatLayers,
               "options: repeat_layers must be 0 (off) or 1 to " << kMaxRepeatLayers << ", got "
                                                                 << o.repeat_layers);
}

ModelOptions resolve_model_options(const ModelOptions& in) {
  in.validate();
  ModelOptions o = in;
  if (o.device == "auto") o.device = cuda_available() ? "cuda" : "cpu";
  return o;
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> make_model(const ModelConfig& config, const WeightMap& tensors,
                                        const ModelOptions& options, std::string format,
                                        std::string summary,
                                        std::map<std::string, MetadataValue> metadata) {
  auto impl = std::make_unique<Model::Impl>();
  impl->config = config;
  impl->config.validate();
  impl->format = std::move(format);
  impl->summary = std::move(summary);
  impl->metadata = std::move(metadata);
  impl->device = make_device(options.device, options.num_threads);
  impl->device_name = impl->device->name();
  impl->weights = std::make_unique<Weights>(impl->config, tensors);
  MemoryPlan plan;
  plan.weights = impl->weights->bytes_needed();
  check_memory_budget(plan, options.memory_limit_bytes > 0 ? options.memory_limit_bytes
                                                           : impl->device->available_memory());
  impl->weights->load(*impl->device);
  return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

std::shared_ptr<const Model> Model::from_tensors(const ModelConfig& config,
                                                 const WeightMap& tensors,
                                                 const ModelOptions& options) {
  const ModelOptions o = resolve_model_options(options);
  ModelConfig checked = config;
  checked.validate();
  check_tensor_count(checked, static_cast<int64_t>(tensors.size()), "tensors");
  for (const TensorSpec& spec : model_tensors(checked)) {
    const auto it = tensors.find(spec.name);
    if (it != tensors.end() && it->second.kind == WeightTensor::Kind::kDf11) {
      validate_df11_tensor(it->second.df11, spec.name);
    }
  }
  // The requested weight format: DF11 inputs decoded, or BF16 matrices compressed (staged here
  // until the arena holds them).
  WeightStaging staging;
  WeightMap converted = to_weight_format(checked, tensors, o, staging);
  if (o.repeat_layers > 0) repeat_layers(o.repeat_layers, "tensors", checked, converted, nullptr);
  return make_model(checked, converted, o, "tensors",
                    std::string("tensors in memory (") + architecture_name(checked.architecture) +
                        "; " + weights_held(checked, converted) + repeated_note(o.repeat_layers) +
                        ")",
                    {});
}

const ModelConfig& Model::config() const { return impl_->config; }
const std::string& Model::device() const { return impl_->device_name; }
const std::string& Model::format() const { return impl_->format; }
const std::string& Model::summary() const { return impl_->summary; }
int64_t Model::weight_bytes() const { return impl_->weights->bytes(); }
const std::map<std::string, MetadataValue>& Model::metadata() const { return impl_->metadata; }

int64_t Model::df11_matrices() const {
  int64_t count = 0;
  const Weights& w = *impl_->weights;
  count += w.embedding().is_df11;
  if (!impl_->config.tie_word_embeddings) count += w.lm_head().is_df11;
  for (int64_t l = 0; l < w.num_layers(); ++l) {
    const LayerWeights& layer = w.layer(l);
    for (const Matrix* m :
         {&layer.q, &layer.k, &layer.v, &layer.o, &layer.gate, &layer.up, &layer.down}) {
      count += m->is_df11;
    }
    count += layer.router.is_df11;
    for (const std::vector<Matrix>* experts :
         {&layer.expert_gate, &layer.expert_up, &layer.expert_down}) {
      for (const Matrix& m : *experts) count += m.is_df11;
    }
  }
  return count;
}

std::vector<uint16_t> Model::matrix_bf16(const std::string& name) const {
  const Matrix* m = impl_->weights->find_matrix(name);
  SLIMRT_CHECK(m != nullptr, "no matrix named " << name);
  std::lock_guard<std::mutex> lock(impl_->step_mutex);
  std::vector<uint16_t> out(m->numel());
  Device& device = *impl_->device;
  if (!m->is_df11) {
    device.copy_to_host(out.data(), m->dense, m->numel() * 2);
    return out;
  }
  // Decoded on the host from a copy of the arrays: inspection must not allocate device memory
  // (freeing it would drop the device's decoding tables).
  const Df11View& v = m->df11;
  std::vector<uint8_t> lengths(df11::kSymbols), signmant(v.numel);
  std::vector<uint32_t> bitstream(v.bitstream_words), index(v.groups() * df11::kIndexWords);
  device.copy_to_host(lengths.data(), v.lengths, df11::kSymbols);
  device.copy_to_host(bitstream.data(), v.bitstream, v.bitstream_words * 4);
  device.copy_to_host(index.data(), v.index, static_cast<int64_t>(index.size()) * 4);
  device.copy_to_host(signmant.data(), v.signmant, v.numel);
  Df11View host = v;
  host.lengths = lengths.data();
  host.bitstream = bitstream.data();
  host.index = index.data();
  host.signmant = signmant.data();
  df11_decode_cpu(host, out.data());
  return out;
}

std::vector<float> Model::vector_f32(const std::string& name) const {
  const auto [data, size] = impl_->weights->find_vector(name);
  SLIMRT_CHECK(data != nullptr, "no vector named " << name);
  std::lock_guard<std::mutex> lock(impl_->step_mutex);
  std::vector<float> out(size);
  impl_->device->copy_to_host(out.data(), data, size * static_cast<int64_t>(sizeof(float)));
  return out;
}

}  // namespace slimrt
