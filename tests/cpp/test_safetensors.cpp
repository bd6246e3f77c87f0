#include <gtest/gtest.h>

#include <string>

#include "model_file_builders.h"
#include "safetensors.h"

namespace {

using slimrt::ErrorCategory;
using slimrt::parse_safetensors;
using slimrt::test::Bytes;
using slimrt::test::safetensors_bytes;

const std::string kWhere = "m.safetensors";

void expect_bad(const Bytes& file, const std::string& problem) {
  slimrt::test::expect_error([&] { parse_safetensors(file.data(), file.size(), kWhere); },
                             ErrorCategory::kModelFile, kWhere + ": " + problem);
}

// One tensor `a` with the given entry JSON and `data` bytes of data.
Bytes one_entry(const std::string& entry, size_t data) {
  return safetensors_bytes("{\"a\":" + entry + "}", data);
}

TEST(Safetensors, ParsesTensorsInDataOrderWithAbsoluteOffsetsAndMetadata) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"b":{"dtype":"U8","shape":[3],"data_offsets":[24,27]},)"
      R"("a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("s":{"dtype":"BF16","shape":[],"data_offsets":[27,29]},)"
      R"("e":{"dtype":"F8_E4M3","shape":[0,5],"data_offsets":[29,29]}})"
      "        ";  // writers pad the header with spaces
  const Bytes file = safetensors_bytes(header, 29);
  const auto h = parse_safetensors(file.data(), file.size(), kWhere);
  EXPECT_EQ(h.data_offset, 8 + header.size());
  EXPECT_EQ(h.metadata, (std::map<std::string, std::string>{{"format", "pt"}}));
  ASSERT_EQ(h.tensors.size(), 4u);
  const char* names[] = {"a", "b", "s", "e"};
  for (int i = 0; i < 4; ++i) EXPECT_EQ(h.tensors[i].name, names[i]);
  const auto& a = h.tensors[0];
  EXPECT_EQ(a.dtype, "F32");
  EXPECT_EQ(a.itemsize, 4);
  EXPECT_EQ(a.shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a.numel, 6);
  EXPECT_EQ(a.begin, h.data_offset);
  EXPECT_EQ(a.end, h.data_offset + 24);
  EXPECT_EQ(h.tensors[2].numel, 1);  // a 0-d tensor holds one element
  EXPECT_EQ(h.tensors[2].itemsize, 2);
  EXPECT_EQ(h.tensors[3].numel, 0);
  EXPECT_EQ(h.tensors[3].itemsize, 1);
  EXPECT_EQ(h.tensors[3].end, file.size());
  EXPECT_EQ(h.find("b"), &h.tensors[1]);
  EXPECT_EQ(h.find("c"), nullptr);
}

TEST(Safetensors, AcceptsAFileWithoutTensors) {
  const Bytes file = safetensors_bytes("{}", 0);
  const auto h = parse_safetensors(file.data(), file.size(), kWhere);
  EXPECT_TRUE(h.tensors.empty());
  EXPECT_TRUE(h.metadata.empty());
}

TEST(Safetensors, RefusesFilesShorterThanTheLengthField) {
  expect_bad({1, 2}, "truncated: file is 2 bytes, too short for the 8-byte header length");
  slimrt::test::expect_error([] { parse_safetensors(nullptr, 0, kWhere); },
                             ErrorCategory::kModelFile,
                             kWhere +
                                 ": truncated: file is 0 bytes, too short for the 8-byte "
                                 "header length");
}

TEST(Safetensors, RefusesHeaderLengthsOverTheLimitWithoutOverflow) {
  expect_bad(safetensors_bytes("{}", 0, uint64_t{1} << 62),
             "header length 4611686018427387904 exceeds the 100000000-byte limit (not a "
             "safetensors file?)");
  expect_bad(safetensors_bytes("{}", 0, UINT64_MAX - 1),
             "header length 18446744073709551614 exceeds the 100000000-byte limit (not a "
             "safetensors file?)");
  expect_bad(safetensors_bytes("{}", 0, 100'000'001),
             "header length 100000001 exceeds the 100000000-byte limit (not a safetensors file?)");
}

TEST(Safetensors, RefusesAHeaderLengthPastTheEnd) {
  expect_bad(safetensors_bytes("{}", 0, 4096),
             "truncated: header length is 4096 bytes but only 2 bytes follow it");
}

