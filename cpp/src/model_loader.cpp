// Model::load: which reader a path needs, then the weight format, the checksums and the arena.
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "arena.h"
#include "check.h"
#include "logging.h"
#include "model_impl.h"
#include "model_source.h"
#include "ops/checksum.h"
#include "ops/df11_decode.h"
#include "repeat_layers.h"
#include "slimrt/model.h"
#include "weights_format.h"

namespace slimrt {
namespace {

namespace fs = std::filesystem;

bool starts_with_gguf_magic(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

enum class SourceKind { kDirectory, kGguf };

// What `path` names: a model directory (config.json), a GGUF file (by its magic, whatever its
// name), or a directory holding exactly one GGUF (a download folder).
SourceKind detect(const std::string& path, std::string& gguf) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  SLIMRT_CHECK_AS(ErrorCategory::kIo, fs::exists(status), path << ": no such file or directory");
  if (fs::is_directory(status)) {
    if (fs::is_regular_file(fs::path(path) / "config.json")) return SourceKind::kDirectory;
    int ggufs = 0;
    for (const auto& entry : fs::directory_iterator(path, error)) {
      if (entry.is_regular_file() && entry.path().extension() == ".gguf") {
        gguf = entry.path().string();
        ++ggufs;
      }
    }
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, ggufs == 1,
                    path << ": no config.json (not a Hugging Face model directory)");
    return SourceKind::kGguf;
  }
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, starts_with_gguf_magic(path),
                  path << ": not a model (pass a .gguf file or a model directory with "
                          "config.json)");
  gguf = path;
  return SourceKind::kGguf;
}

// The CRC-32 of every DF11 matrix the model keeps compressed, checked where it lives: decoded
// by the device's own decoder (the GPU's on CUDA, the pool's on the CPU) into scratch, and
// summed there. A corrupt file must fail here, not run. (Matrices decoded to BF16 on the way
// in were checked then.)
void verify_kept_df11(const Model& model, const std::map<std::string, Df11Checksum>& sums,
                      const ModelOptions& options) {
  const Model::Impl& impl = model.impl();
  Device& device = *impl.device;
  std::vector<std::pair<const std::string*, const Matrix*>> kept;
  int64_t largest = 0, total = 0;
  for (const auto& [name, sum] : sums) {
    const Matrix* m = impl.weights->find_matrix(name);
    if (m == nullptr || !m->is_df11) continue;
    kept.emplace_back(&name, m);
    largest = std::max(largest, m->numel());
    total += m->numel() * 2;
  }
  if (kept.empty()) return;
  std::lock_guard<std::mutex> lock(impl.step_mutex);
  const int64_t decoded_bytes = align_up(largest * 2);
  void* scratch = device.allocate(decoded_bytes + ops::crc32_scratch_bytes(device, largest * 2));
  try {
    auto* bits = static_cast<uint16_t*>(scratch);
    void* crc_scratch = static_cast<char*>(scratch) + decoded_bytes;
    int64_t done = 0;
    for (const auto& [name, m] : kept) {
      ops::decode_df11(device, m->df11, bits);
      check_checksum(*name, sums.at(*name), ops::crc32(device, bits, m->numel() * 2, crc_scratch));
      done += m->numel() * 2;
      if (options.progress) options.progress({"verify", done, total});
    }
  } catch (...) {
    device.deallocate(scratch);
    throw;
  }
  device.deallocate(scratch);
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
  const ModelOptions o = resolve_model_options(options);
  std::string gguf;
  ModelSource source =
      detect(path, gguf) == SourceKind::kGguf ? read_gguf(gguf, o) : read_hf_dir(path, o);
  WeightStaging staging;
  WeightMap tensors = to_weight_format(source.config, source.tensors, o, staging,
                                       o.verify ? &source.checksums : nullptr);
  // After the conversion, so that a repeated layer is compressed (or decoded) once.
  if (o.repeat_layers > 0) {
    repeat_layers(o.repeat_layers, path, source.config, tensors, &source.checksums);
  }
  // "PATH (what the reader found; how the matrices are held)".
  std::string summary = source.summary;
  summary.insert(summary.size() - 1,
                 "; " + weights_held(source.config, tensors) + repeated_note(o.repeat_layers));
  std::shared_ptr<const Model> model =
      make_model(source.config, tensors, o, source.format, summary, std::move(source.metadata));
  if (o.verify) verify_kept_df11(*model, source.checksums, o);
  log_line(LogLevel::kInfo, "loaded " + summary);
  return model;
}

}  // namespace slimrt
