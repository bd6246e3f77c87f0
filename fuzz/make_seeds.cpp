// Writes the seed corpora of the fuzz targets (fuzz/corpus/TARGET/): small valid inputs of each
// kind, built with the writers the C++ tests use (tests/cpp/model_file_builders.h) and
// df11_compress, so that a fuzzer starts from files the parsers accept.
//
//   build/fuzz/fuzz/slimrt_fuzz_seeds fuzz/corpus      # rewrites the generated seeds
//
// Crashers found by fuzzing live beside them as crash-*; this program leaves those alone.
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "df11_test_data.h"
#include "model_file_builders.h"
#include "slimrt/df11.h"

namespace {

namespace fs = std::filesystem;
using slimrt::test::Bytes;
using slimrt::test::StoredTensor;

void write(const fs::path& dir, const std::string& name, const Bytes& bytes) {
  fs::create_directories(dir);
  std::ofstream out(dir / name, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
}

void write_text(const fs::path& dir, const std::string& name, const std::string& text) {
  write(dir, name, Bytes(text.begin(), text.end()));
}

template <class T>
Bytes bytes_of(const std::vector<T>& v) {
  const auto* p = reinterpret_cast<const uint8_t*>(v.data());
  return Bytes(p, p + v.size() * sizeof(T));
}

slimrt::Df11Tensor compress(int64_t n, uint32_t seed) {
  const std::vector<uint16_t> bits = slimrt::test::normal_bf16(n, 0.02f, seed);
  return slimrt::df11_compress(bits.data(), n, {1, 1});
}

// The safetensors arrays and __metadata__ description of DF11 tensor `name`, as slimrt's
// writer lays them out (U32 arrays first, so every array is aligned).
void add_df11(const std::string& name, const std::vector<int64_t>& shape,
              const slimrt::Df11Tensor& t, std::vector<StoredTensor>& tensors,
              std::map<std::string, std::string>& metadata) {
  const int64_t groups = t.view().groups();
  tensors.push_back(
      {name + ".df11.bitstream", "U32", {int64_t(t.bitstream.size())}, bytes_of(t.bitstream)});
  tensors.push_back({name + ".df11.index", "U32", {groups, 17}, bytes_of(t.index)});
  tensors.push_back(
      {name + ".df11.lengths", "U8", {256}, Bytes(t.lengths.begin(), t.lengths.end())});
  tensors.push_back({name + ".df11.signmant", "U8", {t.numel}, bytes_of(t.signmant)});
  const nlohmann::ordered_json description = {
      {"format", "slimrt-df11"}, {"version", 1}, {"dtype", "bfloat16"},
      {"shape", shape},          {"lanes", 32},  {"lane_elements", 128},
      {"crc32", t.crc32}};
  metadata["slimrt.df11:" + name] = description.dump();
}

// slimrt::fuzz::df11_arrays' layout (fuzz_targets.h): lengths, uint16 count, index, signmant,
// bitstream.
Bytes raw_df11(const slimrt::Df11Tensor& t) {
  Bytes out(t.lengths.begin(), t.lengths.end());
  out.push_back(static_cast<uint8_t>(t.numel));
  out.push_back(static_cast<uint8_t>(t.numel >> 8));
  for (const Bytes& part : {bytes_of(t.index), bytes_of(t.signmant), bytes_of(t.bitstream)}) {
    out.insert(out.end(), part.begin(), part.end());
  }
  return out;
}

Bytes bf16_bytes(int64_t n, uint32_t seed) {
  return bytes_of(slimrt::test::normal_bf16(n, 1, seed));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path root = argv[1];

  const fs::path st = root / "safetensors";
  write(st, "seed-two-tensors",
        slimrt::test::safetensors_file(
            {{"w", "BF16", {4, 3}, bf16_bytes(12, 1)}, {"b", "F32", {3}, Bytes(12, 0)}},
            {{"format", "pt"}}));
  write(
      st, "seed-scalar-and-empty",
      slimrt::test::safetensors_file(
          {{"s", "I64", {}, Bytes(8, 7)}, {"e", "F16", {0, 5}, {}}, {"u", "U8", {2}, Bytes{1, 2}}},
          {}));
  write(st, "seed-no-tensors", slimrt::test::safetensors_file({}, {}));

  const fs::path df = root / "df11_file";
  const fs::path raw = root / "df11_arrays";
  const slimrt::Df11Tensor small = compress(300, 2), two_groups = compress(4096 + 200, 3),
                           one = compress(1, 4), empty = compress(0, 5);
  {
    std::vector<StoredTensor> tensors;
    std::map<std::string, std::string> metadata = {{"format", "pt"}};
    add_df11("w", {20, 15}, small, tensors, metadata);
    tensors.push_back({"norm", "BF16", {15}, bf16_bytes(15, 6)});
    write(df, "seed-one-group", slimrt::test::safetensors_file(tensors, metadata));
  }
  {
    std::vector<StoredTensor> tensors;
    std::map<std::string, std::string> metadata;
    // In this order every U32 array stays 4-byte aligned: only b's 1-byte signmant is odd.
    add_df11("a", {4296}, two_groups, tensors, metadata);
    add_df11("c", {0}, empty, tensors, metadata);
    add_df11("b", {1, 1}, one, tensors, metadata);
    write(df, "seed-three-tensors", slimrt::test::safetensors_file(tensors, metadata));
  }
  write(raw, "seed-300", raw_df11(small));
  write(raw, "seed-4296", raw_df11(two_groups));
  write(raw, "seed-1", raw_df11(one));
  write(raw, "seed-0", raw_df11(empty));

  const fs::path gg = root / "gguf";
  write(gg, "seed-metadata-and-tensors",
        slimrt::test::GgufBuilder()
            .str("general.architecture", "llama")
            .u32("llama.block_count", 1)
            .f32("llama.attention.layer_norm_rms_epsilon", 1e-5f)
            .strings("tokenizer.ggml.tokens", {"<s>", "</s>", "a"})
            .array<int32_t>("tokenizer.ggml.token_type", 5, {1, 3, 1})
            .raw("general.flag", 7, {1})
            .tensor("token_embd.weight", {32, 3}, 8, 3 * 34)
            .tensor("output_norm.weight", {32}, 0, 32 * 4)
            .bytes());
  write(gg, "seed-v2-aligned",
        slimrt::test::GgufBuilder(2)
            .alignment(64)
            .tensor("t", {256, 2}, 12, 2 * 144)
            .tensor("u", {4}, 30, 8)
            .bytes());

  const fs::path cf = root / "config";
  write_text(cf, "seed-llama3",
             R"({"architectures": ["LlamaForCausalLM"], "vocab_size": 384, "hidden_size": 64,
"intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
"num_key_value_heads": 2, "rms_norm_eps": 1e-05, "max_position_embeddings": 256,
"rope_theta": 500000.0, "tie_word_embeddings": true, "attention_bias": false,
"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
"high_freq_factor": 4.0, "original_max_position_embeddings": 128}, "hidden_act": "silu"})");
  write_text(cf, "seed-qwen2",
             R"({"architectures": ["Qwen2ForCausalLM"], "vocab_size": 384, "hidden_size": 64,
"intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 4,
"num_key_value_heads": 4, "rms_norm_eps": 1e-06, "max_position_embeddings": 512,
"use_sliding_window": true, "sliding_window": 128, "rope_theta": 1000000.0})");
  write_text(cf, "seed-qwen3",
             R"({"architectures": ["Qwen3ForCausalLM"], "vocab_size": 384, "hidden_size": 64,
"intermediate_size": 96, "num_hidden_layers": 1, "num_attention_heads": 2, "head_dim": 32,
"num_key_value_heads": 1, "rms_norm_eps": 1e-06, "max_position_embeddings": 512,
"rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0}})");
  write_text(cf, "seed-mistral",
             R"({"architectures": ["MistralForCausalLM"], "vocab_size": 100, "hidden_size": 32.0,
"intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "head_dim": null,
"rms_norm_eps": 1e-05, "max_position_embeddings": 64, "sliding_window": 16,
"mlp_bias": false, "partial_rotary_factor": 1.0})");
  return 0;
}
