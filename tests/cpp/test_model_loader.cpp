// Model::load: Hugging Face and slimrt directories and GGUF files written here byte by byte,
// loaded in C++, and checked tensor by tensor and logit by logit against the same tensors handed
// over in memory; corrupt DF11 weights refused whatever the weight format; sizes refused before
// anything is built from them.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cpu/bf16.h"
#include "crc32.h"
#include "error_message.h"
#include "input_limits.h"
#include "model_file_builders.h"
#include "slimrt/engine.h"
#include "slimrt/log.h"
#include "slimrt/model.h"
#include "tiny_engine_model.h"

namespace slimrt {
namespace {

namespace fs = std::filesystem;
using test::Bytes;
using test::make_model;
using test::random_tokens;
using test::run_step;
using test::StoredTensor;
using test::test_options;
using test::TinyModel;
using test::Variant;

using test::error_message;

fs::path fresh_dir(const std::string& name) {
  const fs::path dir =
      fs::temp_directory_path() / ("slimrt_loader_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

void write_file(const fs::path& path, const Bytes& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

template <class T>
Bytes bytes_of(const std::vector<T>& values) {
  Bytes out(values.size() * sizeof(T));
  std::memcpy(out.data(), values.data(), out.size());
  return out;
}

nlohmann::json config_json(const ModelConfig& c) {
  nlohmann::json j;
  j["architectures"] = {architecture_name(c.architecture)};
  j["vocab_size"] = c.vocab_size;
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  j["head_dim"] = c.head_dim;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["attention_bias"] = c.attention_bias;
  return j;
}

// A Hugging Face directory of `m`: BF16 matrices (or DF11 ones, as m.df11 holds them, with
// their descriptions), F32 vectors; U32 arrays first so that they sit on 4-byte boundaries.
fs::path write_hf_dir(const TinyModel& m, const std::string& name,
                      const nlohmann::json& config_changes = nlohmann::json::object()) {
  const fs::path dir = fresh_dir(name);
  nlohmann::json config = config_json(m.config);
  config.update(config_changes);
  std::ofstream(dir / "config.json") << config.dump();
  std::vector<StoredTensor> words, rest;
  std::map<std::string, std::string> metadata;
  for (const auto& [tensor, shape] : m.shapes) {
    if (m.df11.count(tensor)) {
      const Df11Tensor& t = m.df11.at(tensor);
      const int64_t groups = t.view().groups();
      words.push_back({tensor + ".df11.bitstream",
                       "U32",
                       {static_cast<int64_t>(t.bitstream.size())},
                       bytes_of(t.bitstream)});
      words.push_back(
          {tensor + ".df11.index", "U32", {groups, df11::kIndexWords}, bytes_of(t.index)});
      rest.push_back({tensor + ".df11.lengths",
                      "U8",
                      {df11::kSymbols},
                      Bytes(t.lengths.begin(), t.lengths.end())});
      rest.push_back({tensor + ".df11.signmant", "U8", {t.numel}, t.signmant});
      metadata["slimrt.df11:" + tensor] = nlohmann::json{
          {"format", "slimrt-df11"}, {"version", 1}, {"dtype", "bfloat16"},
          {"shape", shape},          {"lanes", 32},  {"lane_elements", 128},
          {"crc32", t.crc32}}.dump();
    } else if (m.f32.count(tensor)) {
      words.push_back({tensor, "F32", shape, bytes_of(m.f32.at(tensor))});
    } else {
      rest.push_back({tensor, "BF16", shape, bytes_of(m.bf16.at(tensor))});
    }
  }
  words.insert(words.end(), rest.begin(), rest.end());
  write_file(dir / "model.safetensors", test::safetensors_file(words, metadata));
  return dir;
}

ModelOptions options(const std::string& weights = "bf16") {
  ModelOptions o;
  o.weights = weights;
  o.num_threads = 2;
  return o;
}

std::vector<float> first_logits(const std::shared_ptr<const Model>& model, uint32_t seed) {
  Engine engine(model, test_options("bf16"));
  return run_step(engine, {engine.add_sequence()}, {random_tokens(11, 97, seed)});
}

TEST(ModelLoader, AHuggingFaceDirectoryLoadsEveryTensorAsGiven) {
  for (Variant variant : {Variant::kLlama, Variant::kQwen2}) {
    const TinyModel m = make_model(variant);
    const fs::path dir = write_hf_dir(m, "hf");
    std::vector<LoadProgress> reports;
    ModelOptions o = options();
    o.progress = [&](const LoadProgress& p) { reports.push_back(p); };
    const auto model = Model::load(dir.string(), o);
    EXPECT_EQ(model->format(), "hf");
    EXPECT_EQ(model->config().hidden_size, m.config.hidden_size);
    for (const auto& [name, shape] : m.shapes) {
      if (shape.size() == 2) {
        EXPECT_EQ(model->matrix_bf16(name), m.bf16.at(name)) << name;
      } else {
        const std::vector<float> got = model->vector_f32(name);
        const std::vector<double> want = m.values(name);  // F32 or BF16 as stored, exactly
        EXPECT_EQ(std::vector<double>(got.begin(), got.end()), want) << name;
      }
    }
    ModelOptions memory = options("stored");
    const auto given = Model::from_tensors(m.config, m.weights(), memory);
    EXPECT_EQ(first_logits(model, 2), first_logits(given, 2));
    ASSERT_FALSE(reports.empty());
    EXPECT_EQ(std::string(reports.back().stage), "load");
    EXPECT_EQ(reports.back().done, reports.back().total);
    for (size_t i = 1; i < reports.size(); ++i) EXPECT_GE(reports[i].done, reports[i - 1].done);
    fs::remove_all(dir);
  }
}

TEST(ModelLoader, Df11DirectoriesLoadAsStoredOrDecodedAndCorruptionIsRefusedEitherWay) {
  TinyModel m = make_model(Variant::kLlama);
  m.compress([](const std::string&) { return true; });
  const fs::path dir = write_hf_dir(m, "df11");
  const auto dense = Model::from_tensors(m.config, m.weights(), options("bf16"));
  const auto stored = Model::load(dir.string(), options("stored"));
  const auto decoded = Model::load(dir.string(), options("bf16"));
  EXPECT_EQ(stored->df11_matrices(), 2 * 7 + 2);  // every matrix, embedding and lm_head too
  EXPECT_EQ(decoded->df11_matrices(), 0);
  EXPECT_EQ(first_logits(stored, 3), first_logits(dense, 3));
  EXPECT_EQ(first_logits(decoded, 3), first_logits(dense, 3));

  // Flip the sign bits of lm_head's values: still a valid DF11 tensor, the wrong one.
  TinyModel corrupt = m;
  for (uint8_t& b : corrupt.df11.at("lm_head.weight").signmant) b ^= 0x80;
  const fs::path bad = write_hf_dir(corrupt, "df11_bad");
  const std::string file = (bad / "model.safetensors").string();
  for (const std::string weights : {"bf16", "df11", "stored"}) {
    const std::string got = error_message([&] { Model::load(bad.string(), options(weights)); });
    EXPECT_EQ(got.rfind(file + ": tensor lm_head.weight: CRC-32 mismatch (stored ", 0), 0u)
        << weights << ": " << got;
    EXPECT_NE(got.find("): the file is corrupt"), std::string::npos) << got;
  }
  ModelOptions unchecked = options("stored");
  unchecked.verify = false;  // the caller's choice: loads, and runs the corrupt weights
  EXPECT_NO_THROW(Model::load(bad.string(), unchecked));
  fs::remove_all(dir);
  fs::remove_all(bad);
}

TEST(ModelLoader, Df11WeightsAreCompressedWhileLoading) {
  const TinyModel m = make_model(Variant::kLlama);
  const fs::path dir = write_hf_dir(m, "compress");
  std::vector<std::string> stages;
  ModelOptions o = options("df11");
  o.progress = [&](const LoadProgress& p) {
    if (stages.empty() || stages.back() != p.stage) stages.push_back(p.stage);
  };
  const auto model = Model::load(dir.string(), o);
  EXPECT_EQ(model->df11_matrices(), 2 * 7 + 2);
  EXPECT_EQ(stages, (std::vector<std::string>{"load", "compress"}));
  EXPECT_EQ(model->matrix_bf16("model.layers.1.mlp.down_proj.weight"),
            m.bf16.at("model.layers.1.mlp.down_proj.weight"));
  fs::remove_all(dir);
}

TEST(ModelLoader, BadDirectoriesAndConfigsNameTheFileAndTheProblem) {
  const TinyModel m = make_model(Variant::kLlama);
  const fs::path dir = write_hf_dir(m, "bad", {{"num_hidden_layers", 1000000}});
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_message([&] { Model::load(dir.string(), options()); }),
            dir.string() +
                ": config has 1000000 layers, which need at least 9000002 tensors; it "
                "holds " +
                std::to_string(m.shapes.size()));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));

  const fs::path shape = write_hf_dir(m, "shape", {{"intermediate_size", 200}});
  EXPECT_EQ(error_message([&] { Model::load(shape.string(), options()); }),
            (shape / "model.safetensors").string() +
                ": tensor model.layers.0.mlp.gate_proj.weight has shape [128, 64], config expects "
                "[200, 64]");
  const fs::path arch = write_hf_dir(m, "arch", {{"architectures", {"GPT2LMHeadModel"}}});
  EXPECT_EQ(error_message([&] { Model::load(arch.string(), options()); }),
            (arch / "config.json").string() +
                ": unsupported architecture GPT2LMHeadModel; supported: LlamaForCausalLM, "
                "MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM, Phi3ForCausalLM, "
                "MixtralForCausalLM, Qwen3MoeForCausalLM");
  fs::remove(dir / "model.safetensors");
  EXPECT_EQ(error_message([&] { Model::load(dir.string(), options()); }),
            dir.string() + ": no *.safetensors files (not a safetensors model directory)");
  fs::remove(dir / "config.json");
  EXPECT_EQ(error_message([&] { Model::load(dir.string(), options()); }),
            dir.string() + ": no config.json (not a Hugging Face model directory)");
  write_file(dir / "notes.txt", Bytes{'h', 'i'});
  EXPECT_EQ(error_message([&] { Model::load((dir / "notes.txt").string(), options()); }),
            (dir / "notes.txt").string() +
                ": not a model (pass a .gguf file or a model directory with config.json)");
  EXPECT_EQ(error_message([&] { Model::load((dir / "nowhere").string(), options()); }),
            (dir / "nowhere").string() + ": no such file or directory");
  for (const fs::path& d : {dir, shape, arch}) fs::remove_all(d);
}

TEST(ModelLoader, AConfigJsonPastTheSizeCapIsRefusedUnread) {
  const TinyModel m = make_model(Variant::kLlama);
  const fs::path dir = write_hf_dir(m, "huge-config");
  std::string text = config_json(m.config).dump();
  text.resize(slimrt::limits::kConfigBytes + 1, ' ');  // still valid JSON: trailing spaces
  std::ofstream(dir / "config.json", std::ios::binary | std::ios::trunc) << text;
  EXPECT_EQ(error_message([&] { Model::load(dir.string(), options()); }),
            (dir / "config.json").string() +
                ": 16777217 bytes is too large for a config.json (the limit is 16777216 bytes)");
  text.resize(slimrt::limits::kConfigBytes);
  std::ofstream(dir / "config.json", std::ios::binary | std::ios::trunc) << text;
  EXPECT_NO_THROW(Model::load(dir.string(), options()));
  fs::remove_all(dir);
}

TEST(ModelLoader, ABiasTheConfigDoesNotAnnounceIsRefusedRatherThanIgnored) {
  TinyModel m = make_model(Variant::kLlama);
  m.shapes["model.layers.0.mlp.down_proj.bias"] = {m.config.hidden_size};
  m.f32["model.layers.0.mlp.down_proj.bias"] = std::vector<float>(m.config.hidden_size, 0.5f);
  const fs::path dir = write_hf_dir(m, "bias");
  EXPECT_EQ(error_message([&] { Model::load(dir.string(), options()); }),
            (dir / "model.safetensors").string() +
                ": tensor model.layers.0.mlp.down_proj.bias: this bias is not supported");
  fs::remove_all(dir);
}

// A tiny llama GGUF: F32 tensors, the values of the builder's byte pattern.
test::GgufBuilder tiny_gguf(uint32_t layers, const std::string& architecture = "llama") {
  test::GgufBuilder g;
  const std::string a = architecture + ".";
  g.str("general.architecture", architecture)
      .u32(a + "block_count", layers)
      .u32(a + "embedding_length", 32)
      .u32(a + "feed_forward_length", 64)
      .u32(a + "attention.head_count", 4)
      .u32(a + "attention.head_count_kv", 2)
      .u32(a + "context_length", 128)
      .u32(a + "vocab_size", 16)
      .f32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  auto add = [&](const std::string& name, std::vector<uint64_t> dims) {
    uint64_t n = 1;
    for (uint64_t d : dims) n *= d;
    g.tensor(name, dims, /*F32*/ 0, n * 4);
  };
  add("token_embd.weight", {32, 16});
  for (uint32_t l = 0; l < std::min<uint32_t>(layers, 1); ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    add(p + "attn_norm.weight", {32});
    add(p + "attn_q.weight", {32, 32});
    add(p + "attn_k.weight", {32, 16});
    add(p + "attn_v.weight", {32, 16});
    if (architecture == "qwen3") {
      add(p + "attn_q_norm.weight", {8});
      add(p + "attn_k_norm.weight", {8});
    }
    add(p + "attn_output.weight", {32, 32});
    add(p + "ffn_norm.weight", {32});
    add(p + "ffn_gate.weight", {32, 64});
    add(p + "ffn_up.weight", {32, 64});
    add(p + "ffn_down.weight", {64, 32});
  }
  add("output_norm.weight", {32});
  return g;
}

TEST(ModelLoader, AGgufFileLoadsUnderHuggingFaceNamesWithQAndKRowsUnpermuted) {
  const fs::path dir = fresh_dir("gguf");
  const Bytes bytes = tiny_gguf(1).bytes();
  write_file(dir / "tiny.gguf", bytes);
  const auto model = Model::load((dir / "tiny.gguf").string(), options());
  EXPECT_EQ(model->format(), "gguf");
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.num_layers, 1);
  EXPECT_EQ(c.head_dim, 8);
  EXPECT_TRUE(c.tie_word_embeddings);  // no output.weight
  EXPECT_EQ(model->metadata().at("general.architecture").string_value, "llama");

