// ops::moe against a double-precision reference written from ops/moe.h's contract (routing,
// every chosen expert's SwiGLU, the weighted sum), on a layer where one expert gets no token;
// DF11 experts against BF16 ones bit for bit; CUDA against the CPU on the same BF16 weights
// (skipped without a CUDA device).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <vector>

#include "device.h"
#include "error_message.h"
#include "kernel_references.h"
#include "ops/moe.h"
#include "slimrt/df11.h"
#include "slimrt/version.h"

namespace slimrt {
namespace {

constexpr int64_t kTokens = 9, kExperts = 6, kHidden = 40, kInter = 24;
constexpr int64_t kIdle = 5;  // the expert no token picks (its router row is far below the rest)

// Host copies of a layer's weights: expert e's gate, up and down, back to back per expert.
struct HostLayer {
  std::vector<uint16_t> router;   // [E][H]
  std::vector<uint16_t> experts;  // [E][gate | up | down]
  static constexpr int64_t kStride = 3 * kInter * kHidden;
  const uint16_t* gate(int64_t e) const { return experts.data() + e * kStride; }
  const uint16_t* up(int64_t e) const { return gate(e) + kInter * kHidden; }
  const uint16_t* down(int64_t e) const { return up(e) + kInter * kHidden; }
};

HostLayer random_layer(uint64_t seed) {
  std::mt19937_64 rng(seed);
  HostLayer l;
  l.router = test::random_bf16(rng, kExperts * kHidden);
  // Inputs are positive: a router row of -1s gives its expert the lowest logit by far.
  std::fill(l.router.begin() + kIdle * kHidden, l.router.begin() + (kIdle + 1) * kHidden,
            test::to_bf16(-1.0f));
  l.experts = test::random_bf16(rng, kExperts * HostLayer::kStride);
  return l;
}

double silu(double g) { return g / (1.0 + std::exp(-g)); }

double dot(const float* x, const uint16_t* w, int64_t k) {
  double sum = 0.0;
  for (int64_t i = 0; i < k; ++i) sum += static_cast<double>(x[i]) * test::from_bf16(w[i]);
  return sum;
}

// The reference, and which experts it chose for any token.
std::vector<double> reference_moe(const std::vector<float>& x, const HostLayer& l, int64_t top_k,
                                  bool renormalize, std::vector<int>& used) {
  std::vector<double> out(kTokens * kHidden, 0.0);
  used.assign(kExperts, 0);
  for (int64_t t = 0; t < kTokens; ++t) {
    const float* xt = x.data() + t * kHidden;
    std::vector<double> p(kExperts);
    for (int64_t e = 0; e < kExperts; ++e) p[e] = dot(xt, l.router.data() + e * kHidden, kHidden);
    const double top = *std::max_element(p.begin(), p.end());
    double sum = 0.0;
    for (double& v : p) sum += (v = std::exp(v - top));
    for (double& v : p) v /= sum;
    std::vector<int64_t> order(kExperts);
    for (int64_t e = 0; e < kExperts; ++e) order[e] = e;
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return p[a] > p[b]; });
    double chosen = 0.0;
    for (int64_t j = 0; j < top_k; ++j) chosen += p[order[j]];
    for (int64_t j = 0; j < top_k; ++j) {
      const int64_t e = order[j];
      ++used[e];
      const double weight = renormalize ? p[e] / chosen : p[e];
      std::vector<float> act(kInter);
      for (int64_t i = 0; i < kInter; ++i) {
        act[i] = static_cast<float>(silu(dot(xt, l.gate(e) + i * kHidden, kHidden)) *
                                    dot(xt, l.up(e) + i * kHidden, kHidden));
      }
      for (int64_t h = 0; h < kHidden; ++h) {
        out[t * kHidden + h] += weight * dot(act.data(), l.down(e) + h * kInter, kInter);
      }
    }
  }
  return out;
}

