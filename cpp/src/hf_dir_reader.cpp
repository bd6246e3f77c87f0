// read_hf_dir: a Hugging Face directory (or a slimrt one: DF11 tensors, slimrt.json), every
// *.safetensors shard mapped, not read; an index json is not needed.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "check.h"
#include "df11_container.h"
#include "input_limits.h"
#include "logging.h"
#include "model_source.h"
#include "quote.h"
#include "safetensors.h"
#include "tensor_staging.h"
#include "tensor_table.h"

namespace slimrt {
namespace {

namespace fs = std::filesystem;

std::string read_config_text(const fs::path& file) {
  std::error_code error;
  const std::uintmax_t size = fs::file_size(file, error);
  SLIMRT_CHECK_AS(ErrorCategory::kIo, !error,
                  file.string() << ": cannot read: " << error.message());
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, size <= limits::kConfigBytes,
                  file.string() << ": " << size
                                << " bytes is too large for a config.json (the limit is "
                                << limits::kConfigBytes << " bytes)");
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  SLIMRT_CHECK_AS(ErrorCategory::kIo, in.good() || in.eof(), file.string() << ": cannot read");
  return text.str();
}

// Where one tensor is: its file, and either its plain entry or its DF11 entry.
struct Found {
  size_t file = 0;
  const SafetensorsTensor* plain = nullptr;
  const Df11Entry* df11 = nullptr;
};

uint32_t ggml_type_of(const std::string& dtype) {
  if (dtype == "BF16") return ggml::kBf16;
  if (dtype == "F16") return ggml::kF16;
  return ggml::kF32;  // the caller has checked it is one of the three
}

}  // namespace

ModelSource read_hf_dir(const std::string& path, const ModelOptions& options) {
  ModelSource source;
  const fs::path dir(path);
  source.format = fs::is_regular_file(dir / "slimrt.json") ? "slimrt" : "hf";
  const fs::path config_file = dir / "config.json";
  source.config = ModelConfig::from_json(read_config_text(config_file), config_file.string());

  std::vector<fs::path> shards;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") {
      shards.push_back(entry.path());
    }
  }
  std::sort(shards.begin(), shards.end());
  SLIMRT_CHECK_AS(ErrorCategory::kModelFile, !shards.empty(),
                  path << ": no *.safetensors files (not a safetensors model directory)");

  std::vector<SafetensorsHeader> headers;
  std::vector<std::vector<Df11Entry>> df11s;
  std::map<std::string, Found> found;
  for (size_t f = 0; f < shards.size(); ++f) {
    const std::string where = shards[f].string();
    source.files.push_back(MappedFile::open(where));
    headers.push_back(parse_safetensors(source.files[f].data(), source.files[f].size(), where));
  }
  // Separate passes: the vectors above must not move once entries point into them.
  df11s.reserve(shards.size());
  for (size_t f = 0; f < shards.size(); ++f) {
    df11s.push_back(read_df11_tensors(headers[f], source.files[f].data(), shards[f].string()));
  }
  for (size_t f = 0; f < shards.size(); ++f) {
    auto add = [&](const std::string& name, Found where) {
      const auto [it, added] = found.emplace(name, where);
      SLIMRT_CHECK_AS(ErrorCategory::kModelFile, added,
                      path << ": tensor " << name << " is in both "
                           << shards[it->second.file].filename().string() << " and "
                           << shards[f].filename().string());
    };
    for (const Df11Entry& e : df11s[f]) add(e.name, {f, nullptr, &e});
    for (const SafetensorsTensor& t : headers[f].tensors) {
      if (t.name.find(".df11.") != std::string::npos) continue;  // a DF11 tensor's array
      add(t.name, {f, &t, nullptr});
    }
  }
  const ModelConfig& config = source.config;
  check_tensor_count(config, static_cast<int64_t>(found.size()), path);
  for (const auto& [name, where] : found) {
    SLIMRT_CHECK_AS(ErrorCategory::kUnsupported, !is_unannounced_bias(config, name),
                    shards[where.file].string()
                        << ": tensor " << name << ": this bias is not supported");
  }

  int64_t total = 0, done = 0, df11_count = 0, cast = 0;
  const std::vector<TensorSpec> specs = model_tensors(config);
  for (const TensorSpec& spec : specs) {
    const auto it = found.find(spec.name);
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, it != found.end(),
                    path << ": missing tensor " << spec.name);
    total += spec.numel() * 2;
  }
  for (const TensorSpec& spec : specs) {
    const Found& at = found.at(spec.name);
    const std::string file = shards[at.file].string();
    const std::vector<int64_t>& shape = at.df11 ? at.df11->shape : at.plain->shape;
    SLIMRT_CHECK_AS(ErrorCategory::kModelFile, shape == spec.shape,
                    file << ": tensor " << spec.name << " has shape " << list_repr(shape)
                         << ", config expects " << list_repr(spec.shape));
    if (at.df11 != nullptr) {
      SLIMRT_CHECK_AS(ErrorCategory::kModelFile, spec.matrix(),
                      file << ": tensor " << spec.name << ": DF11 is accepted for matrices only");
      source.tensors[spec.name] = WeightTensor::compressed(at.df11->view, spec.shape);
      source.checksums[spec.name] = {at.df11->crc32, file};
      ++df11_count;
    } else {
      const SafetensorsTensor& t = *at.plain;
      SLIMRT_CHECK_AS(ErrorCategory::kUnsupported,
                      t.dtype == "BF16" || t.dtype == "F16" || t.dtype == "F32",
                      file << ": tensor " << spec.name << " is " << t.dtype
                           << "; slimrt takes BF16, F16 or F32 weights");
      const uint8_t* data = source.files[at.file].data() + t.begin;
      const uint32_t type = ggml_type_of(t.dtype);
      if (spec.matrix()) {
        source.tensors[spec.name] =
            stage_matrix(type, data, spec.shape, 0, source, options.num_threads);
        cast += t.dtype != "BF16";
      } else {
        source.tensors[spec.name] = stage_vector(type, data, spec.shape[0], 0, source);
      }
    }
    done += spec.numel() * 2;
    if (options.progress) options.progress({"load", done, total});
  }
  if (cast > 0) {
    // A warning, not info: the model that runs is no longer exactly the one on disk.
    log_line(LogLevel::kWarning, path + ": rounded " + std::to_string(cast) +
                                     " F16/F32 matrices to BF16 (LOSSY: nearest even)");
  }
  source.summary = path + " (" +
                   (source.format == "slimrt" ? "slimrt directory" : "Hugging Face directory") +
                   ", " + architecture_name(config.architecture) + ", " +
                   std::to_string(shards.size()) + " shard" + (shards.size() == 1 ? "" : "s") +
                   (df11_count ? ", " + std::to_string(df11_count) + " DF11 matrices" : "") +
                   (cast ? ", F16/F32 matrices rounded to BF16" : "") + ")";
  return source;
}

}  // namespace slimrt