  // attn_k: 2 heads of 8 rows of 32. llama.cpp's converter stored HF row (half j, index i) of
  // each head at row 2i + j; the loader puts every row back where HF has it.
  const test::GgufBuilder layout = tiny_gguf(1);
  const Bytes header = layout.bytes(false);
  uint64_t data = header.size();
  while (data % 32) ++data;
  // Offsets in file order: token_embd (32x16), attn_norm (32), attn_q (32x32), then attn_k.
  const uint64_t k_offset = data + (32 * 16 + 32 + 32 * 32) * 4;
  const std::vector<uint16_t> k = model->matrix_bf16("model.layers.0.self_attn.k_proj.weight");
  ASSERT_EQ(k.size(), 16u * 32u);
  for (int64_t row = 0; row < 16; ++row) {
    const int64_t head = row / 8, in_head = row % 8;
    const int64_t stored = head * 8 + (in_head % 4) * 2 + in_head / 4;
    for (int64_t col = 0; col < 32; ++col) {
      float value;
      std::memcpy(&value, bytes.data() + k_offset + (stored * 32 + col) * 4, 4);
      ASSERT_EQ(k[row * 32 + col], cpu::f32_to_bf16(value)) << row << ", " << col;
    }
  }
  // A directory holding one GGUF loads it.
  EXPECT_EQ(Model::load(dir.string(), options())->format(), "gguf");
  fs::remove_all(dir);
}

TEST(ModelLoader, AQwen3GgufLoadsWithItsQkNormsAndQAndKRowsAsStored) {
  const fs::path dir = fresh_dir("gguf_qwen3");
  const Bytes bytes = tiny_gguf(1, "qwen3").bytes();
  write_file(dir / "tiny.gguf", bytes);
  const auto model = Model::load((dir / "tiny.gguf").string(), options());
  const ModelConfig& c = model->config();
  EXPECT_EQ(c.architecture, Architecture::kQwen3);
  EXPECT_TRUE(c.qk_norm);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_EQ(model->vector_f32("model.layers.0.self_attn.k_norm.weight").size(), 8u);
  // llama.cpp's qwen3 converter keeps HF's row order: k_proj is attn_k as stored.
  const test::GgufBuilder layout = tiny_gguf(1, "qwen3");
  uint64_t data = layout.bytes(false).size();
  while (data % 32) ++data;
  const uint64_t k_offset = data + (32 * 16 + 32 + 32 * 32) * 4;
  const std::vector<uint16_t> k = model->matrix_bf16("model.layers.0.self_attn.k_proj.weight");
  ASSERT_EQ(k.size(), 16u * 32u);
  for (int64_t i = 0; i < 16 * 32; ++i) {
    float value;
    std::memcpy(&value, bytes.data() + k_offset + i * 4, 4);
    ASSERT_EQ(k[i], cpu::f32_to_bf16(value)) << i;
  }
  fs::remove_all(dir);
}

TEST(ModelLoader, AGgufBlockCountItsTensorsCannotHoldIsRefusedAtOnce) {
  const fs::path dir = fresh_dir("gguf_huge");
  const std::string file = (dir / "huge.gguf").string();
  write_file(file, tiny_gguf(100000000).bytes());
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(error_message([&] { Model::load(file, options()); }),
            file +
                ": config has 100000000 layers, which need at least 900000002 tensors; it "
                "holds 11");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  write_file(file, tiny_gguf(1, "gpt2").bytes());
  EXPECT_EQ(error_message([&] { Model::load(file, options()); }),
            file +
                ": GGUF architecture 'gpt2' is not supported; slimrt reads 'llama' (Llama, "
                "SmolLM, TinyLlama, ...), 'qwen2' and 'qwen3' GGUF files");
  fs::remove_all(dir);
}

TEST(ModelLoader, LossyCastsAreLoggedThroughTheApplicationsCallback) {
  TinyModel m = make_model(Variant::kLlama);
  // One matrix stored as F32 (its BF16 values widened: the rounding gives them back exactly).
  const std::string name = "model.layers.1.mlp.up_proj.weight";
  std::vector<float> widened;
  for (uint16_t b : m.bf16.at(name)) widened.push_back(cpu::bf16_to_f32(b));
  m.bf16.erase(name);
  m.f32[name] = widened;
  const fs::path dir = write_hf_dir(m, "f32");
  static std::vector<std::string> lines;
  lines.clear();
  set_log_callback(
      [](LogLevel level, const char* text, void*) {
        if (level == LogLevel::kWarning) lines.emplace_back(text);
      },
      nullptr);
  const auto model = Model::load(dir.string(), options());
  set_log_callback(nullptr, nullptr);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], dir.string() + ": rounded 1 F16/F32 matrices to BF16 (LOSSY: nearest even)");
  EXPECT_EQ(model->matrix_bf16(name).size(), widened.size());
  fs::remove_all(dir);
}