// A layer's matrices in one device's memory (dense, or each expert matrix compressed alone).
class DeviceLayer {
 public:
  DeviceLayer(Device& device, const HostLayer& host, bool df11) : device_(device) {
    router_ = dense(host.router.data(), kExperts, kHidden);
    auto* experts = static_cast<uint16_t*>(copy(host.experts.data(), host.experts.size() * 2));
    for (int64_t e = 0; e < kExperts; ++e) {
      const int64_t at = e * HostLayer::kStride;
      gate_.push_back(matrix(experts + at, host.gate(e), kInter, kHidden, df11));
      up_.push_back(matrix(experts + at + kInter * kHidden, host.up(e), kInter, kHidden, df11));
      down_.push_back(
          matrix(experts + at + 2 * kInter * kHidden, host.down(e), kHidden, kInter, df11));
    }
  }
  ~DeviceLayer() {
    for (void* block : blocks_) device_.deallocate(block);
  }
  ops::MoeLayer layer(int64_t top_k, bool renormalize) const {
    return {&router_, gate_.data(), up_.data(), down_.data(), kExperts,
            top_k,    kHidden,      kInter,     renormalize};
  }
  void* copy(const void* host, size_t bytes) {
    void* at = device_.allocate(static_cast<int64_t>(std::max<size_t>(bytes, 1)));
    blocks_.push_back(at);
    device_.copy_to_device(at, host, static_cast<int64_t>(bytes));
    return at;
  }

 private:
  Matrix dense(const uint16_t* host, int64_t rows, int64_t cols) {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    m.dense = static_cast<const uint16_t*>(copy(host, rows * cols * 2));
    return m;
  }
  Matrix matrix(const uint16_t* on_device, const uint16_t* host, int64_t rows, int64_t cols,
                bool df11) {
    Matrix m;
    m.rows = rows;
    m.cols = cols;
    if (!df11) {
      m.dense = on_device;
      return m;
    }
    const Df11Tensor& t =
        *tensors_.emplace_back(std::make_unique<Df11Tensor>(df11_compress(host, rows * cols, {})));
    m.is_df11 = true;
    m.df11.lengths = static_cast<const uint8_t*>(copy(t.lengths.data(), t.lengths.size()));
    m.df11.bitstream =
        static_cast<const uint32_t*>(copy(t.bitstream.data(), t.bitstream.size() * 4));
    m.df11.bitstream_words = static_cast<int64_t>(t.bitstream.size());
    m.df11.index = static_cast<const uint32_t*>(copy(t.index.data(), t.index.size() * 4));
    m.df11.signmant = static_cast<const uint8_t*>(copy(t.signmant.data(), t.signmant.size()));
    m.df11.numel = t.numel;
    device_.prepare_df11(m.df11);
    return m;
  }

  Device& device_;
  std::vector<void*> blocks_;
  std::vector<std::unique_ptr<Df11Tensor>> tensors_;
  Matrix router_;
  std::vector<Matrix> gate_, up_, down_;
};

// ops::moe on `device`; x given as FP32 (CUDA's input is its BF16 rounding, as a producer of
// matmul inputs leaves it).
std::vector<float> run_moe(Device& device, const std::vector<float>& x, DeviceLayer& weights,
                           int64_t top_k, bool renormalize) {
  const ops::MoeLayer layer = weights.layer(top_k, renormalize);
  MatmulInput in{nullptr, kTokens, kHidden};
  if (device.backend() == Backend::kCpu) {
    in.data = weights.copy(x.data(), x.size() * 4);
  } else {
    std::vector<uint16_t> bits(x.size());
    std::transform(x.begin(), x.end(), bits.begin(), test::to_bf16);
    in.data = weights.copy(bits.data(), bits.size() * 2);
  }
  auto* out = static_cast<float*>(weights.copy(x.data(), x.size() * 4));
  const std::vector<uint8_t> zeros(ops::moe_scratch_bytes(device, kTokens, layer), 0xFF);
  void* scratch = weights.copy(zeros.data(), zeros.size());
  ops::moe(device, in, layer, out, scratch);
  std::vector<float> host(kTokens * kHidden);
  device.copy_to_host(host.data(), out, static_cast<int64_t>(host.size() * 4));
  return host;
}