TEST(Safetensors, RefusesAHeaderThatIsNotUtf8) {
  expect_bad(safetensors_bytes("\xff\xfe  ", 0),
             "header is not UTF-8 text (invalid start byte at byte 0)");
  expect_bad(safetensors_bytes("{\"\xe2\x82\"}", 0),
             "header is not UTF-8 text (invalid continuation byte at byte 2)");
  expect_bad(safetensors_bytes("{\"a\xc3", 0),
             "header is not UTF-8 text (unexpected end of data at byte 3)");
}

TEST(Safetensors, RefusesAHeaderCutMidJson) {
  expect_bad(safetensors_bytes("{\"a\": ", 0),
             "header is not valid JSON: syntax error while parsing value - unexpected end of "
             "input; expected '[', '{', or a literal at byte 6");
  expect_bad(safetensors_bytes("{\"a\": {\"dtype\": \"F3", 0),
             "header is not valid JSON: syntax error while parsing value - invalid string: "
             "missing closing quote; last read: '\"F3' at byte 19");
}

TEST(Safetensors, RefusesAHeaderThatIsNotAnObject) {
  expect_bad(safetensors_bytes("[1, 2]  ", 0), "header is not a JSON object");
}

TEST(Safetensors, RefusesAKeyListedTwiceAtAnyDepth) {
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]},)"
                               R"("a":{"dtype":"U8","shape":[0],"data_offsets":[0,0]}})",
                               0),
             "header lists 'a' twice");
  expect_bad(safetensors_bytes(R"({"__metadata__":{"k":"1","k":"2"}})", 0),
             "header lists 'k' twice");
}

TEST(Safetensors, RefusesMetadataThatIsNotAMapOfStrings) {
  expect_bad(safetensors_bytes(R"({"__metadata__":["k"]})", 0),
             "__metadata__ is not a JSON object");
  expect_bad(safetensors_bytes(R"({"__metadata__":{"k":1}})", 0),
             "__metadata__ must map strings to strings; 'k' maps to int");
  expect_bad(safetensors_bytes(R"({"__metadata__":{"it's":null}})", 0),
             "__metadata__ must map strings to strings; \"it's\" maps to NoneType");
}

TEST(Safetensors, RefusesMalformedEntries) {
  expect_bad(one_entry("[1]", 0), "tensor 'a': entry is not a JSON object");
  expect_bad(one_entry("{}", 0), "tensor 'a': entry lacks dtype, shape, data_offsets");
  expect_bad(one_entry(R"({"dtype":"U8","shape":[2]})", 0), "tensor 'a': entry lacks data_offsets");
  expect_bad(one_entry(R"({"dtype":"Q4","shape":[2],"data_offsets":[0,2]})", 2),
             "tensor 'a': unknown dtype 'Q4'");
  expect_bad(one_entry(R"({"dtype":5,"shape":[2],"data_offsets":[0,2]})", 2),
             "tensor 'a': unknown dtype 5");
}

TEST(Safetensors, RefusesShapesThatAreNotCounts) {
  expect_bad(one_entry(R"({"dtype":"U8","shape":[-1],"data_offsets":[0,0]})", 0),
             "tensor 'a': shape [-1] is not a list of non-negative integers");
  expect_bad(one_entry(R"({"dtype":"U8","shape":[1.0,true],"data_offsets":[0,0]})", 0),
             "tensor 'a': shape [1.0, True] is not a list of non-negative integers");
  expect_bad(one_entry(R"({"dtype":"U8","shape":"2","data_offsets":[0,2]})", 2),
             "tensor 'a': shape '2' is not a list of non-negative integers");
}

TEST(Safetensors, RefusesShapesWhoseSizeOverflows) {
  expect_bad(
      one_entry(R"({"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]})", 0),
      "tensor 'a': shape [4294967296, 4294967296] of F32 is too large: its byte size "
      "overflows 64-bit integers");
  expect_bad(one_entry(R"({"dtype":"F32","shape":[2305843009213693952],"data_offsets":[0,0]})", 0),
             "tensor 'a': shape [2305843009213693952] of F32 is too large: its byte size "
             "overflows 64-bit integers");
  expect_bad(one_entry(R"({"dtype":"U8","shape":[18446744073709551615],"data_offsets":[0,0]})", 0),
             "tensor 'a': shape [18446744073709551615] of U8 is too large: its byte size "
             "overflows 64-bit integers");
}

TEST(Safetensors, RefusesOffsetsThatAreNotABeginEndPair) {
  expect_bad(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[2,0]})", 2),
             "tensor 'a': data_offsets [2, 0] are not [begin, end] with begin <= end");
  expect_bad(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[-1,1]})", 2),
             "tensor 'a': data_offsets [-1, 1] are not [begin, end] with begin <= end");
  expect_bad(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[0]})", 2),
             "tensor 'a': data_offsets [0] are not [begin, end] with begin <= end");
}

