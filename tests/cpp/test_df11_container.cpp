#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "crc32.h"
#include "df11_container.h"
#include "df11_test_data.h"
#include "model_file_builders.h"

namespace {

using slimrt::ErrorCategory;
using slimrt::test::Bytes;
using slimrt::test::StoredTensor;

const std::string kWhere = "model.safetensors";

template <class T>
Bytes bytes_of(const T* data, size_t count) {
  const auto* p = reinterpret_cast<const uint8_t*>(data);
  return Bytes(p, p + count * sizeof(T));
}

// The parts of a file holding DF11 tensor "w" (100 x 96) and a plain tensor "bias", which a
// test edits before building the file.
struct Df11File {
  std::vector<uint16_t> bits = slimrt::test::normal_bf16(100 * 96, 0.02f, 1);
  slimrt::Df11Tensor w = slimrt::df11_compress(bits.data(), bits.size(), {});
  std::vector<StoredTensor> tensors;
  std::map<std::string, std::string> metadata;
  nlohmann::ordered_json description;

  Df11File() {
    const int64_t words = static_cast<int64_t>(w.bitstream.size());
    const int64_t groups = w.view().groups();
    // U32 arrays first: every array's data is then aligned to its element size.
    tensors = {
        {"w.df11.bitstream", "U32", {words}, bytes_of(w.bitstream.data(), w.bitstream.size())},
        {"w.df11.index", "U32", {groups, 17}, bytes_of(w.index.data(), w.index.size())},
        {"bias", "F32", {4}, Bytes(16, 0)},
        {"w.df11.lengths", "U8", {256}, bytes_of(w.lengths.data(), w.lengths.size())},
        {"w.df11.signmant", "U8", {9600}, bytes_of(w.signmant.data(), w.signmant.size())},
    };
    description = {{"format", "slimrt-df11"}, {"version", 1}, {"dtype", "bfloat16"},
                   {"shape", {100, 96}},      {"lanes", 32},  {"lane_elements", 128},
                   {"crc32", w.crc32}};
    metadata = {{"format", "pt"}};
  }

  StoredTensor* find(const std::string& name) {
    for (auto& t : tensors) {
      if (t.name == name) return &t;
    }
    return nullptr;
  }
  void erase(const std::string& name) {
    for (auto it = tensors.begin(); it != tensors.end(); ++it) {
      if (it->name == name) {
        tensors.erase(it);
        return;
      }
    }
  }

  Bytes bytes() const {
    auto all = metadata;
    if (!description.is_null()) all["slimrt.df11:w"] = description.dump();
    return slimrt::test::safetensors_file(tensors, all);
  }
};

std::vector<slimrt::Df11Entry> read(const Bytes& file) {
  const auto header = slimrt::parse_safetensors(file.data(), file.size(), kWhere);
  return slimrt::read_df11_tensors(header, file.data(), kWhere);
}

void expect_bad(const Df11File& f, const std::string& problem) {
  const Bytes file = f.bytes();
  slimrt::test::expect_error([&] { read(file); }, ErrorCategory::kModelFile,
                             kWhere + ": " + problem);
}

TEST(Df11Container, ReadsDf11TensorsAsViewsIntoTheFile) {
  Df11File f;
  const Bytes file = f.bytes();
  const auto entries = read(file);
  ASSERT_EQ(entries.size(), 1u);
  const slimrt::Df11Entry& e = entries[0];
  EXPECT_EQ(e.name, "w");
  EXPECT_EQ(e.shape, (std::vector<int64_t>{100, 96}));
  EXPECT_EQ(e.crc32, f.w.crc32);
  EXPECT_EQ(e.view.numel, 9600);
  EXPECT_EQ(e.view.bitstream_words, static_cast<int64_t>(f.w.bitstream.size()));
  EXPECT_GE(e.view.lengths, file.data());
  EXPECT_LT(e.view.signmant, file.data() + file.size());
  std::vector<uint16_t> out(9600);
  slimrt::df11_decode_cpu(e.view, out.data(), 1);
  EXPECT_EQ(out, f.bits);
  EXPECT_EQ(slimrt::crc32(out.data(), out.size() * 2), e.crc32);
}

TEST(Df11Container, ReadsAnEmptyTensorAndFilesWithoutDf11) {
  Df11File f;
  f.w = slimrt::df11_compress(nullptr, 0, {});
  f.tensors = {
      {"w.df11.bitstream",
       "U32",
       {static_cast<int64_t>(f.w.bitstream.size())},
       bytes_of(f.w.bitstream.data(), f.w.bitstream.size())},
      {"w.df11.index", "U32", {0, 17}, {}},
      {"w.df11.lengths", "U8", {256}, Bytes(256, 0)},
      {"w.df11.signmant", "U8", {0}, {}},
  };
  f.description["shape"] = {0, 3};
  f.description["crc32"] = 0;
  const auto entries = read(f.bytes());
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].view.numel, 0);
  f.description = nullptr;
  f.tensors = {{"bias", "F32", {1}, Bytes(4, 0)}};
  EXPECT_TRUE(read(f.bytes()).empty());
}