std::vector<float> positive_inputs(uint64_t seed) {
  std::mt19937_64 rng(seed);
  return test::random_floats(rng, kTokens * kHidden, 0.05f, 1.0f);
}

TEST(Moe, CpuMatchesTheReferenceWithAnExpertThatGetsNoTokens) {
  std::unique_ptr<Device> cpu = make_device("cpu", 2);
  const HostLayer host = random_layer(3);
  const std::vector<float> x = positive_inputs(4);
  DeviceLayer weights(*cpu, host, false);
  for (const int64_t top_k : {1, 2, 4}) {
    for (const bool renormalize : {true, false}) {
      std::vector<int> used;
      const std::vector<double> ref = reference_moe(x, host, top_k, renormalize, used);
      EXPECT_EQ(used[kIdle], 0);
      EXPECT_GE(std::count_if(used.begin(), used.end(), [](int n) { return n > 1; }), 1)
          << "some expert must serve several tokens (one matmul over them)";
      const std::vector<float> got = run_moe(*cpu, x, weights, top_k, renormalize);
      EXPECT_LT(test::rel_l2(got, ref), 2e-6) << "top_k " << top_k << " renorm " << renormalize;
    }
  }
}

TEST(Moe, Df11ExpertsGiveTheBitsOfBf16Experts) {
  std::unique_ptr<Device> cpu = make_device("cpu", 2);
  const HostLayer host = random_layer(5);
  const std::vector<float> x = positive_inputs(6);
  DeviceLayer dense(*cpu, host, false);
  DeviceLayer compressed(*cpu, host, true);
  EXPECT_EQ(run_moe(*cpu, x, compressed, 2, true), run_moe(*cpu, x, dense, 2, true));
}

TEST(Moe, RefusesMoreThan64ExpertsPerToken) {
  std::unique_ptr<Device> cpu = make_device("cpu", 1);
  Matrix router, expert;
  router.rows = 100;
  router.cols = kHidden;
  std::vector<Matrix> experts(100, expert);
  const ops::MoeLayer layer{
      &router, experts.data(), experts.data(), experts.data(), 100, 65, kHidden, kInter, true};
  const std::string message = test::error_message([&] { ops::moe_scratch_bytes(*cpu, 1, layer); });
  EXPECT_EQ(message, "moe: 65 experts per token; at most 64 are supported");
}

TEST(Moe, CudaMatchesTheCpu) {
  if (!cuda_available()) GTEST_SKIP() << cuda_unavailable_reason();
  std::unique_ptr<Device> cpu = make_device("cpu", 2);
  std::unique_ptr<Device> cuda = make_device("cuda", 0);
  const HostLayer host = random_layer(7);
  const std::vector<float> x = positive_inputs(8);
  DeviceLayer on_cpu(*cpu, host, false);
  DeviceLayer on_cuda(*cuda, host, false);
  for (const bool renormalize : {true, false}) {
    std::vector<int> used;
    const std::vector<double> ref = reference_moe(x, host, 2, renormalize, used);
    const std::vector<float> want = run_moe(*cpu, x, on_cpu, 2, renormalize);
    // CUDA reads its input and the activations rounded to BF16 (cuda_backend.h): ~1e-2.
    EXPECT_LT(test::rel_l2(run_moe(*cuda, x, on_cuda, 2, renormalize), ref), 2e-2);
    EXPECT_LT(test::rel_l2(want, ref), 2e-6);
  }
  DeviceLayer compressed(*cuda, host, true);
  EXPECT_EQ(test::error_message([&] { run_moe(*cuda, x, compressed, 2, true); }),
            "moe: DF11 experts or routers on CUDA are not implemented; load the model with "
            "weights=\"bf16\"");
}

}  // namespace
}  // namespace slimrt
