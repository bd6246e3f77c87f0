#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "check.h"
#include "df11_test_data.h"
#include "slimrt/df11.h"

namespace {

// Expects df11_validate to throw a slimrt::Error whose message contains `needle`.
void expect_rejected(const slimrt::Df11View& view, const std::string& needle) {
  try {
    slimrt::df11_validate(view);
    FAIL() << "accepted a view that should fail with: " << needle;
  } catch (const slimrt::Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

class Df11Validate : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto in = slimrt::test::normal_bf16(3 * 4096 + 100, 0.02f, 4);
    tensor = slimrt::df11_compress(in.data(), in.size(), {});
  }
  slimrt::Df11Tensor tensor;
};

TEST_F(Df11Validate, AcceptsWhatTheEncoderWrites) {
  EXPECT_NO_THROW(slimrt::df11_validate(tensor.view()));
}

TEST_F(Df11Validate, RejectsCodeLengthsOverTheLimit) {
  tensor.lengths[200] = 13;
  expect_rejected(tensor.view(), "exceeds 12");
}

TEST_F(Df11Validate, RejectsAnIncompleteCode) {
  uint8_t* shortest = nullptr;
  for (auto& len : tensor.lengths) {
    if (len && (!shortest || len < *shortest)) shortest = &len;
  }
  ++*shortest;
  expect_rejected(tensor.view(), "complete prefix code");
}

TEST_F(Df11Validate, RejectsLaneOffsetsThatRunBackwards) {
  tensor.index[1 * slimrt::df11::kIndexWords + 5] = 0x0001'FFFF;  // group 1, lanes 8 and 9
  expect_rejected(tensor.view(), "offset runs backwards");
}

TEST_F(Df11Validate, RejectsGroupsThatOverlap) {
  tensor.index[2 * slimrt::df11::kIndexWords] = tensor.index[slimrt::df11::kIndexWords];
  expect_rejected(tensor.view(), "inside the previous group");
}

TEST_F(Df11Validate, RejectsATruncatedBitstream) {
  // Cut into the padding the last lane may read: its start word plus kTailPadWords is needed.
  auto view = tensor.view();
  view.bitstream_words -= 2;
  expect_rejected(view, "too short");
}

TEST_F(Df11Validate, RejectsANonzeroFirstLaneOffset) {
  tensor.index[1] |= 3;
  expect_rejected(tensor.view(), "lane 0 offset is 3");
}

TEST(Df11ValidateEmpty, RejectsCodesForAnEmptyTensor) {
  slimrt::Df11Tensor t = slimrt::df11_compress(nullptr, 0, {});
  EXPECT_NO_THROW(slimrt::df11_validate(t.view()));
  t.lengths[1] = 1;
  expect_rejected(t.view(), "empty tensor");
}

TEST(Df11ValidateSingle, RequiresLengthOneForASingleExponent) {
  const std::vector<uint16_t> in(100, 0x3F80);
  slimrt::Df11Tensor t = slimrt::df11_compress(in.data(), in.size(), {});
  t.lengths[0x7F] = 2;
  expect_rejected(t.view(), "single exponent code must have length 1");
}

}  // namespace
