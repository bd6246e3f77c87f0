// Model::load: which reader a path needs, then the weight format, the checksums and the arena.
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "check.h"
#include "logging.h"
#include "model_impl.h"
#include "model_source.h"
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

// The CRC-32 of every DF11 matrix the model keeps compressed, decoded once on the host: a
// corrupt file must fail here, not run. (Matrices decoded to BF16 were checked on the way.)
void verify_kept_df11(const ModelSource& source, const WeightMap& tensors,
                      const ModelOptions& options) {
  int64_t total = 0;
  for (const auto& [name, t] : tensors) {
    if (t.kind == WeightTensor::Kind::kDf11 && source.checksums.count(name)) total += t.df11.numel;
  }
  if (total == 0) return;
  int64_t done = 0;
  std::vector<uint16_t> bits;
  for (const auto& [name, t] : tensors) {
    const auto it = source.checksums.find(name);
    if (t.kind != WeightTensor::Kind::kDf11 || it == source.checksums.end()) continue;
    bits.resize(t.df11.numel);
    df11_decode_cpu(t.df11, bits.data(), options.num_threads);
    check_checksum(name, it->second, bits.data(), t.df11.numel, options.num_threads);
    done += t.df11.numel;
    if (options.progress) options.progress({"verify", done * 2, total * 2});
  }
}

}  // namespace

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelOptions& options) {
  const ModelOptions o = resolve_model_options(options);
  std::string gguf;
  ModelSource source =
      detect(path, gguf) == SourceKind::kGguf ? read_gguf(gguf, o) : read_hf_dir(path, o);
  WeightStaging staging;
  const WeightMap tensors = to_weight_format(source.config, source.tensors, o, staging,
                                             o.verify ? &source.checksums : nullptr);
  if (o.verify) verify_kept_df11(source, tensors, o);
  // "PATH (what the reader found; how the matrices are held)".
  std::string summary = source.summary;
  summary.insert(summary.size() - 1, "; " + weights_held(source.config, tensors));
  log_line(LogLevel::kInfo, "loaded " + summary);
  return make_model(source.config, tensors, o, source.format, summary, std::move(source.metadata));
}

}  // namespace slimrt
