#include "weights_format.h"

#include "check.h"
#include "crc32.h"
#include "tensor_table.h"

namespace slimrt {

void check_checksum(const std::string& name, const Df11Checksum& sum, uint32_t crc) {
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, crc == sum.crc32,
                  sum.file << ": tensor " << name << ": CRC-32 mismatch (stored " << std::hex
                           << std::showbase << sum.crc32 << ", decoded " << crc
                           << "): the file is corrupt");
}

WeightMap to_weight_format(const ModelConfig& config, const WeightMap& tensors,
                           const ModelOptions& options, WeightStaging& staging,
                           const std::map<std::string, Df11Checksum>* checksums) {
  WeightMap out = tensors;
  if (options.weights == "stored") return out;
  const bool to_df11 = options.weights == "df11";
  const WeightTensor::Kind from = to_df11 ? WeightTensor::Kind::kBf16 : WeightTensor::Kind::kDf11;
  // Only the matrices the model uses, in table order; the rest is left for Weights to ignore.
  std::vector<std::pair<std::string, const WeightTensor*>> todo;
  int64_t total = 0;
  for (const TensorSpec& spec : model_tensors(config)) {
    const auto it = tensors.find(spec.name);
    if (!spec.matrix() || it == tensors.end() || it->second.kind != from) continue;
    if (it->second.shape != spec.shape) continue;  // Weights reports the mismatch
    todo.emplace_back(spec.name, &it->second);
    total += spec.numel() * 2;
  }
  const char* stage = to_df11 ? "compress" : "decode";
  int64_t done = 0;
  if (todo.empty()) return out;
  if (options.progress) options.progress({stage, 0, total});
  for (const auto& [name, tensor] : todo) {
    const int64_t numel = tensor->shape[0] * tensor->shape[1];
    if (to_df11) {
      Df11CompressOptions compress;
      compress.num_threads = options.num_threads;
      auto t = std::make_unique<Df11Tensor>(
          df11_compress(static_cast<const uint16_t*>(tensor->data), numel, compress));
      // Tiny matrices: DF11's fixed arrays (~0.5 KB) can outweigh what the codes save.
      if (t->compressed_bytes() < numel * 2) {
        out[name] = WeightTensor::compressed(t->view(), tensor->shape);
        staging.compressed.push_back(std::move(t));
      }
    } else {
      std::vector<uint16_t>& bits = staging.decoded.emplace_back(numel);
      df11_decode_cpu(tensor->df11, bits.data(), options.num_threads);
      if (checksums != nullptr) {
        const auto sum = checksums->find(name);
        if (sum != checksums->end()) {
          check_checksum(name, sum->second,
                         crc32(bits.data(), bits.size() * 2, options.num_threads));
        }
      }
      out[name] = WeightTensor::bf16(bits.data(), tensor->shape);
    }
    done += numel * 2;
    if (options.progress) options.progress({stage, done, total});
  }
  return out;
}

std::string weights_held(const ModelConfig& config, const WeightMap& tensors) {
  int64_t matrices = 0, df11 = 0;
  for (const TensorSpec& spec : model_tensors(config)) {
    if (!spec.matrix()) continue;
    ++matrices;
    const auto it = tensors.find(spec.name);
    df11 += it != tensors.end() && it->second.kind == WeightTensor::Kind::kDf11;
  }
  if (df11 == 0) return "BF16 weights";
  if (df11 == matrices) return "DF11 weights";
  return "DF11 weights (" + std::to_string(df11) + " of " + std::to_string(matrices) +
         " matrices; the rest BF16)";
}

}  // namespace slimrt
