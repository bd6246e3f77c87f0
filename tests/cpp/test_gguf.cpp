#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>

#include "gguf.h"
#include "input_limits.h"
#include "model_file_builders.h"

namespace {

using slimrt::ErrorCategory;
using slimrt::GgufValue;
using slimrt::parse_gguf;
using slimrt::test::Bytes;
using slimrt::test::GgufBuilder;

const std::string kWhere = "model.gguf";
constexpr uint32_t kF32 = 0, kQ4_1 = 3, kQ8_0 = 8;
constexpr uint32_t kInt8 = 1, kUint16 = 2, kInt32 = 5, kBool = 7, kString = 8, kArray = 9,
                   kUint64 = 10, kInt64 = 11, kFloat64 = 12;

slimrt::GgufFile parse(const Bytes& file) { return parse_gguf(file.data(), file.size(), kWhere); }

void expect_bad(const Bytes& file, const std::string& problem,
                ErrorCategory category = ErrorCategory::kModelFile) {
  slimrt::test::expect_error([&] { parse(file); }, category, kWhere + ": " + problem);
}

template <class T>
Bytes le(T value) {
  Bytes out;
  slimrt::test::append_le(out, value);
  return out;
}

Bytes concat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// A small file with a value of every kind and two tensors, as a real model has them.
GgufBuilder small_model() {
  GgufBuilder b;
  b.str("general.architecture", "llama")
      .u32("llama.block_count", 30)
      .f32("llama.rope.freq_base", 100000.0f)
      .raw("general.flag", kBool, {1})
      .raw("test.i8", kInt8, {0xFE})
      .raw("test.u64", kUint64, le<uint64_t>(UINT64_MAX))
      .raw("test.i64", kInt64, le<int64_t>(-5))
      .raw("test.f64", kFloat64, le<double>(0.1))
      .strings("tokenizer.ggml.tokens", {"<s>", "", "héllo"})
      .array<int32_t>("tokenizer.ggml.token_type", kInt32, {1, -3, 6})
      .array<uint8_t>("test.bools", kBool, {1, 0})
      .array<float>("test.scores", 6, {0.5f, -1.25f})
      .tensor("token_embd.weight", {32, 3}, kQ4_1, 3 * 20)
      .tensor("output_norm.weight", {5}, kF32, 20);
  return b;
}

TEST(Gguf, ParsesMetadataOfEveryKindAndTensorInfos) {
  const Bytes file = small_model().bytes();
  const slimrt::GgufFile g = parse(file);
  EXPECT_EQ(g.version, 3u);
  EXPECT_EQ(g.metadata.size(), 12u);
  EXPECT_EQ(g.find("general.architecture")->kind, GgufValue::Kind::kString);
  EXPECT_EQ(g.find("general.architecture")->string_value, "llama");
  EXPECT_EQ(g.find("llama.block_count")->kind, GgufValue::Kind::kUint);
  EXPECT_EQ(g.find("llama.block_count")->type, 4u);
  EXPECT_EQ(g.find("llama.block_count")->uint_value, 30u);
  EXPECT_EQ(g.find("llama.rope.freq_base")->float_value, 100000.0);
  EXPECT_TRUE(g.find("general.flag")->bool_value);
  EXPECT_EQ(g.find("test.i8")->int_value, -2);
  EXPECT_EQ(g.find("test.u64")->uint_value, UINT64_MAX);
  EXPECT_EQ(g.find("test.i64")->int_value, -5);
  EXPECT_EQ(g.find("test.f64")->float_value, 0.1);
  EXPECT_EQ(g.find("absent"), nullptr);

  const GgufValue& tokens = *g.find("tokenizer.ggml.tokens");
  EXPECT_EQ(tokens.kind, GgufValue::Kind::kArray);
  EXPECT_EQ(tokens.type, kString);
  ASSERT_EQ(tokens.count, 3u);
  EXPECT_EQ(tokens.offsets, (std::vector<uint64_t>{0, 3, 3, 9}));
  EXPECT_EQ(tokens.string_at(0), "<s>");
  EXPECT_EQ(tokens.string_at(1), "");
  EXPECT_EQ(tokens.string_at(2), "héllo");
  EXPECT_TRUE(tokens.rows.empty());
  EXPECT_EQ(g.find("tokenizer.ggml.token_type")->ints, (std::vector<int64_t>{1, -3, 6}));
  EXPECT_EQ(g.find("test.bools")->ints, (std::vector<int64_t>{1, 0}));
  EXPECT_EQ(g.find("test.scores")->floats, (std::vector<double>{0.5, -1.25}));

  ASSERT_EQ(g.tensors.size(), 2u);
  EXPECT_EQ(g.alignment, 32u);
  EXPECT_EQ(g.data_offset % 32, 0u);
  EXPECT_EQ(g.data_offset + 84, file.size());  // 60 bytes, then 20 at the next aligned offset
  const slimrt::GgufTensorInfo& embd = g.tensors[0];
  EXPECT_EQ(embd.name, "token_embd.weight");
  EXPECT_EQ(embd.dims, (std::vector<int64_t>{32, 3}));
  EXPECT_EQ(embd.type, kQ4_1);
  EXPECT_EQ(embd.numel, 96);
  EXPECT_EQ(embd.begin, g.data_offset);
  EXPECT_EQ(embd.end, g.data_offset + 60);
  EXPECT_EQ(g.tensor("output_norm.weight"), &g.tensors[1]);
  EXPECT_EQ(g.tensors[1].begin, g.data_offset + 64);
  EXPECT_EQ(g.tensor("output.weight"), nullptr);
}

TEST(Gguf, ReadsVersion2AndACustomAlignment) {
  GgufBuilder b(2);
  b.alignment(64).tensor("a", {1}, kF32, 4).tensor("b", {1}, kF32, 4);
  const slimrt::GgufFile g = parse(b.bytes());
  EXPECT_EQ(g.version, 2u);
  EXPECT_EQ(g.alignment, 64u);
  EXPECT_EQ(g.data_offset % 64, 0u);
  EXPECT_EQ(g.tensors[1].begin, g.data_offset + 64);
  EXPECT_EQ(g.find("general.alignment")->uint_value, 64u);
}

TEST(Gguf, KeepsOneLevelOfNestedArraysFlat) {
  // An array of two INT32 arrays, as gguf-py writes [[1, 2], [3]].
  const Bytes nested = concat({le<uint32_t>(kArray), le<uint64_t>(2), le<uint32_t>(kInt32),
                               le<uint64_t>(2), le<int32_t>(1), le<int32_t>(2),
                               le<uint32_t>(kInt32), le<uint64_t>(1), le<int32_t>(3)});
  const slimrt::GgufFile g = parse(GgufBuilder().raw("test.nested", kArray, nested).bytes());
  const GgufValue& v = *g.find("test.nested");
  EXPECT_EQ(v.type, uint32_t{kInt32});
  EXPECT_EQ(v.count, 3u);
  EXPECT_EQ(v.ints, (std::vector<int64_t>{1, 2, 3}));
  EXPECT_EQ(v.rows, (std::vector<uint64_t>{0, 2, 3}));
}

TEST(Gguf, RefusesDeeperOrMixedNestingAsUnsupported) {
  const Bytes deeper =
      concat({le<uint32_t>(kArray), le<uint64_t>(1), le<uint32_t>(kArray), le<uint64_t>(0)});
  expect_bad(GgufBuilder().raw("k", kArray, deeper).bytes(),
             "key 'k': arrays nested more than one level deep are not supported",
             ErrorCategory::kUnsupported);
  const Bytes mixed = concat({le<uint32_t>(kArray), le<uint64_t>(2), le<uint32_t>(kInt32),
                              le<uint64_t>(0), le<uint32_t>(kString), le<uint64_t>(0)});
  expect_bad(GgufBuilder().raw("k", kArray, mixed).bytes(),
             "key 'k': inner arrays of INT32 and STRING elements in one array are not supported",
             ErrorCategory::kUnsupported);
}

TEST(Gguf, RefusesABadMagic) {
  Bytes file = small_model().bytes();
  std::memcpy(file.data(), "GGML", 4);
  expect_bad(file, "not a GGUF file (magic 'GGML', expected 'GGUF')");
  std::memcpy(file.data(),
              "\x7f"
              "ELF",
              4);
  expect_bad(file, "not a GGUF file (magic '\\x7fELF', expected 'GGUF')");
}

TEST(Gguf, RefusesVersionsOtherThan2And3) {
  expect_bad(GgufBuilder(1).bytes(),
             "GGUF version 1 is not supported (slimrt reads versions 2 and 3)",
             ErrorCategory::kUnsupported);
  expect_bad(GgufBuilder(0x03000000).bytes(),
             "big-endian GGUF files are not supported (version field 50331648)",
             ErrorCategory::kUnsupported);
  expect_bad(GgufBuilder(7).bytes(), "unknown GGUF version 7 (slimrt reads versions 2 and 3)");
  expect_bad(GgufBuilder(0).bytes(), "unknown GGUF version 0 (slimrt reads versions 2 and 3)");
}

TEST(Gguf, RefusesAFileCutInItsHeader) {
  const Bytes file = small_model().bytes();
  expect_bad(Bytes(file.begin(), file.begin() + 2),
             "truncated at byte 0: the magic needs 4 bytes, the file has 2");
  expect_bad(Bytes(file.begin(), file.begin() + 12),
             "truncated at byte 8: the tensor count needs 8 bytes, the file has 12");
  expect_bad(Bytes(file.begin(), file.begin() + 24),
             "truncated at byte 16: tensor count 2: the tensor infos need at least 32 bytes each, "
             "the file has 24");
  const Bytes no_tensors = GgufBuilder().u32("k", 1).bytes();
  expect_bad(Bytes(no_tensors.begin(), no_tensors.begin() + 24),
             "truncated at byte 24: key-value count 1: the pairs need at least 13 bytes each, the "
             "file has 24");
}

TEST(Gguf, RefusesHugeCountsQuicklyWithoutAllocating) {
  const auto start = std::chrono::steady_clock::now();
  Bytes file = small_model().bytes();
  const size_t size = file.size();
  std::memset(file.data() + 8, 0xFF, 8);  // the tensor count
  expect_bad(file,
             "truncated at byte 16: tensor count 18446744073709551615: the tensor infos "
             "need at least 32 bytes each, the file has " +
                 std::to_string(size));
  file = small_model().bytes();
  std::memset(file.data() + 16, 0xFF, 8);  // the key-value count
  expect_bad(file,
             "truncated at byte 24: key-value count 18446744073709551615: the pairs need at "
             "least 13 bytes each, the file has " +
                 std::to_string(size));
  file = small_model().bytes();
  std::memset(file.data() + 24, 0xFF, 8);  // the length of the first key's name
  expect_bad(file,
             "truncated at byte 32: the name of key 0 needs 18446744073709551615 bytes, the "
             "file has " +
                 std::to_string(size));
  // An array length of 2^40 strings, then of 2^60 UINT64s.
  const Bytes huge =
      GgufBuilder()
          .raw("k", kArray, concat({le<uint32_t>(kString), le<uint64_t>(uint64_t{1} << 40)}))
          .bytes(false);
  expect_bad(huge,
             "truncated at byte 49: key 'k': 1099511627776 STRING elements need at least 8 "
             "bytes each, the file has 49");
  const Bytes wide =
      GgufBuilder()
          .raw("k", kArray, concat({le<uint32_t>(kUint64), le<uint64_t>(uint64_t{1} << 60)}))
          .bytes(false);
  expect_bad(wide,
             "truncated at byte 49: key 'k': 1152921504606846976 UINT64 elements need at "
             "least 8 bytes each, the file has 49");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

TEST(Gguf, RefusesArraysPastTheElementCap) {
  // The cap counts elements, not bytes: UINT8 elements decode to 8 bytes each.
  const uint64_t cap = slimrt::limits::kGgufArrayElements;
  const Bytes file = GgufBuilder().array("k", 0, std::vector<uint8_t>(cap + 1, 1)).bytes(false);
  expect_bad(file, "key 'k': 16777217 array elements exceed the limit of 16777216");
  const Bytes at_cap = GgufBuilder().array("k", 0, std::vector<uint8_t>(cap, 1)).bytes(false);
  EXPECT_EQ(parse(at_cap).find("k")->count, cap);
  // Inner arrays count together: they are decoded into one list.
  Bytes nested = concat({le<uint32_t>(kArray), le<uint64_t>(2)});
  for (int i = 0; i < 2; ++i) {
    nested = concat({nested, le<uint32_t>(0), le<uint64_t>(cap / 2 + 1), Bytes(cap / 2 + 1, 1)});
  }
  expect_bad(GgufBuilder().raw("n", kArray, nested).bytes(false),
             "key 'n': 16777218 array elements exceed the limit of 16777216");
}

TEST(Gguf, RefusesStringsAndArraysPastTheEnd) {
  expect_bad(GgufBuilder().raw("general.name", kString, le<uint64_t>(10)).bytes(false),
             "truncated at byte 56: the value of key 'general.name' needs 10 bytes, the file has "
             "56");
  const Bytes short_tokens = concat({le<uint32_t>(kString), le<uint64_t>(2), le<uint64_t>(1),
                                     Bytes{'a'}, le<uint64_t>(5), Bytes{'b'}});
  expect_bad(GgufBuilder().raw("tokenizer.ggml.tokens", kArray, short_tokens).bytes(false),
             "truncated at byte 86: string 1 of key 'tokenizer.ggml.tokens' needs 5 bytes, the "
             "file has 87");
  const Bytes short_ints = concat({le<uint32_t>(kInt32), le<uint64_t>(3), le<int32_t>(1)});
  expect_bad(GgufBuilder().raw("k", kArray, short_ints).bytes(false),
             "truncated at byte 49: key 'k': 3 INT32 elements need at least 4 bytes each, the file "
             "has 53");
}

TEST(Gguf, RefusesUnknownValueTypesAndBadBooleans) {
  expect_bad(GgufBuilder().raw("k", 13, {0, 0, 0, 0}).bytes(), "key 'k' has unknown value type 13");
  expect_bad(GgufBuilder().raw("k", kArray, concat({le<uint32_t>(99), le<uint64_t>(0)})).bytes(),
             "key 'k': unknown array element type 99");
  expect_bad(GgufBuilder().raw("k", kBool, {2}).bytes(),
             "key 'k': BOOL value 2 is neither 0 nor 1");
  expect_bad(GgufBuilder().array<uint8_t>("k", kBool, {1, 0, 7}).bytes(),
             "key 'k': element 2: BOOL value 7 is neither 0 nor 1");
}

TEST(Gguf, RefusesDuplicateKeysAndTensorNames) {
  expect_bad(GgufBuilder().u32("k", 1).u32("k", 2).bytes(), "key 'k' is listed twice");
  expect_bad(GgufBuilder().tensor("w", {1}, kF32, 4).tensor("w", {1}, kF32, 4).bytes(),
             "tensor 'w' is listed twice");
}

TEST(Gguf, RefusesNamesThatAreNotUtf8) {
  expect_bad(GgufBuilder().u32("bad\xff", 1).bytes(),
             "the name of key 0 is not UTF-8 text (invalid start byte at byte 3 of it)");
  expect_bad(GgufBuilder().tensor("w\xc3", {1}, kF32, 4).bytes(),
             "the name of tensor 0 is not UTF-8 text (unexpected end of data at byte 1 of it)");
}

TEST(Gguf, RefusesBadAlignments) {
  expect_bad(GgufBuilder().raw("general.alignment", kInt32, le<int32_t>(32)).bytes(),
             "general.alignment has type INT32, expected UINT32");
  expect_bad(GgufBuilder().u32("general.alignment", 0).bytes(),
             "general.alignment 0 is not a power of two greater than 0");
  expect_bad(GgufBuilder().u32("general.alignment", 48).bytes(),
             "general.alignment 48 is not a power of two greater than 0");
}

TEST(Gguf, RefusesBadDimensions) {
  expect_bad(GgufBuilder().tensor("w", {}, kF32, 4).bytes(),
             "tensor 'w' has 0 dimensions (GGUF allows 1 to 4)");
  expect_bad(GgufBuilder().tensor("w", {1, 1, 1, 1, 1}, kF32, 4).bytes(),
             "tensor 'w' has 5 dimensions (GGUF allows 1 to 4)");
  expect_bad(GgufBuilder().tensor("w", {4, 0}, kF32, 0).bytes(), "tensor 'w': dimension 1 is 0");
  expect_bad(GgufBuilder().tensor("w", {uint64_t{1} << 32, uint64_t{1} << 31}, kF32, 4).bytes(),
             "tensor 'w': dimension 1 (2147483648) makes the element count overflow 64-bit "
             "integers");
  expect_bad(GgufBuilder().tensor("w", {UINT64_MAX}, kF32, 4).bytes(),
             "tensor 'w': dimension 0 (18446744073709551615) makes the element count overflow "
             "64-bit integers");
  expect_bad(GgufBuilder().tensor("w", {uint64_t{1} << 62}, 28, 4).bytes(),
             "tensor 'w': 4611686018427387904 elements of F64 make the byte size overflow 64-bit "
             "integers");
}

TEST(Gguf, RefusesUnknownTypesAndRowsThatAreNoWholeBlocks) {
  expect_bad(GgufBuilder().tensor("w", {32}, 4, 18).bytes(), "tensor 'w' has unknown ggml type 4");
  expect_bad(GgufBuilder().tensor("w", {32}, 99, 18).bytes(),
             "tensor 'w' has unknown ggml type 99");
  expect_bad(
      GgufBuilder().tensor("w", {33, 2}, kQ8_0, 68).bytes(),
      "tensor 'w' of type Q8_0 has 33 elements per row, not a multiple of its block size 32");
}

TEST(Gguf, RefusesMisplacedTensorData) {
  expect_bad(GgufBuilder().tensor("w", {1}, kF32, 4, 4).bytes(),
             "tensor 'w' has data offset 4, not a multiple of the alignment 32");
  Bytes file = GgufBuilder().tensor("w", {64}, kF32, 256).bytes();
  file.resize(file.size() - 1);
  const uint64_t data_offset = file.size() + 1 - 256;
  expect_bad(file,
             "truncated: tensor 'w' (F32) needs 256 bytes at data offset 0, the data "
             "section from byte " +
                 std::to_string(data_offset) + " has 255");
  expect_bad(GgufBuilder().tensor("w", {1}, kF32, 4, uint64_t{1} << 63).bytes(false),
             "truncated: tensor 'w' (F32) needs 4 bytes at data offset 9223372036854775808, the "
             "data section from byte 64 has 0");
  expect_bad(GgufBuilder().tensor("a", {16}, kF32, 64, 0).tensor("b", {8}, kF32, 32, 32).bytes(),
             "tensor 'b' (data bytes 32..64) overlaps tensor 'a' (data bytes 0..64)");
}

TEST(Gguf, NamesEveryGgmlTypeAndItsBlocks) {
  EXPECT_STREQ(slimrt::ggml_type_name(kQ4_1), "Q4_1");
  EXPECT_STREQ(slimrt::ggml_type_name(30), "BF16");
  EXPECT_STREQ(slimrt::ggml_type_name(99), "type 99");
  EXPECT_EQ(slimrt::ggml_type_info(14)->type_size, 210);  // Q6_K
  EXPECT_EQ(slimrt::ggml_type_info(14)->block_size, 256);
  EXPECT_EQ(slimrt::ggml_type_info(5), nullptr);  // Q4_3, retired
  EXPECT_STREQ(slimrt::gguf_value_type_name(kFloat64), "FLOAT64");
  EXPECT_STREQ(slimrt::gguf_value_type_name(kUint16), "UINT16");
}

TEST(Gguf, EveryPrefixOfAValidFileIsRefusedCleanly) {
  const Bytes file = small_model().bytes();
  ASSERT_NO_THROW(parse(file));
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes prefix(file.begin(), file.begin() + n);
    try {
      parse(prefix);
      ADD_FAILURE() << "accepted a prefix of " << n << " bytes";
    } catch (const slimrt::Error& e) {
      ASSERT_EQ(e.category(), ErrorCategory::kModelFile) << n << ": " << e.message();
    }
  }
}

TEST(Gguf, EverySingleByteCorruptionIsAcceptedOrRefusedCleanly) {
  const Bytes file = small_model().bytes();
  for (size_t i = 0; i < file.size(); ++i) {
    for (const uint8_t value : {uint8_t{0x00}, uint8_t{0x80}, uint8_t{0xFF}}) {
      Bytes corrupt = file;
      corrupt[i] = value;
      try {
        parse(corrupt);
      } catch (const slimrt::Error& e) {
        ASSERT_NE(e.category(), ErrorCategory::kInternal) << i << ": " << e.message();
      }
    }
  }
}

}  // namespace
