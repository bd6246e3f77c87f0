// DF11 decoding on the GPU, checked bit for bit against the input and against the CPU decoder.
// Every output buffer is poisoned before a decode (once with 0xFFFF, once with 0x5A5A, so no value
// can pass unwritten by coincidence), and the elements right after the tensor must keep the poison.
// Without a CUDA device (or in a build without CUDA) every test is skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iomanip>
#include <numeric>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "check.h"
#include "df11_cuda.h"
#include "slimrt/df11.h"
#include "slimrt/version.h"

#ifdef SLIMRT_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

using slimrt::Df11CompressOptions;
using slimrt::Df11DeviceTensor;
using slimrt::Df11DeviceView;
using slimrt::Df11Tensor;

constexpr size_t kGuard = 64;  // elements after the tensor that must stay untouched
constexpr uint16_t kPoisons[] = {0xFFFF, 0x5A5A};

// ---- a minimal RAII device buffer --------------------------------------------------------------

#ifdef SLIMRT_WITH_CUDA
void cuda_or_throw(cudaError_t status, const char* call) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string(call) + " failed: " + cudaGetErrorString(status));
  }
}
#define TEST_CUDA(call) cuda_or_throw((call), #call)
#endif

class DeviceBuffer {
 public:
  explicit DeviceBuffer([[maybe_unused]] size_t bytes) : bytes_(bytes) {
#ifdef SLIMRT_WITH_CUDA
    TEST_CUDA(cudaMalloc(&ptr_, std::max<size_t>(bytes, 1)));
#else
    throw std::logic_error("DeviceBuffer needs a CUDA build");
#endif
  }
  ~DeviceBuffer() {
#ifdef SLIMRT_WITH_CUDA
    cudaFree(ptr_);
#endif
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  void upload([[maybe_unused]] const void* host, size_t bytes, size_t offset = 0) {
    check_range(bytes, offset);
#ifdef SLIMRT_WITH_CUDA
    TEST_CUDA(cudaMemcpy(static_cast<char*>(ptr_) + offset, host, bytes, cudaMemcpyHostToDevice));
#endif
  }
  void download([[maybe_unused]] void* host, size_t bytes, size_t offset = 0) const {
    check_range(bytes, offset);
#ifdef SLIMRT_WITH_CUDA
    TEST_CUDA(cudaMemcpy(host, static_cast<char*>(ptr_) + offset, bytes, cudaMemcpyDeviceToHost));
#endif
  }

 private:
  void check_range(size_t bytes, size_t offset) const {
    if (offset + bytes > bytes_) throw std::out_of_range("DeviceBuffer copy out of range");
  }
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

void synchronize_device() {
#ifdef SLIMRT_WITH_CUDA
  TEST_CUDA(cudaDeviceSynchronize());
#endif
}

// ---- data ---------------------------------------------------------------------------------------

uint16_t bf16_round_nearest_even(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u += 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

std::vector<uint16_t> normal_bf16(size_t n, float stddev, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, stddev);
  std::vector<uint16_t> values(n);
  for (auto& v : values) v = bf16_round_nearest_even(normal(rng));
  return values;
}

std::vector<uint16_t> every_bf16_pattern() {
  std::vector<uint16_t> values(65536);
  std::iota(values.begin(), values.end(), uint16_t{0});
  return values;
}

uint16_t bf16_bits(uint64_t sign, uint64_t exponent, uint64_t mantissa) {
  return static_cast<uint16_t>((sign << 15) | (exponent << 7) | mantissa);
}

// n values whose exponents follow a halving distribution over `symbols` distinct values, all of
// them present, so that a code limited to max_code_length bits needs exactly that many.
std::vector<uint16_t> skewed_exponents(size_t n, int symbols, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint16_t> values;
  values.reserve(n);
  for (int s = symbols - 1; s >= 1; --s) {
    const size_t count = std::max<size_t>(1, n >> (s + 1));
    for (size_t k = 0; k < count; ++k) {
      values.push_back(bf16_bits(rng() & 1, 127 - s, rng() & 0x7F));
    }
  }
  while (values.size() < n) values.push_back(bf16_bits(rng() & 1, 127, rng() & 0x7F));
  std::shuffle(values.begin(), values.end(), rng);
  return values;
}

// ---- checks -------------------------------------------------------------------------------------

// "" when equal, else the first difference and how many elements differ.
std::string compare(const uint16_t* got, const uint16_t* want, size_t n, const char* what) {
  size_t bad = 0;
  size_t first = 0;
  for (size_t i = 0; i < n; ++i) {
    if (got[i] != want[i] && bad++ == 0) first = i;
  }
  if (bad == 0) return "";
  std::ostringstream out;
  out << what << ": " << bad << " of " << n << " elements differ; first at " << first << ": 0x"
      << std::hex << std::setfill('0') << std::setw(4) << got[first] << " instead of 0x"
      << std::setw(4) << want[first];
  return out.str();
}

std::string compare_to_poison(const uint16_t* got, size_t n, uint16_t poison, const char* what) {
  const std::vector<uint16_t> want(n, poison);
  return compare(got, want.data(), n, what);
}

// Decodes `values`, compressed with `options`, on the GPU into out + out_offset (a cudaMalloc'd
// buffer, so any offset that is not a multiple of 8 misaligns the output) and checks every element
// against the input and the CPU decoder, and the guard elements around it against the poison.
void expect_gpu_decode_is_exact(const std::vector<uint16_t>& values,
                                const Df11CompressOptions& options = {}, size_t out_offset = 0) {
  const size_t n = values.size();
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), static_cast<int64_t>(n), options);
  std::vector<uint16_t> cpu(n);
  slimrt::df11_decode_cpu(tensor.view(), cpu.data());
  ASSERT_EQ(compare(cpu.data(), values.data(), n, "CPU decode vs input"), "");

