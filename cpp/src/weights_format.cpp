#include "weights_format.h"

#include "arena.h"
#include "check.h"
#include "crc32.h"
#include "ops/checksum.h"
#include "ops/df11_decode.h"
#include "tensor_table.h"

namespace slimrt {
namespace {

// Decodes `w` (host memory) into `out` (host, numel BF16) on `device`, whose memory holds a
// copy only while this runs; returns the CRC-32 of the decoded bits. The copy's table goes with
// its block (Device::deallocate).
uint32_t decode_on_device(Device& device, const Df11View& w, uint16_t* out) {
  const int64_t lengths = align_up(df11::kSymbols);
  const int64_t bitstream = align_up(w.bitstream_words * 4);
  const int64_t index = align_up(w.groups() * df11::kIndexWords * 4);
  const int64_t signmant = align_up(w.numel);
  const int64_t decoded = align_up(w.numel * 2);
  const int64_t scratch = ops::crc32_scratch_bytes(device, w.numel * 2);
  char* block = static_cast<char*>(
      device.allocate(lengths + bitstream + index + signmant + decoded + scratch));
  try {
    Df11View d = w;
    char* at = block;
    auto place = [&](const void* host, int64_t bytes, int64_t room) {
      device.copy_to_device(at, host, bytes);
      void* placed = at;
      at += room;
      return placed;
    };
    d.lengths = static_cast<const uint8_t*>(place(w.lengths, df11::kSymbols, lengths));
    d.bitstream =
        static_cast<const uint32_t*>(place(w.bitstream, w.bitstream_words * 4, bitstream));
    d.index =
        static_cast<const uint32_t*>(place(w.index, w.groups() * df11::kIndexWords * 4, index));
    d.signmant = static_cast<const uint8_t*>(place(w.signmant, w.numel, signmant));
    auto* bits = reinterpret_cast<uint16_t*>(at);
    device.prepare_df11(d);
    ops::decode_df11(device, d, bits);
    const uint32_t crc = ops::crc32(device, bits, w.numel * 2, at + decoded);
    device.copy_to_host(out, bits, w.numel * 2);
    device.deallocate(block);
    return crc;
  } catch (...) {
    device.deallocate(block);
    throw;
  }
}

}  // namespace

void check_checksum(const std::string& name, const Df11Checksum& sum, uint32_t crc) {
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, crc == sum.crc32,
                  sum.file << ": tensor " << name << ": CRC-32 mismatch (stored " << std::hex
                           << std::showbase << sum.crc32 << ", decoded " << crc
                           << "): the file is corrupt");
}

WeightMap to_weight_format(const ModelConfig& config, const WeightMap& tensors,
                           const ModelOptions& options, WeightStaging& staging, Device& device,
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
      const Df11Checksum* sum = nullptr;
      if (checksums != nullptr) {
        const auto found = checksums->find(name);
        if (found != checksums->end()) sum = &found->second;
      }
      if (device.backend() != Backend::kCpu) {  // a GPU: the host's decode made loading slow
        const uint32_t crc = decode_on_device(device, tensor->df11, bits.data());
        if (sum != nullptr) check_checksum(name, *sum, crc);
      } else {
        df11_decode_cpu(tensor->df11, bits.data(), options.num_threads);
        if (sum != nullptr) {
          check_checksum(name, *sum, crc32(bits.data(), bits.size() * 2, options.num_threads));
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