TEST(Df11Container, RefusesDescriptionsItCannotRead) {
  const std::string w = "tensor 'w': ";
  const std::pair<const char*, nlohmann::ordered_json> cases[] = {
      {"version", 2},        {"version", "1"},       {"format", "other"}, {"dtype", "float16"},
      {"lanes", 64},         {"lane_elements", 256}, {"shape", {3, -1}},  {"crc32", -5},
      {"crc32", 4294967296}, {"lanes", 32.0},
  };
  const std::string messages[] = {
      "DF11 version 2 is not supported (this slimrt reads version 1); upgrade slimrt",
      "DF11 version '1' is not an integer",
      "unknown format 'other' (expected 'slimrt-df11')",
      "DF11 dtype 'float16' is not supported (only 'bfloat16')",
      "DF11 layout lanes=64, this reader knows lanes=32",
      "DF11 layout lane_elements=256, this reader knows lane_elements=128",
      "DF11 shape [3, -1] is not a list of non-negative integers",
      "DF11 crc32 -5 is not a 32-bit unsigned integer",
      "DF11 crc32 4294967296 is not a 32-bit unsigned integer",
      "DF11 layout lanes=32.0, this reader knows lanes=32",
  };
  for (size_t i = 0; i < std::size(cases); ++i) {
    Df11File f;
    f.description[cases[i].first] = cases[i].second;
    expect_bad(f, w + messages[i]);
  }
  Df11File f;
  f.description.erase("format");
  expect_bad(f, w + "unknown format None (expected 'slimrt-df11')");
  f.description = nullptr;
  f.metadata["slimrt.df11:w"] = "{not json";
  expect_bad(f, w + "DF11 description is not valid JSON: syntax error while parsing object key - "
                    "invalid literal; last read: '{no'; expected string literal at byte 2");
  f.metadata["slimrt.df11:w"] = "[1]";
  expect_bad(f, w + "DF11 description is not a JSON object");
}

TEST(Df11Container, RefusesArraysThatDisagreeWithTheDescription) {
  Df11File f;
  f.description["shape"] = {96, 101};
  expect_bad(f,
             "tensor 'w': DF11 array signmant has shape [9600], expected [9696] for shape "
             "[96, 101]");
  f = Df11File();
  f.find("w.df11.index")->shape = {17, 3};
  expect_bad(f,
             "tensor 'w': DF11 array index has shape [17, 3], expected [3, 17] for shape "
             "[100, 96]");
  f = Df11File();
  StoredTensor* bitstream = f.find("w.df11.bitstream");
  bitstream->shape = {1, bitstream->shape[0]};
  expect_bad(f, "tensor 'w': DF11 array bitstream has shape [1, " +
                    std::to_string(bitstream->shape[1]) + "], expected 1-D");
  f = Df11File();
  StoredTensor* signmant = f.find("w.df11.signmant");
  signmant->dtype = "I8";
  expect_bad(f, "tensor 'w': DF11 array 'w.df11.signmant' is I8, expected U8");
}

TEST(Df11Container, RefusesMissingExtraAndOrphanArrays) {
  Df11File f;
  f.erase("w.df11.bitstream");
  expect_bad(f, "tensor 'w': missing DF11 array 'w.df11.bitstream'");
  f.tensors = {{"bias", "F32", {4}, Bytes(16, 0)}};
  expect_bad(f,
             "tensor 'w': missing DF11 array 'w.df11.lengths', 'w.df11.bitstream', "
             "'w.df11.index', 'w.df11.signmant'");
  f = Df11File();
  f.tensors.push_back({"w.df11.extra", "U8", {2}, Bytes(2, 0)});
  expect_bad(f,
             "tensor 'w': unexpected DF11 array 'w.df11.extra' (version 1 has lengths, "
             "bitstream, index, signmant)");
  f = Df11File();
  f.tensors.push_back({"v.df11.lengths", "U8", {256}, Bytes(256, 0)});
  expect_bad(f,
             "DF11 array 'v.df11.lengths' has no description (no __metadata__ entry "
             "'slimrt.df11:v')");
  f = Df11File();
  f.tensors.push_back({"w", "U8", {2}, Bytes(2, 0)});
  expect_bad(f, "tensor 'w' is stored both plain and as DF11");
}

TEST(Df11Container, RefusesMisalignedUint32Arrays) {
  Df11File f;
  // A 3-byte tensor first moves every array after it off its 4-byte boundary.
  f.tensors.insert(f.tensors.begin(), {"pad", "U8", {3}, Bytes(3, 0)});
  const Bytes file = f.bytes();
  const auto header = slimrt::parse_safetensors(file.data(), file.size(), kWhere);
  slimrt::test::expect_error(
      [&] { slimrt::read_df11_tensors(header, file.data(), kWhere); }, ErrorCategory::kModelFile,
      kWhere + ": tensor 'w': DF11 array 'w.df11.bitstream' starts at byte " +
          std::to_string(header.find("w.df11.bitstream")->begin) +
          ", which is not 4-byte aligned (slimrt's writer aligns it; rewrite the file with "
          "slimrt)");
}

TEST(Df11Container, PrefixesValidationErrorsWithTheTensor) {
  Df11File f;
  StoredTensor* lengths = f.find("w.df11.lengths");
  std::fill(lengths->data.begin(), lengths->data.end(), 0);
  expect_bad(f,
             "tensor 'w': DF11: code lengths do not form a complete prefix code (0 codes, "
             "Kraft sum 0/4096)");
  f = Df11File();
  StoredTensor* bitstream = f.find("w.df11.bitstream");
  const int64_t words = bitstream->shape[0] - 10;
  bitstream->shape = {words};
  bitstream->data.resize(words * 4);
  const Bytes file = f.bytes();
  try {
    read(file);
    FAIL() << "accepted a short bitstream";
  } catch (const slimrt::Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::kModelFile);
    EXPECT_EQ(e.message().rfind(kWhere + ": tensor 'w': DF11: bitstream of " +
                                    std::to_string(words) + " words is too short",
                                0),
              0u)
        << e.message();
  }
}

}  // namespace