  const Df11DeviceTensor device(tensor.view());
  ASSERT_EQ(device.numel(), static_cast<int64_t>(n));
  const size_t total = out_offset + n + kGuard;
  DeviceBuffer out(total * sizeof(uint16_t));
  std::vector<uint16_t> host(total);
  for (const uint16_t poison : kPoisons) {
    SCOPED_TRACE(testing::Message() << "poison 0x" << std::hex << poison);
    std::fill(host.begin(), host.end(), poison);
    out.upload(host.data(), total * sizeof(uint16_t));
    device.decode_into(out.as<uint16_t>() + out_offset, nullptr);
    synchronize_device();
    out.download(host.data(), total * sizeof(uint16_t));
    EXPECT_EQ(compare_to_poison(host.data(), out_offset, poison, "before the output"), "");
    EXPECT_EQ(compare(host.data() + out_offset, values.data(), n, "GPU decode vs input"), "");
    EXPECT_EQ(compare(host.data() + out_offset, cpu.data(), n, "GPU decode vs CPU decode"), "");
    EXPECT_EQ(compare_to_poison(host.data() + out_offset + n, kGuard, poison, "after the output"),
              "");
  }
}

class Df11Cuda : public testing::Test {
 protected:
  void SetUp() override {
    if (!slimrt::cuda_available()) {
      GTEST_SKIP() << "no usable CUDA device, or slimrt was built without CUDA";
    }
  }
};

// ---- tests --------------------------------------------------------------------------------------

TEST_F(Df11Cuda, DecodeIsBitExactForEveryBf16PatternInOrder) {
  expect_gpu_decode_is_exact(every_bf16_pattern());
}

TEST_F(Df11Cuda, DecodeIsBitExactForEveryBf16PatternShuffled) {
  std::vector<uint16_t> values = every_bf16_pattern();
  std::shuffle(values.begin(), values.end(), std::mt19937_64(20261123));
  expect_gpu_decode_is_exact(values);
}

TEST_F(Df11Cuda, DecodeIsBitExactForZerosSubnormalsInfinitiesAndNanPayloads) {
  std::vector<uint16_t> specials;
  for (uint32_t sign = 0; sign < 2; ++sign) {
    for (uint32_t mantissa = 0; mantissa < 128; ++mantissa) {
      specials.push_back(bf16_bits(sign, 0, mantissa));     // ±0 and subnormals
      specials.push_back(bf16_bits(sign, 0xFF, mantissa));  // ±Inf and every NaN payload
    }
  }
  std::mt19937_64 rng(7);
  std::vector<uint16_t> values(3 * 4096 + 1001);
  for (auto& v : values) v = specials[rng() % specials.size()];
  expect_gpu_decode_is_exact(values);
}

TEST_F(Df11Cuda, DecodeIsBitExactWhenAllExponentsAreEqual) {
  std::mt19937_64 rng(11);
  std::vector<uint16_t> values(5 * 4096 + 77);
  for (auto& v : values) v = bf16_bits(rng() & 1, 121, rng() & 0x7F);
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), values.size(), {});
  EXPECT_EQ(slimrt::df11_build_table(tensor.lengths.data()).table_bits, 1);
  expect_gpu_decode_is_exact(values);
}

TEST_F(Df11Cuda, DecodeIsBitExactForOneElement) {
  expect_gpu_decode_is_exact({bf16_bits(1, 0x7E, 0x55)});
}