// `m` with its layer 0 as every one of `layers` layers (its other layers dropped): with 1, a
// one-layer model; with more, the N-layer model that repeat_layers makes of that one.
TinyModel copies_of_layer_zero(const TinyModel& m, int64_t layers) {
  TinyModel out = m;
  out.config.num_layers = layers;
  const std::string prefix = "model.layers.";
  for (const auto& [name, shape] : m.shapes) {
    if (name.rfind(prefix, 0) != 0) continue;
    out.shapes.erase(name);
    out.bf16.erase(name);
    out.f32.erase(name);
    out.df11.erase(name);
  }
  for (const auto& [name, shape] : m.shapes) {
    if (name.rfind(prefix + "0.", 0) != 0) continue;
    const std::string role = name.substr(prefix.size() + 2);
    for (int64_t l = 0; l < layers; ++l) {
      const std::string copy = prefix + std::to_string(l) + "." + role;
      out.shapes[copy] = shape;
      if (m.bf16.count(name)) out.bf16[copy] = m.bf16.at(name);
      if (m.f32.count(name)) out.f32[copy] = m.f32.at(name);
      if (m.df11.count(name)) out.df11[copy] = m.df11.at(name);
    }
  }
  return out;
}

ModelOptions repeated(const std::string& weights, int64_t layers) {
  ModelOptions o = options(weights);
  o.repeat_layers = layers;
  return o;
}