TEST(Safetensors, RefusesOffsetsThatDisagreeWithTheShape) {
  expect_bad(one_entry(R"({"dtype":"F32","shape":[3],"data_offsets":[0,8]})", 8),
             "tensor 'a': shape [3] of F32 needs 12 bytes but data_offsets [0, 8] span 8");
}

TEST(Safetensors, RefusesOffsetsPastTheData) {
  expect_bad(one_entry(R"({"dtype":"F32","shape":[203],"data_offsets":[0,812]})", 400),
             "truncated: header says 812 bytes of data, file has 400");
  expect_bad(one_entry(R"({"dtype":"U8","shape":[0],"data_offsets":[18446744073709551615,)"
                       R"(18446744073709551615]})",
                       0),
             "truncated: header says 18446744073709551615 bytes of data, file has 0");
}

TEST(Safetensors, RefusesOverlappingTensors) {
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                               R"("b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}})",
                               6),
             "tensor 'b' (bytes 2..6) overlaps tensor 'a' (bytes 0..4)");
  // An empty tensor inside another one is refused too, as the official reader refuses it.
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                               R"("b":{"dtype":"U8","shape":[0],"data_offsets":[2,2]}})",
                               4),
             "tensor 'b' (bytes 2..2) overlaps tensor 'a' (bytes 0..4)");
}

TEST(Safetensors, RefusesGapsBetweenOrBeforeTensors) {
  expect_bad(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[1,3]})", 3),
             "1 unused bytes before tensor 'a' (bytes 1..3): the tensors must cover the data "
             "section without gaps");
  expect_bad(safetensors_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                               R"("b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
                               4),
             "1 unused bytes before tensor 'b' (bytes 3..4): the tensors must cover the data "
             "section without gaps");
}

TEST(Safetensors, RefusesTrailingBytesAfterTheLastTensor) {
  expect_bad(one_entry(R"({"dtype":"U8","shape":[2],"data_offsets":[0,2]})", 3),
             "1 trailing bytes after the last tensor's data: the data section has 3 bytes, the "
             "tensors cover 2");
  expect_bad(safetensors_bytes("{}", 4),
             "4 trailing bytes after the header (it lists no tensors): the data section has 4 "
             "bytes, the tensors cover 0");
}

TEST(Safetensors, AcceptsEmptyTensorsAtTheEndOfTheData) {
  const Bytes file = safetensors_bytes(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                       R"("b":{"dtype":"U8","shape":[0],"data_offsets":[4,4]}})",
                                       4);
  EXPECT_EQ(parse_safetensors(file.data(), file.size(), kWhere).tensors.size(), 2u);
}

TEST(Safetensors, RefusesDeepNestingBeforeBuildingIt) {
  const int depth = 100'000;  // deep enough to overflow the stack of a recursive parser
  const std::string shape = std::string(depth, '[') + std::string(depth, ']');
  expect_bad(one_entry(R"({"dtype":"U8","shape":)" + shape + R"(,"data_offsets":[0,0]})", 0),
             "header nests values more than 64 levels deep");
}

TEST(Safetensors, QuotesNestedValuesShortly) {
  const std::string shape = std::string(40, '[') + std::string(40, ']');
  expect_bad(one_entry(R"({"dtype":"U8","shape":)" + shape + R"(,"data_offsets":[0,0]})", 0),
             "tensor 'a': shape [[[[[[[[[[[[[[[[[...]]]]]]]]]]]]]]]]] is not a list of "
             "non-negative integers");
}

TEST(Safetensors, RefusesNumbersNoDoubleHolds) {
  expect_bad(one_entry(R"({"dtype":"U8","shape":[1e400],"data_offsets":[0,0]})", 0),
             "header is not valid JSON: number overflow parsing '1e400' at byte 32");
}

TEST(Safetensors, EveryPrefixOfAValidFileIsRefusedCleanly) {
  const Bytes file = safetensors_bytes(
      R"({"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8);
  ASSERT_NO_THROW(parse_safetensors(file.data(), file.size(), kWhere));
  for (size_t n = 0; n < file.size(); ++n) {
    const Bytes prefix(file.begin(), file.begin() + n);
    try {
      parse_safetensors(prefix.data(), prefix.size(), kWhere);
      ADD_FAILURE() << "accepted a prefix of " << n << " bytes";
    } catch (const slimrt::Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::kModelFile) << e.message();
    }
  }
}

}  // namespace