TEST_F(Df11Cuda, DecodeOfZeroElementsWritesNothing) {
  const Df11Tensor tensor = slimrt::df11_compress(nullptr, 0, {});
  const Df11DeviceTensor device(tensor.view());
  EXPECT_EQ(device.numel(), 0);
  DeviceBuffer out(kGuard * sizeof(uint16_t));
  std::vector<uint16_t> host(kGuard, 0x5A5A);
  out.upload(host.data(), kGuard * sizeof(uint16_t));
  device.decode_into(out.as<uint16_t>(), nullptr);
  synchronize_device();
  out.download(host.data(), kGuard * sizeof(uint16_t));
  EXPECT_EQ(compare_to_poison(host.data(), kGuard, 0x5A5A, "output of an empty tensor"), "");
}

TEST_F(Df11Cuda, DecodeIsBitExactForSizesAroundGroupAndVectorBoundaries) {
  for (const size_t n : {2, 7, 8, 9, 255, 256, 257, 4095, 4096, 4097, 2 * 4096 - 8, 8 * 4096 + 13,
                         5 * 4096 - 1, 12345, 100003}) {
    SCOPED_TRACE(testing::Message() << "n = " << n);
    expect_gpu_decode_is_exact(normal_bf16(n, 0.02f, n));
  }
}

TEST_F(Df11Cuda, DecodeIsBitExactForNormalWeights4096x4096) {
  expect_gpu_decode_is_exact(normal_bf16(size_t{4096} * 4096, 0.02f, 1));
}

TEST_F(Df11Cuda, DecodeIsBitExactForNormalWeights8192x4096) {
  expect_gpu_decode_is_exact(normal_bf16(size_t{8192} * 4096, 0.02f, 2));
}

TEST_F(Df11Cuda, DecodeIsBitExactForEveryMaxCodeLength) {
  for (int max_length = 1; max_length <= slimrt::df11::kMaxCodeLength; ++max_length) {
    SCOPED_TRACE(testing::Message() << "max_code_length = " << max_length);
    const int symbols = max_length == 1 ? 2 : std::min((1 << max_length) - 1, 40);
    const std::vector<uint16_t> values = skewed_exponents(1000000, symbols, max_length);
    Df11CompressOptions options;
    options.max_code_length = max_length;
    const Df11Tensor tensor = slimrt::df11_compress(values.data(), values.size(), options);
    // The decoder's table has 1 << table_bits entries: this proves every table size is exercised.
    EXPECT_EQ(slimrt::df11_build_table(tensor.lengths.data()).table_bits, max_length);
    expect_gpu_decode_is_exact(values, options);
  }
}

TEST_F(Df11Cuda, DecodeIsBitExactIntoAnOutputThatIsNot16ByteAligned) {
  for (const size_t offset : {1, 3, 4, 7}) {
    SCOPED_TRACE(testing::Message() << "output offset = " << offset << " elements");
    expect_gpu_decode_is_exact(normal_bf16(3 * 4096 + 21, 0.02f, offset), {}, offset);
  }
  expect_gpu_decode_is_exact(every_bf16_pattern(), {}, 1);
}

TEST_F(Df11Cuda, DecodeIsBitExactWhenSignMantissaBytesAreNot8ByteAligned) {
  const std::vector<uint16_t> values = normal_bf16(4 * 4096 + 100, 0.02f, 5);
  const size_t n = values.size();
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), n, {});
  const slimrt::Df11Table table = slimrt::df11_build_table(tensor.lengths.data());
  DeviceBuffer bitstream(tensor.bitstream.size() * sizeof(uint32_t));
  DeviceBuffer index(tensor.index.size() * sizeof(uint32_t));
  DeviceBuffer signmant(n + 1);
  DeviceBuffer entries(table.entries.size() * sizeof(uint16_t));
  bitstream.upload(tensor.bitstream.data(), tensor.bitstream.size() * sizeof(uint32_t));
  index.upload(tensor.index.data(), tensor.index.size() * sizeof(uint32_t));
  signmant.upload(tensor.signmant.data(), n, 1);
  entries.upload(table.entries.data(), table.entries.size() * sizeof(uint16_t));
  Df11DeviceView view;
  view.bitstream = bitstream.as<uint32_t>();
  view.index = index.as<uint32_t>();
  view.signmant = signmant.as<uint8_t>() + 1;
  view.table = entries.as<uint16_t>();
  view.table_bits = table.table_bits;
  view.numel = static_cast<int64_t>(n);

  DeviceBuffer out((n + kGuard) * sizeof(uint16_t));
  std::vector<uint16_t> host(n + kGuard, 0xFFFF);
  out.upload(host.data(), host.size() * sizeof(uint16_t));
  slimrt::df11_decode_cuda(view, out.as<uint16_t>(), nullptr);
  synchronize_device();
  out.download(host.data(), host.size() * sizeof(uint16_t));
  EXPECT_EQ(compare(host.data(), values.data(), n, "GPU decode vs input"), "");
  EXPECT_EQ(compare_to_poison(host.data() + n, kGuard, 0xFFFF, "after the output"), "");
}