MemoryUsage engine_memory(const std::shared_ptr<const Model>& model) {
  return Engine(model, test_options("bf16")).memory();
}

// The same model two ways: a one-layer directory loaded with repeat_layers=3, and the
// three-layer directory of its layer written three times. Bit-identical logits, the same arena
// (each copy owns its bytes) and the same engine budget, for BF16 weights, DF11 ones compressed
// while loading (once, then copied) and a DF11 directory kept as stored.
TEST(ModelLoader, RepeatLayersLoadsOneLayerAsCopiesIdenticalToTheDirectoryOfThoseLayers) {
  const TinyModel m = make_model(Variant::kLlama);
  TinyModel one = copies_of_layer_zero(m, 1), three = copies_of_layer_zero(m, 3);
  const fs::path one_dir = write_hf_dir(one, "repeat_one"),
                 three_dir = write_hf_dir(three, "three");
  const auto alone = Model::load(one_dir.string(), options("bf16"));
  std::vector<float> bf16_logits;
  for (const std::string weights : {"bf16", "df11"}) {
    const auto copies = Model::load(one_dir.string(), repeated(weights, 3));
    const auto full = Model::load(three_dir.string(), options(weights));
    EXPECT_EQ(copies->config().num_layers, 3);
    EXPECT_EQ(copies->df11_matrices(), full->df11_matrices()) << weights;
    EXPECT_EQ(copies->weight_bytes(), full->weight_bytes()) << weights;
    const MemoryUsage a = engine_memory(copies), b = engine_memory(full);
    EXPECT_EQ(a.total(), b.total()) << weights;
    EXPECT_EQ(a.kv_pool, b.kv_pool) << weights;
    EXPECT_EQ(copies->matrix_bf16("model.layers.2.mlp.down_proj.weight"),
              m.bf16.at("model.layers.0.mlp.down_proj.weight"));
    EXPECT_EQ(copies->vector_f32("model.layers.2.input_layernorm.weight"),
              m.f32.at("model.layers.0.input_layernorm.weight"));
    const std::vector<float> logits = first_logits(copies, 4);
    EXPECT_EQ(logits, first_logits(full, 4)) << weights;
    if (bf16_logits.empty()) bf16_logits = logits;
    EXPECT_EQ(logits, bf16_logits) << weights;  // DF11 is lossless
    EXPECT_NE(logits, first_logits(alone, 4)) << "two more layers must change the logits";
    EXPECT_NE(copies->summary().find("; one layer copied into 3 (repeat_layers))"),
              std::string::npos)
        << copies->summary();
  }
  // Two copies are two layers' bytes more than the one layer, not shared views of it.
  const auto alone_df11 = Model::load(one_dir.string(), options("df11"));
  const auto two_df11 = Model::load(one_dir.string(), repeated("df11", 2));
  const auto three_df11 = Model::load(one_dir.string(), repeated("df11", 3));
  EXPECT_GT(two_df11->weight_bytes(), alone_df11->weight_bytes());
  EXPECT_EQ(three_df11->weight_bytes() - two_df11->weight_bytes(),
            two_df11->weight_bytes() - alone_df11->weight_bytes());

  one.compress([](const std::string&) { return true; });
  three.compress([](const std::string&) { return true; });
  const fs::path one_df11 = write_hf_dir(one, "repeat_one_df11");
  const fs::path three_df11_dir = write_hf_dir(three, "three_df11");
  const auto stored = Model::load(one_df11.string(), repeated("stored", 3));
  const auto full = Model::load(three_df11_dir.string(), options("stored"));
  EXPECT_EQ(stored->df11_matrices(), 3 * 7 + 2);
  EXPECT_EQ(stored->weight_bytes(), full->weight_bytes());
  EXPECT_EQ(first_logits(stored, 4), first_logits(full, 4));
  EXPECT_EQ(first_logits(stored, 4), bf16_logits);

  // A corrupt layer is refused as without the option (its copies carry its stored checksum).
  TinyModel corrupt = one;
  for (uint8_t& b : corrupt.df11.at("model.layers.0.mlp.up_proj.weight").signmant) b ^= 0x80;
  const fs::path bad = write_hf_dir(corrupt, "repeat_bad");
  const std::string got = error_message([&] { Model::load(bad.string(), repeated("stored", 3)); });
  EXPECT_EQ(got.rfind((bad / "model.safetensors").string() +
                          ": tensor model.layers.0.mlp.up_proj.weight: CRC-32 mismatch",
                      0),
            0u)
      << got;

  // Tensors handed over in memory take the option too.
  const auto given = Model::from_tensors(one.config, one.weights(), repeated("stored", 3));
  EXPECT_EQ(first_logits(given, 4), bf16_logits);
  EXPECT_NE(given->summary().find("; one layer copied into 3 (repeat_layers))"), std::string::npos)
      << given->summary();
  for (const fs::path& d : {one_dir, three_dir, one_df11, three_df11_dir, bad}) fs::remove_all(d);
}

TEST(ModelLoader, RepeatLayersRefusesAModelOfSeveralLayersAndCountsOutOfRange) {
  const TinyModel m = make_model(Variant::kLlama);  // two layers
  const fs::path dir = write_hf_dir(m, "repeat_two");
  test::expect_error([&] { Model::load(dir.string(), repeated("bf16", 3)); },
                     ErrorCategory::kInvalidArgument,
                     dir.string() +
                         ": repeat_layers=3 needs a model with one decoder layer; it "
                         "has 2");
  test::expect_error([&] { Model::from_tensors(m.config, m.weights(), repeated("bf16", 2)); },
                     ErrorCategory::kInvalidArgument,
                     "tensors: repeat_layers=2 needs a model with one decoder layer; it has 2");
  for (const int64_t layers : {int64_t{-1}, int64_t{1025}}) {
    test::expect_error(
        [&] { Model::load(dir.string(), repeated("bf16", layers)); },
        ErrorCategory::kInvalidArgument,
        "options: repeat_layers must be 0 (off) or 1 to 1024, got " + std::to_string(layers));
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace slimrt