TEST_F(Df11Cuda, DecodeRunsOnTheGivenStream) {
#ifdef SLIMRT_WITH_CUDA
  const std::vector<uint16_t> values = normal_bf16(6 * 4096 + 3, 0.02f, 6);
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), values.size(), {});
  const Df11DeviceTensor device(tensor.view());
  DeviceBuffer out(values.size() * sizeof(uint16_t));
  cudaStream_t stream = nullptr;
  TEST_CUDA(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  device.decode_into(out.as<uint16_t>(), stream);
  std::vector<uint16_t> host(values.size(), 0xFFFF);
  TEST_CUDA(cudaMemcpyAsync(host.data(), out.as<uint16_t>(), host.size() * sizeof(uint16_t),
                            cudaMemcpyDeviceToHost, stream));
  TEST_CUDA(cudaStreamSynchronize(stream));
  TEST_CUDA(cudaStreamDestroy(stream));
  EXPECT_EQ(compare(host.data(), values.data(), values.size(), "GPU decode vs input"), "");
#endif
}

TEST_F(Df11Cuda, DeviceTensorRejectsABitstreamTooShortForSafeOverRead) {
  // The last group holds 5 elements, all in lane 0: lanes 1-31 start at the group's end, so the
  // stream has exactly the words safe over-read needs and one fewer must be rejected.
  const std::vector<uint16_t> values = normal_bf16(2 * 4096 + 5, 0.02f, 8);
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), values.size(), {});
  slimrt::Df11View view = tensor.view();
  view.bitstream_words -= 1;
  EXPECT_THROW(Df11DeviceTensor{view}, slimrt::Error);
}

TEST_F(Df11Cuda, DeviceTensorHoldsEveryArrayInItsAllocation) {
  const std::vector<uint16_t> values = normal_bf16(3 * 4096, 0.02f, 9);
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), values.size(), {});
  const Df11DeviceTensor device(tensor.view());
  const int64_t arrays = static_cast<int64_t>(tensor.bitstream.size() * 4 +
                                              tensor.index.size() * 4 + tensor.signmant.size());
  EXPECT_GE(device.device_bytes(), arrays);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(device.view().signmant) % 256, 0u);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(device.view().table) % 256, 0u);
}

// Rows gathered by id (the embedding lookup) are the input rows widened to FP32, bit for bit:
// widths below, at and above a group, rows that straddle groups, the first and last rows, repeats.
// Output rows are poisoned first; every float of every row must be written.
TEST_F(Df11Cuda, GatherRowsIsTheInputRowsWidened) {
#ifdef SLIMRT_WITH_CUDA
  for (const int64_t width : {int64_t{64}, int64_t{3000}, int64_t{4096}, int64_t{5000}}) {
    SCOPED_TRACE("width " + std::to_string(width));
    const int64_t rows = 37;
    const std::vector<uint16_t> values = normal_bf16(rows * width, 0.02f, 10 + width);
    const Df11Tensor tensor = slimrt::df11_compress(values.data(), rows * width, {});
    const Df11DeviceTensor device(tensor.view());
    std::vector<int32_t> ids = {0, 36, 5, 5, 17, 36, 1, 0, 23};
    const auto tokens = static_cast<int64_t>(ids.size());
    DeviceBuffer ids_d(ids.size() * sizeof(int32_t));
    ids_d.upload(ids.data(), ids.size() * sizeof(int32_t));
    DeviceBuffer out(tokens * width * sizeof(float));
    std::vector<uint32_t> host(tokens * width, 0x7FC0DEADu);  // a NaN no row holds
    out.upload(host.data(), host.size() * sizeof(uint32_t));
    slimrt::df11_gather_rows_cuda(device.view(), ids_d.as<int32_t>(), tokens, width,
                                  out.as<float>(), nullptr);
    synchronize_device();
    out.download(host.data(), host.size() * sizeof(uint32_t));
    int64_t wrong = 0;
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t c = 0; c < width; ++c) {
        const uint32_t want = uint32_t{values[ids[t] * width + c]} << 16;
        if (host[t * width + c] != want && wrong++ < 5) {
          ADD_FAILURE() << "token " << t << " (row " << ids[t] << ") column " << c << ": 0x"
                        << std::hex << host[t * width + c] << ", want 0x" << want;
        }
      }
    }
    EXPECT_EQ(wrong, 0);
  }
#endif
}

TEST_F(Df11Cuda, GatherRowsRejectsAWidthThatDoesNotDivideTheTensor) {
  const std::vector<uint16_t> values = normal_bf16(3 * 100, 0.02f, 11);
  const Df11Tensor tensor = slimrt::df11_compress(values.data(), values.size(), {});
  const Df11DeviceTensor device(tensor.view());
  EXPECT_THROW(slimrt::df11_gather_rows_cuda(device.view(), nullptr, 1, 7, nullptr, nullptr),
               slimrt::Error);
}

}  // namespace
