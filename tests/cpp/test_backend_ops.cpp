// Every op (cpp/src/ops/) on every backend, on the same seeded random inputs, as ggml's
// test-backend-ops runs its ops: the CPU backend against a double-precision reference
// (kernel_references.h), and the CUDA backend against the CPU backend, each output within the
// tolerance kTolerances states for it. The cases cover ragged batches, GQA groups 1/2/4/8,
// head_dim 64, 128 and 80, page sizes 1/4/16, BF16 and F32 KV, DF11 tensors from df11_compress
// and sampling parameters of every mode; the paged attention cases reach each of the CUDA
// kernels it chooses from (decode, prefill, the simple one). Outputs and scratch are poisoned
// (NaN) before each run, so an element an op forgets to write fails. Without a usable GPU the
// CUDA half is skipped, naming the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <ostream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "check.h"
#include "device.h"
#include "df11_groups.h"
#include "df11_test_data.h"
#include "error_message.h"
#include "kernel_references.h"
#include "ops/checksum.h"
#include "ops/copy_rows.h"
#include "ops/df11_decode.h"
#include "ops/embed.h"
#include "ops/head_rms_norm.h"
#include "ops/kv_compress.h"
#include "ops/matmul_bf16.h"
#include "ops/matmul_df11.h"
#include "ops/paged_attention.h"
#include "ops/rms_norm.h"
#include "ops/rope_and_cache.h"
#include "ops/sample.h"
#include "ops/silu_mul.h"
#include "sample_rules.h"
#include "sample_test_rows.h"
#include "slimrt/df11.h"
#include "slimrt/version.h"

namespace slimrt {
namespace {

using test::from_bf16;
using test::random_bf16;
using test::random_floats;
using test::rel_l2;
using test::SeqSpec;
using test::to_bf16;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// ---- tolerances ---------------------------------------------------------------------------

// How close an output must come, as the relative L2 error over all of it (rel_l2: NaN where
// the other side has NaN counts as equal); 0: every element equal.
struct Tolerance {
  const char* op;
  const char* output;
  double cpu;   // the CPU backend against the double-precision reference
  double cuda;  // the CUDA backend against the CPU backend
};

const Tolerance kTolerances[] = {
    // Copies, a widening of BF16 to FP32 (exact) and a lossless decoder: nothing to round.
    {"embed", "out", 0, 0},
    {"embed_df11", "out", 0, 0},
    {"decode_df11", "bits", 0, 0},
    // A checksum: the same 32 bits or a broken one.
    {"crc32", "crc", 0, 0},
    {"gather_rows", "out", 0, 0},
    {"copy_block", "dst", 0, 0},
    // x + residual is one FP32 addition per element on every backend.
    {"add_rms_norm_input", "x", 0, 0},
    // The CPU sums squares in double and its polynomial exp is within 1e-6 of exp; CUDA rounds
    // its output, a matmul input, to BF16: at most 2^-9 (2e-3) relative per element.
    {"add_rms_norm_input", "input", 1e-6, 4e-3},
    {"silu_mul_input", "input", 1e-6, 4e-3},
    // FP32 on both backends (the CPU sums squares in double, CUDA in FP32 over a warp).
    {"head_rms_norm", "x", 1e-6, 1e-5},
    // FP32 accumulation against double; CUDA rounds x to BF16 first (2^-9 relative per element,
    // averaging down over k to ~1e-3 in L2) and accumulates in another order.
    {"matmul_bf16", "out", 1e-5, 1e-2},
    // The same sums over the decoded weights (every backend's decoder is bit-exact), CUDA's in
    // per-lane and per-group order instead of cuBLAS's.
    {"matmul_df11", "out", 1e-5, 1e-2},
    // FP32 angles and cos/sin on both backends (CUDA's accurate sinf/cosf): only the last bits
    // of q and of an F32 cache differ.
    {"rope_and_cache", "q", 1e-6, 1e-5},
    {"rope_and_cache", "k cache f32", 1e-6, 1e-5},
    // A BF16 cache rounds the FP32 (reference: double) rotation: where two results straddle a
    // rounding boundary they land one BF16 step (2^-8) apart, rare enough to stay below 1e-3.
    {"rope_and_cache", "k cache bf16", 1e-3, 1e-3},
    // v is stored as given (F32) or rounded to nearest even (BF16): the same bits everywhere.
    {"rope_and_cache", "v cache", 0, 0},
    // FP32 softmax with a running max against double; CUDA rounds its output to BF16 (2e-3) and,
    // in its decode kernel q, in its prefill kernel the probabilities, to BF16 too
    // (test_paged_attention_cuda.cpp holds each head of those kernels within 1e-2 of the CPU).
    {"paged_attention", "out", 1e-5, 2e-2},
    // sample_rules.h makes every backend compute the same weights bit for bit and sum them as
    // integers: the same ids everywhere.
    {"sample", "ids", 0, 0},
    // The same ids, and the top-n order compares logits, exactly; the normaliser is summed in
    // double from FP32 exps (CUDA's expf within 2 ulp of the CPU's) in another order.
    {"sample_logprobs", "ids", 0, 0},
    {"sample_logprobs", "top_ids", 0, 0},
    {"sample_logprobs", "logprob", 1e-6, 1e-6},
    {"sample_logprobs", "logprob_kind", 0, 0},
};

const Tolerance* tolerance_of(const std::string& op, const std::string& output) {
  for (const Tolerance& t : kTolerances) {
    if (op == t.op && output == t.output) return &t;
  }
  return nullptr;
}

// ---- outputs ------------------------------------------------------------------------------

// One output of an op, widened to double exactly (FP32, BF16 and integer values all fit).
struct Output {
  std::string name;
  std::vector<double> values;
};
using Outputs = std::vector<Output>;

template <class T>
std::vector<double> widened(const std::vector<T>& v) {
  return std::vector<double>(v.begin(), v.end());
}

std::vector<double> bf16_values(const std::vector<uint16_t>& bits) {
  std::vector<double> v(bits.size());
  std::transform(bits.begin(), bits.end(), v.begin(), from_bf16);
  return v;
}

bool same(double a, double b) { return a == b || (std::isnan(a) && std::isnan(b)); }

void expect_within(const std::string& op, const Outputs& got, const Outputs& want,
                   double Tolerance::*side) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t o = 0; o < got.size(); ++o) {
    ASSERT_EQ(got[o].name, want[o].name);
    const Tolerance* tolerance = tolerance_of(op, got[o].name);
    ASSERT_NE(tolerance, nullptr) << "no tolerance for " << op << " " << got[o].name;
    const std::vector<double>& g = got[o].values;
    const std::vector<double>& w = want[o].values;
    ASSERT_EQ(g.size(), w.size()) << got[o].name;
    if (tolerance->*side > 0) {
      EXPECT_LT(rel_l2(g, w), tolerance->*side) << got[o].name;
      continue;
    }
    const auto differs = std::mismatch(g.begin(), g.end(), w.begin(), same);
    EXPECT_TRUE(differs.first == g.end())
        << got[o].name << " element " << differs.first - g.begin() << ": " << *differs.first
        << " where " << *differs.second << " was expected";
  }
}

// ---- device memory ------------------------------------------------------------------------

// The device memory of one run, poisoned (0xFF bytes: NaN as FP32 and as BF16) until written,
// freed when the run ends.
class Memory {
 public:
  explicit Memory(Device& device) : device_(device) {}
  ~Memory() {
    for (void* block : blocks_) device_.deallocate(block);
  }
  Memory(const Memory&) = delete;
  Memory& operator=(const Memory&) = delete;

  template <class T>
  T* copy(const std::vector<T>& host) {
    T* at = static_cast<T*>(raw(static_cast<int64_t>(host.size() * sizeof(T))));
    device_.copy_to_device(at, host.data(), static_cast<int64_t>(host.size() * sizeof(T)));
    return at;
  }
  template <class T>
  T* poisoned(size_t n) {
    return static_cast<T*>(bytes(static_cast<int64_t>(n * sizeof(T))));
  }
  // Scratch of `n` bytes (null when n is 0, as an arena hands out).
  void* bytes(int64_t n) {
    if (n == 0) return nullptr;
    void* at = raw(n);
    const std::vector<uint8_t> poison(n, 0xFF);
    device_.copy_to_device(at, poison.data(), n);
    return at;
  }
  template <class T>
  std::vector<T> read(const T* at, size_t n) {
    std::vector<T> host(n);
    device_.copy_to_host(host.data(), at, static_cast<int64_t>(n * sizeof(T)));
    return host;
  }
  // A DF11 tensor's arrays in device memory, its table prepared (as Weights::load does).
  Df11View copy(const Df11Tensor& tensor) {
    Df11View view;
    view.lengths = copy(std::vector<uint8_t>(tensor.lengths.begin(), tensor.lengths.end()));
    view.bitstream = copy(tensor.bitstream);
    view.bitstream_words = static_cast<int64_t>(tensor.bitstream.size());
    view.index = copy(tensor.index);
    view.signmant = copy(tensor.signmant);
    view.numel = tensor.numel;
    device_.prepare_df11(view);
    return view;
  }

  // x[rows][k] in the form the device's matmul reads (ops/matmul_bf16.h), as its producer
  // would have left it.
  MatmulInput matmul_input(const std::vector<float>& x, int64_t rows, int64_t k) {
    if (ops::matmul_input_bytes(device_, rows, k) == 0) return {copy(x), rows, k};
    std::vector<uint16_t> bits(x.size());
    std::transform(x.begin(), x.end(), bits.begin(), to_bf16);
    return {copy(bits), rows, k};
  }
  std::vector<double> read(const MatmulInput& in) {
    const size_t n = static_cast<size_t>(in.rows * in.k);
    if (ops::matmul_input_bytes(device_, in.rows, in.k) == 0) {
      return widened(read(static_cast<const float*>(in.data), n));
    }
    return bf16_values(read(static_cast<const uint16_t*>(in.data), n));
  }

 private:
  void* raw(int64_t n) {
    blocks_.push_back(device_.allocate(std::max<int64_t>(n, 1)));
    return blocks_.back();
  }

  Device& device_;
  std::vector<void*> blocks_;
};

// ---- the cases ----------------------------------------------------------------------------

// One op on one set of inputs, made from a seed: the same inputs for every backend and for the
// reference.
class OpRun {
 public:
  virtual ~OpRun() = default;
  virtual Outputs run(Device& device) const = 0;  // the op on `device`, outputs read back
  virtual Outputs reference() const = 0;          // in double, from the op's contract
};

struct OpCase {
  std::string op;     // as in kTolerances
  std::string shape;  // what the case varies, as a test name: letters, digits, underscores
  std::function<std::unique_ptr<OpRun>()> make;
};

void PrintTo(const OpCase& c, std::ostream* os) { *os << c.op << " " << c.shape; }

std::vector<int32_t> random_ids(std::mt19937_64& rng, int64_t n, int64_t below) {
  std::vector<int32_t> ids(n);
  for (auto& id : ids) id = static_cast<int32_t>(rng() % below);
  ids.front() = static_cast<int32_t>(below - 1);  // the last row, where an overrun would show
  return ids;
}

// Rows ids[i] of table [][width], each element through `value`.
template <class T, class Value>
std::vector<double> rows_of(const std::vector<T>& table, const std::vector<int32_t>& ids,
                            int64_t width, Value value) {
  std::vector<double> rows;
  for (int32_t id : ids) {
    for (int64_t i = 0; i < width; ++i) rows.push_back(value(table[id * width + i]));
  }
  return rows;
}

// A lookup of rows by index: ops::embed (rows of a BF16 table, widened) and ops::gather_rows (of
// FP32 rows).
template <class T>
class RowLookup final : public OpRun {
 public:
  RowLookup(int64_t count, int64_t width, int64_t table_rows, uint64_t seed)
      : count_(count), width_(width) {
    std::mt19937_64 rng(seed);
    if constexpr (kEmbed) {
      table_ = random_bf16(rng, table_rows * width);
    } else {
      table_ = random_floats(rng, table_rows * width);
    }
    ids_ = random_ids(rng, count, table_rows);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* out = m.poisoned<float>(count_ * width_);
    if constexpr (kEmbed) {
      ops::embed(device, m.copy(ids_), count_, m.copy(table_), width_, out);
    } else {
      ops::gather_rows(device, m.copy(table_), m.copy(ids_), count_, width_, out);
    }
    return {{"out", widened(m.read(out, count_ * width_))}};
  }
  Outputs reference() const override {
    return {{"out", rows_of(table_, ids_, width_, [](T v) {
               if constexpr (kEmbed) {
                 return from_bf16(v);
               } else {
                 return double{v};
               }
             })}};
  }

 private:
  static constexpr bool kEmbed = std::is_same_v<T, uint16_t>;
  int64_t count_, width_;
  std::vector<T> table_;
  std::vector<int32_t> ids_;
};

class EmbedDf11 final : public OpRun {
 public:
  EmbedDf11(int64_t tokens, int64_t hidden, int64_t vocab, uint32_t seed)
      : tokens_(tokens), hidden_(hidden), table_(test::normal_bf16(vocab * hidden, 0.02f, seed)) {
    std::mt19937_64 rng(seed);
    ids_ = random_ids(rng, tokens, vocab);
    compressed_ = df11_compress(table_.data(), vocab * hidden, {});
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* out = m.poisoned<float>(tokens_ * hidden_);
    auto* scratch = m.poisoned<uint16_t>(ops::embed_df11_scratch_elements(device, hidden_));
    ops::embed_df11(device, m.copy(ids_), tokens_, m.copy(compressed_), hidden_, out, scratch);
    return {{"out", widened(m.read(out, tokens_ * hidden_))}};
  }
  Outputs reference() const override {
    return {{"out", rows_of(table_, ids_, hidden_, from_bf16)}};
  }

 private:
  int64_t tokens_, hidden_;
  std::vector<uint16_t> table_;
  std::vector<int32_t> ids_;
  Df11Tensor compressed_;
};

// Which part of a tensor a decode covers, and on which lane.
enum class Decode { kWhole, kGroupsOneToThree, kAhead };

class DecodeDf11 final : public OpRun {
 public:
  static constexpr int64_t kGuard = 64;  // elements after the output that must keep the poison

  DecodeDf11(std::vector<uint16_t> values, Decode how)
      : values_(std::move(values)),
        how_(how),
        compressed_(df11_compress(values_.data(), static_cast<int64_t>(values_.size()), {})) {}
  Outputs run(Device& device) const override {
    Memory m(device);
    Df11View view = m.copy(compressed_);
    if (how_ == Decode::kGroupsOneToThree) view = df11_groups(view, 1, 3);
    uint16_t* out = m.poisoned<uint16_t>(view.numel + kGuard);
    if (how_ == Decode::kAhead) {
      device.fork_ahead();
      ops::decode_df11_ahead(device, view, out);
      device.join_ahead();
    } else {
      ops::decode_df11(device, view, out);
    }
    return {{"bits", widened(m.read(out, view.numel + kGuard))}};
  }
  Outputs reference() const override {
    const int64_t first = how_ == Decode::kGroupsOneToThree ? df11::kGroupElements : 0;
    const int64_t last = how_ == Decode::kGroupsOneToThree
                             ? std::min<int64_t>(values_.size(), 3 * df11::kGroupElements)
                             : static_cast<int64_t>(values_.size());
    std::vector<double> bits(values_.begin() + first, values_.begin() + last);
    bits.resize(bits.size() + kGuard, 0xFFFF);
    return {{"bits", bits}};
  }

 private:
  std::vector<uint16_t> values_;
  Decode how_;
  Df11Tensor compressed_;
};

// ops::crc32 of `bytes` random bytes starting `offset` bytes into a device block, against a
// bit-by-bit CRC-32 (zlib's polynomial and conventions) written from the definition.
class Crc32 final : public OpRun {
 public:
  Crc32(int64_t bytes, int64_t offset, uint64_t seed) : offset_(offset), data_(bytes + offset) {
    std::mt19937_64 rng(seed);
    for (auto& b : data_) b = static_cast<uint8_t>(rng());
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    const uint8_t* block = m.copy(data_);
    const int64_t bytes = static_cast<int64_t>(data_.size()) - offset_;
    void* scratch = m.bytes(ops::crc32_scratch_bytes(device, bytes));
    return {{"crc", {static_cast<double>(ops::crc32(device, block + offset_, bytes, scratch))}}};
  }
  Outputs reference() const override {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = static_cast<size_t>(offset_); i < data_.size(); ++i) {
      crc ^= data_[i];
      for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
    }
    return {{"crc", {static_cast<double>(crc ^ 0xFFFFFFFFu)}}};
  }

 private:
  int64_t offset_;
  std::vector<uint8_t> data_;
};

class CopyBlock final : public OpRun {
 public:
  CopyBlock(int64_t rows, int64_t cols, int64_t src_stride, int64_t dst_stride, uint64_t seed)
      : rows_(rows), cols_(cols), src_stride_(src_stride), dst_stride_(dst_stride) {
    std::mt19937_64 rng(seed);
    src_ = random_floats(rng, rows * src_stride);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* dst = m.poisoned<float>(rows_ * dst_stride_);
    ops::copy_block(device, m.copy(src_), src_stride_, dst, dst_stride_, rows_, cols_);
    return {{"dst", widened(m.read(dst, rows_ * dst_stride_))}};
  }
  Outputs reference() const override {
    std::vector<double> dst(rows_ * dst_stride_, kNaN);  // the gaps between rows keep the poison
    for (int64_t r = 0; r < rows_; ++r) {
      std::copy_n(src_.begin() + r * src_stride_, cols_, dst.begin() + r * dst_stride_);
    }
    return {{"dst", dst}};
  }

 private:
  int64_t rows_, cols_, src_stride_, dst_stride_;
  std::vector<float> src_;
};

// q or k rows of a step (a fused q|k|v output: rows wider than the heads), every head
// normalised in place; the values between the heads' block and the next row stay as they were.
class HeadRmsNorm final : public OpRun {
 public:
  HeadRmsNorm(int64_t tokens, int64_t heads, int64_t head_dim, int64_t stride, uint64_t seed)
      : tokens_(tokens), heads_(heads), head_dim_(head_dim), stride_(stride) {
    std::mt19937_64 rng(seed);
    x_ = random_floats(rng, tokens * stride, -3.0f, 3.0f);
    weight_ = random_floats(rng, head_dim, 0.5f, 1.5f);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* x = m.copy(x_);
    ops::head_rms_norm(device, x, tokens_, stride_, heads_, head_dim_, m.copy(weight_), kEps);
    return {{"x", widened(m.read(x, x_.size()))}};
  }
  Outputs reference() const override {
    std::vector<double> want(x_.begin(), x_.end());
    for (int64_t t = 0; t < tokens_; ++t) {
      const std::vector<float> heads(x_.begin() + t * stride_,
                                     x_.begin() + t * stride_ + heads_ * head_dim_);
      const std::vector<double> normed =
          test::reference_rms_norm(heads, weight_, heads_, head_dim_, kEps);
      std::copy(normed.begin(), normed.end(), want.begin() + t * stride_);
    }
    return {{"x", want}};
  }

 private:
  static constexpr float kEps = 1e-6f;  // Qwen3's
  int64_t tokens_, heads_, head_dim_, stride_;
  std::vector<float> x_, weight_;
};

class AddRmsNorm final : public OpRun {
 public:
  // in_place: out is x, which then holds the input on the CPU and x + residual on CUDA (where
  // the input is BF16 scratch): only the input is compared.
  AddRmsNorm(int64_t rows, int64_t cols, bool residual, bool in_place, uint64_t seed)
      : rows_(rows), cols_(cols), in_place_(in_place) {
    std::mt19937_64 rng(seed);
    x_ = random_floats(rng, rows * cols, -3.0f, 3.0f);
    if (residual) residual_ = random_floats(rng, rows * cols, -3.0f, 3.0f);
    weight_ = random_floats(rng, cols, 0.5f, 1.5f);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* x = m.copy(x_);
    float* out = in_place_ ? x : m.poisoned<float>(rows_ * cols_);
    const MatmulInput in = ops::add_rms_norm_input(
        device, x, residual_.empty() ? nullptr : m.copy(residual_), m.copy(weight_), rows_, cols_,
        kEps, out, m.bytes(ops::matmul_input_bytes(device, rows_, cols_)));
    Outputs outputs{{"input", m.read(in)}};
    if (!in_place_) outputs.push_back({"x", widened(m.read(x, rows_ * cols_))});
    return outputs;
  }
  Outputs reference() const override {
    std::vector<float> x = x_;
    for (size_t i = 0; i < residual_.size(); ++i) x[i] += residual_[i];
    Outputs outputs{{"input", test::reference_rms_norm(x, weight_, rows_, cols_, kEps)}};
    if (!in_place_) outputs.push_back({"x", widened(x)});
    return outputs;
  }

 private:
  static constexpr float kEps = 1e-5f;
  int64_t rows_, cols_;
  bool in_place_;
  std::vector<float> x_, residual_, weight_;
};

class SiluMul final : public OpRun {
 public:
  // fused: gate and up halves of one [tokens][2 * width] matmul output; else two blocks.
  SiluMul(int64_t tokens, int64_t width, bool fused, uint64_t seed)
      : tokens_(tokens), width_(width), fused_(fused) {
    std::mt19937_64 rng(seed);
    gate_up_ = random_floats(rng, tokens * 2 * width, -20.0f, 20.0f);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    const float* gate_up = m.copy(gate_up_);
    const float* up = gate_up + (fused_ ? width_ : tokens_ * width_);
    const MatmulInput in = ops::silu_mul_input(
        device, gate_up, up, stride(), tokens_, width_, m.poisoned<float>(tokens_ * width_),
        m.bytes(ops::matmul_input_bytes(device, tokens_, width_)));
    return {{"input", m.read(in)}};
  }
  Outputs reference() const override {
    const float* up = gate_up_.data() + (fused_ ? width_ : tokens_ * width_);
    return {{"input", test::reference_silu_mul(gate_up_.data(), up, stride(), tokens_, width_)}};
  }

 private:
  int64_t stride() const { return fused_ ? 2 * width_ : width_; }
  int64_t tokens_, width_;
  bool fused_;
  std::vector<float> gate_up_;
};

class Matmul final : public OpRun {
 public:
  Matmul(int64_t rows, int64_t k, int64_t n, bool bias, uint64_t seed) : rows_(rows), k_(k), n_(n) {
    std::mt19937_64 rng(seed);
    x_ = random_floats(rng, rows * k);
    w_ = random_bf16(rng, n * k);
    if (bias) bias_ = random_floats(rng, n);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* out = m.poisoned<float>(rows_ * n_);
    ops::matmul_bf16(device, m.matmul_input(x_, rows_, k_), m.copy(w_), n_,
                     bias_.empty() ? nullptr : m.copy(bias_), out);
    return {{"out", widened(m.read(out, rows_ * n_))}};
  }
  Outputs reference() const override {
    return {{"out",
             test::reference_matmul(x_, rows_, k_, w_, n_, bias_.empty() ? nullptr : bias_.data())
                 .out}};
  }

 private:
  int64_t rows_, k_, n_;
  std::vector<float> x_, bias_;
  std::vector<uint16_t> w_;
};

// Products of one DF11 matmul call, sharing x (q|k|v: three, gate|up: two).
struct Df11MatmulShape {
  int64_t rows, k;
  std::vector<int64_t> n;
  bool bias;
};

class Df11Matmul final : public OpRun {
 public:
  Df11Matmul(Df11MatmulShape shape, uint64_t seed) : shape_(std::move(shape)) {
    std::mt19937_64 rng(seed);
    x_ = random_floats(rng, shape_.rows * shape_.k);
    for (const int64_t n : shape_.n) {
      w_.push_back(random_bf16(rng, n * shape_.k));
      compressed_.push_back(df11_compress(w_.back().data(), n * shape_.k, {}));
      bias_.push_back(shape_.bias ? random_floats(rng, n) : std::vector<float>());
    }
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    std::vector<ops::Df11Product> products;
    std::vector<float*> outs;
    for (size_t j = 0; j < shape_.n.size(); ++j) {
      outs.push_back(m.poisoned<float>(shape_.rows * shape_.n[j]));
      products.push_back({m.copy(compressed_[j]), shape_.n[j],
                          bias_[j].empty() ? nullptr : m.copy(bias_[j]), outs.back()});
    }
    const int count = static_cast<int>(products.size());
    void* scratch = m.bytes(
        ops::matmul_df11_scratch_bytes(device, products.data(), count, shape_.k, shape_.rows));
    ops::matmul_df11(device, m.matmul_input(x_, shape_.rows, shape_.k), products.data(), count,
                     scratch);
    Outputs result;
    for (size_t j = 0; j < outs.size(); ++j) {
      result.push_back({"out", widened(m.read(outs[j], shape_.rows * shape_.n[j]))});
    }
    return result;
  }
  Outputs reference() const override {
    Outputs result;
    for (size_t j = 0; j < w_.size(); ++j) {
      result.push_back({"out", test::reference_matmul(x_, shape_.rows, shape_.k, w_[j], shape_.n[j],
                                                      bias_[j].empty() ? nullptr : bias_[j].data())
                                   .out});
    }
    return result;
  }

 private:
  Df11MatmulShape shape_;
  std::vector<float> x_;
  std::vector<std::vector<uint16_t>> w_;
  std::vector<Df11Tensor> compressed_;
  std::vector<std::vector<float>> bias_;
};

struct RopeShape {
  int64_t tokens, heads, kv_heads, head_dim, page_size;
  KvDtype dtype;
  bool fused;  // q|k|v rows of one matmul output; else three blocks
};

class RopeAndCache final : public OpRun {
 public:
  RopeAndCache(const RopeShape& s, uint64_t seed)
      : s_(s), inv_freq_(test::rope_inv_freq(s.head_dim)) {
    std::mt19937_64 rng(seed);
    qkv_ = random_floats(rng, s.tokens * (q_width() + 2 * kv_width()));
    positions_.resize(s.tokens);
    for (auto& p : positions_) p = static_cast<int32_t>(rng() % 4000);
    pool_slots_ = ((s.tokens + s.page_size - 1) / s.page_size + 2) * s.page_size;
    std::vector<int32_t> all(pool_slots_);
    std::iota(all.begin(), all.end(), 0);
    std::shuffle(all.begin(), all.end(), rng);
    slots_.assign(all.begin(), all.begin() + s.tokens);
    if (s.tokens > 1) slots_[1] = -1;  // padding: skipped
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    float* qkv = m.copy(qkv_);
    QkvRows in;
    if (s_.fused) {
      in = {qkv, qkv + q_width(), qkv + q_width() + kv_width(), row(), row()};
    } else {
      in = {qkv, qkv + s_.tokens * q_width(), qkv + s_.tokens * (q_width() + kv_width()), q_width(),
            kv_width()};
    }
    PagedKv kv = layout();
    kv.k_pages = m.bytes(pool_elements() * element_bytes());
    kv.v_pages = m.bytes(pool_elements() * element_bytes());
    float* q_out = m.poisoned<float>(s_.tokens * q_width());
    ops::rope_and_cache(device, in, m.copy(positions_), s_.tokens, s_.heads, m.copy(inv_freq_), kv,
                        m.copy(slots_), q_out);
    return {{"q", widened(m.read(q_out, s_.tokens * q_width()))},
            {k_cache(), pool(m, kv.k_pages)},
            {"v cache", pool(m, kv.v_pages)}};
  }
  Outputs reference() const override {
    const float* q = qkv_.data();
    const float* k = s_.fused ? q + q_width() : q + s_.tokens * q_width();
    const float* v = s_.fused ? k + kv_width() : k + s_.tokens * kv_width();
    const int64_t q_stride = s_.fused ? row() : q_width();
    const int64_t kv_stride = s_.fused ? row() : kv_width();
    const std::vector<double> k_rotated = test::reference_rope(
        k, kv_stride, positions_.data(), s_.tokens, s_.kv_heads, s_.head_dim, inv_freq_);
    std::vector<double> k_pool(pool_elements(), kNaN), v_pool(pool_elements(), kNaN);
    for (int64_t t = 0; t < s_.tokens; ++t) {
      if (slots_[t] < 0) continue;
      for (int64_t i = 0; i < kv_width(); ++i) {
        k_pool[slots_[t] * kv_width() + i] = stored(k_rotated[t * kv_width() + i]);
        v_pool[slots_[t] * kv_width() + i] = stored(v[t * kv_stride + i]);
      }
    }
    return {{"q", test::reference_rope(q, q_stride, positions_.data(), s_.tokens, s_.heads,
                                       s_.head_dim, inv_freq_)},
            {k_cache(), k_pool},
            {"v cache", v_pool}};
  }

 private:
  int64_t q_width() const { return s_.heads * s_.head_dim; }
  int64_t kv_width() const { return s_.kv_heads * s_.head_dim; }
  int64_t row() const { return q_width() + 2 * kv_width(); }
  int64_t pool_elements() const { return pool_slots_ * kv_width(); }
  int64_t element_bytes() const { return s_.dtype == KvDtype::kF32 ? 4 : 2; }
  const char* k_cache() const { return s_.dtype == KvDtype::kF32 ? "k cache f32" : "k cache bf16"; }
  PagedKv layout() const {
    PagedKv kv;
    kv.dtype = s_.dtype;
    kv.page_size = s_.page_size;
    kv.kv_heads = s_.kv_heads;
    kv.head_dim = s_.head_dim;
    return kv;
  }
  // A value as the cache stores it.
  double stored(double value) const {
    return s_.dtype == KvDtype::kF32 ? value : from_bf16(to_bf16(static_cast<float>(value)));
  }
  std::vector<double> pool(Memory& m, const void* pages) const {
    if (s_.dtype == KvDtype::kF32) {
      return widened(m.read(static_cast<const float*>(pages), pool_elements()));
    }
    return bf16_values(m.read(static_cast<const uint16_t*>(pages), pool_elements()));
  }

  RopeShape s_;
  std::vector<float> inv_freq_, qkv_;
  std::vector<int32_t> positions_, slots_;
  int64_t pool_slots_ = 0;
};

struct AttentionShape {
  std::string batch;  // what kind of step, for the test name
  std::vector<SeqSpec> seqs;
  int64_t kv_heads, group, head_dim, page_size;
  KvDtype dtype;
};

class PagedAttention final : public OpRun {
 public:
  PagedAttention(const AttentionShape& s, uint64_t seed)
      : cache_(test::make_paged_cache(seed, s.seqs, s.kv_heads, s.group, s.head_dim, s.page_size,
                                      s.dtype)),
        scale_(1.0f / std::sqrt(static_cast<float>(s.head_dim))) {}
  Outputs run(Device& device) const override {
    const test::PagedCache& c = cache_;
    Memory m(device);
    PagedKv kv;
    kv.k_pages = m.copy(c.k_pool);
    kv.v_pages = m.copy(c.v_pool);
    kv.dtype = c.dtype;
    kv.page_size = c.page_size;
    kv.kv_heads = c.kv_heads;
    kv.head_dim = c.head_dim;
    PagedBatch batch;
    batch.q_indptr = m.copy(c.q_indptr);
    batch.page_indptr = m.copy(c.page_indptr);
    batch.page_indices = m.copy(c.page_indices);
    batch.context_lens = m.copy(c.context_lens);
    batch.num_seqs = static_cast<int64_t>(c.seqs.size());
    batch.num_tokens = c.tokens();
    for (const SeqSpec& s : c.seqs) {
      batch.max_query_tokens = std::max(batch.max_query_tokens, s.queries);
      batch.max_context = std::max(batch.max_context, s.context);
    }
    const int64_t width = c.heads * c.head_dim;
    const AttentionScratchPlan plan =
        ops::plan_attention_scratch(device, batch.num_seqs, c.heads, kv, batch.max_context);
    void* scratch = m.bytes(plan.bytes);
    const MatmulInput in = ops::paged_attention(
        device, m.copy(c.q), kv, batch, c.heads, scale_, m.poisoned<float>(c.tokens() * width),
        plan, scratch, m.bytes(ops::matmul_input_bytes(device, c.tokens(), width)));
    return {{"out", m.read(in)}};
  }
  Outputs reference() const override {
    return {{"out", test::reference_paged_attention(cache_, scale_)}};
  }

 private:
  test::PagedCache cache_;
  float scale_;
};

class Sample final : public OpRun {
 public:
  // The rows of sample_test_rows.h (every parameter set on rows built to stress the rules), then
  // greedy rows with ties and NaNs planted.
  Sample(int64_t vocab, uint64_t seed) : vocab_(vocab) {
    test::sample_test_rows(vocab, seed, logits_, params_);
    std::mt19937 rng(static_cast<uint32_t>(seed));
    std::normal_distribution<float> normal(0.0f, 3.0f);
    const size_t planted = params_.size();
    for (int r = 0; r < 4; ++r) {
      for (int64_t i = 0; i < vocab; ++i) logits_.push_back(normal(rng));
      params_.emplace_back();
      params_.back().temperature = 0.0f;
    }
    float* row = logits_.data() + planted * vocab;  // the maximum twice
    row[vocab - 1] = row[vocab / 2] = 100.0f;
    row += vocab;  // NaNs around a maximum at the last id
    row[0] = row[vocab / 3] = kNaN;
    row[vocab - 1] = 50.0f;
    row += vocab;  // nothing but NaN and -inf: the first -inf (id 1) is the largest number
    for (int64_t i = 0; i < vocab; ++i) row[i] = i % 2 ? -INFINITY : kNaN;
    row += vocab;  // the maximum at id 0
    row[0] = 1e30f;
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    const int64_t rows = static_cast<int64_t>(params_.size());
    int32_t* ids = m.copy(std::vector<int32_t>(rows, -1));
    ops::sample(device, m.copy(logits_), rows, vocab_, m.copy(params_), ids,
                m.bytes(ops::sample_scratch_bytes(device, rows, vocab_)));
    return {{"ids", widened(m.read(ids, rows))}};
  }
  Outputs reference() const override {
    std::vector<double> ids;
    for (size_t r = 0; r < params_.size(); ++r) {
      ids.push_back(test::reference_sample(logits_.data() + r * vocab_, vocab_, params_[r]));
    }
    return {{"ids", ids}};
  }

 private:
  int64_t vocab_;
  std::vector<float> logits_;
  std::vector<SampleParams> params_;
};

// The same rows, with the log-probabilities of the drawn token and the top kMaxTopLogprobs.
// Log-probabilities are compared in two outputs: their finite values ("logprob", 0 where not
// finite), and which are -inf, NaN or +inf ("logprob_kind"), exactly.
class SampleWithLogprobs final : public OpRun {
 public:
  SampleWithLogprobs(int64_t vocab, uint64_t seed) : vocab_(vocab) {
    test::sample_test_rows(vocab, seed, logits_, params_);
  }
  Outputs run(Device& device) const override {
    Memory m(device);
    const int64_t rows = static_cast<int64_t>(params_.size());
    const int32_t n = kMaxTopLogprobs;
    int32_t* ids = m.copy(std::vector<int32_t>(rows, -1));
    SampleLogprobs lp{n, m.poisoned<float>(rows), m.copy(std::vector<int32_t>(rows * n, -1)),
                      m.poisoned<float>(rows * n)};
    ops::sample(device, m.copy(logits_), rows, vocab_, m.copy(params_), ids,
                m.bytes(ops::sample_scratch_bytes(device, rows, vocab_)), &lp);
    std::vector<float> values = m.read(lp.sampled, rows);
    const std::vector<float> top = m.read(lp.top_logprobs, rows * n);
    values.insert(values.end(), top.begin(), top.end());
    return outputs(widened(m.read(ids, rows)), widened(m.read(lp.top_ids, rows * n)),
                   widened(values));
  }
  Outputs reference() const override {
    std::vector<double> ids, top_ids, values, top;
    for (size_t r = 0; r < params_.size(); ++r) {
      const float* row = logits_.data() + r * vocab_;
      const int32_t id = test::reference_sample(row, vocab_, params_[r]);
      const test::ReferenceLogprobs ref = test::reference_logprobs(row, vocab_);
      ids.push_back(id);
      values.push_back(ref.logprob[id]);
      for (int32_t k = 0; k < kMaxTopLogprobs; ++k) {
        top_ids.push_back(ref.order[k]);
        top.push_back(ref.logprob[ref.order[k]]);
      }
    }
    values.insert(values.end(), top.begin(), top.end());
    return outputs(ids, top_ids, values);
  }

 private:
  static Outputs outputs(std::vector<double> ids, std::vector<double> top_ids,
                         std::vector<double> logprobs) {
    std::vector<double> kind;
    for (double& v : logprobs) {
      kind.push_back(std::isnan(v) ? 2 : std::isinf(v) ? (v < 0 ? 1 : 3) : 0);
      v = std::isfinite(v) ? v : 0.0;
    }
    return {{"ids", std::move(ids)},
            {"top_ids", std::move(top_ids)},
            {"logprob", std::move(logprobs)},
            {"logprob_kind", std::move(kind)}};
  }

  int64_t vocab_;
  std::vector<float> logits_;
  std::vector<SampleParams> params_;
};

std::string kv_name(KvDtype dtype) { return dtype == KvDtype::kF32 ? "f32" : "bf16"; }

std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  uint64_t seed = 1000;
  auto add = [&](const std::string& op, const std::string& shape, auto make) {
    cases.push_back({op, shape, [make, case_seed = ++seed] { return make(case_seed); }});
  };
  auto to_s = [](int64_t v) { return std::to_string(v); };

  // The lambdas name the loops' structured bindings in their captures: C++17 cannot capture
  // them implicitly (GCC allows it, clang, which builds the sanitizer tests, does not).
  for (auto [tokens, hidden, vocab] :
       {std::array<int64_t, 3>{1, 7, 50}, {3, 576, 200}, {300, 64, 1000}}) {
    add("embed", "tokens" + to_s(tokens) + "_hidden" + to_s(hidden),
        [=, tokens = tokens, hidden = hidden, vocab = vocab](uint64_t s) {
          return std::make_unique<RowLookup<uint16_t>>(tokens, hidden, vocab, s);
        });
  }
  // Hidden 96 and 576 rows straddle the 4096-element DF11 groups.
  for (auto [tokens, hidden, vocab] :
       {std::array<int64_t, 3>{1, 96, 300}, {5, 576, 120}, {40, 64, 2000}}) {
    add("embed_df11", "tokens" + to_s(tokens) + "_hidden" + to_s(hidden),
        [=, tokens = tokens, hidden = hidden, vocab = vocab](uint64_t s) {
          return std::make_unique<EmbedDf11>(tokens, hidden, vocab, static_cast<uint32_t>(s));
        });
  }
  const int64_t ragged = 3 * df11::kGroupElements + 17;  // a partial last group
  add("decode_df11", "one_element", [](uint64_t s) {
    return std::make_unique<DecodeDf11>(test::normal_bf16(1, 0.02f, s), Decode::kWhole);
  });
  add("decode_df11", "normal_" + to_s(ragged), [=](uint64_t s) {
    return std::make_unique<DecodeDf11>(test::normal_bf16(ragged, 0.02f, s), Decode::kWhole);
  });
  add("decode_df11", "groups_1_to_3_of_" + to_s(ragged), [=](uint64_t s) {
    return std::make_unique<DecodeDf11>(test::normal_bf16(ragged, 0.02f, s),
                                        Decode::kGroupsOneToThree);
  });
  // Around the CUDA kernel's 64 KiB pieces, and a start off its 16-byte loads.
  for (auto [bytes, offset] : {std::array<int64_t, 2>{1, 0},
                               {65535, 0},
                               {65536, 0},
                               {65537, 0},
                               {3 * 65536 + 5, 0},
                               {100000, 3},
                               {(int64_t{5} << 20) + 7, 0}}) {
    add("crc32", "bytes" + to_s(bytes) + "_at" + to_s(offset),
        [=, bytes = bytes, offset = offset](uint64_t s) {
          return std::make_unique<Crc32>(bytes, offset, s);
        });
  }
  add("decode_df11", "every_bf16_pattern_shuffled", [](uint64_t s) {
    return std::make_unique<DecodeDf11>(test::every_bf16_pattern(true, s), Decode::kWhole);
  });
  add("decode_df11", "ahead_normal_" + to_s(ragged), [=](uint64_t s) {
    return std::make_unique<DecodeDf11>(test::normal_bf16(ragged, 0.02f, s), Decode::kAhead);
  });
  for (auto [count, width] : {std::array<int64_t, 2>{1, 64}, {4, 577}, {33, 1}}) {
    add("gather_rows", "count" + to_s(count) + "_width" + to_s(width),
        [=, count = count, width = width](uint64_t s) {
          return std::make_unique<RowLookup<float>>(count, width, 40, s);
        });
  }
  for (auto [rows, cols, src, dst] :
       {std::array<int64_t, 4>{1, 97, 97, 97}, {8, 1000, 1005, 1011}, {3, 1, 4, 2}}) {
    add("copy_block",
        "rows" + to_s(rows) + "_cols" + to_s(cols) + "_strides" + to_s(src) + "_" + to_s(dst),
        [=, rows = rows, cols = cols, src = src, dst = dst](uint64_t s) {
          return std::make_unique<CopyBlock>(rows, cols, src, dst, s);
        });
  }
  struct NormShape {
    int64_t rows, cols;
    bool residual, in_place;
  };
  for (const NormShape n : {NormShape{1, 576, true, false},
                            {3, 1001, true, false},
                            {37, 7, false, false},
                            {300, 576, true, false},
                            {2, 576, true, true}}) {
    add("add_rms_norm_input",
        "rows" + to_s(n.rows) + "_cols" + to_s(n.cols) + (n.residual ? "_residual" : "") +
            (n.in_place ? "_in_place" : ""),
        [=](uint64_t s) {
          return std::make_unique<AddRmsNorm>(n.rows, n.cols, n.residual, n.in_place, s);
        });
  }
  // Qwen3's q (16 heads of 128 in a fused q|k|v row), k of a decode step, odd sizes.
  for (auto [tokens, heads, head_dim, stride] :
       {std::array<int64_t, 4>{37, 16, 128, 16 * 128 + 2 * 1024},
        {1, 8, 128, 1024},
        {5, 3, 17, 60}}) {
    add("head_rms_norm",
        "tokens" + to_s(tokens) + "_heads" + to_s(heads) + "_d" + to_s(head_dim) + "_stride" +
            to_s(stride),
        [=, tokens = tokens, heads = heads, head_dim = head_dim, stride = stride](uint64_t s) {
          return std::make_unique<HeadRmsNorm>(tokens, heads, head_dim, stride, s);
        });
  }
  for (auto [tokens, width, fused] :
       {std::array<int64_t, 3>{1, 1536, 1}, {3, 17, 0}, {37, 2049, 1}}) {
    add("silu_mul_input",
        "tokens" + to_s(tokens) + "_width" + to_s(width) + (fused ? "_fused" : "_separate"),
        [=, tokens = tokens, width = width, fused = fused](uint64_t s) {
          return std::make_unique<SiluMul>(tokens, width, fused, s);
        });
  }
  // Decode GEMVs, prefill shapes, k > 1024 and odd sizes everywhere.
  for (auto [rows, k, n, bias] : {std::array<int64_t, 4>{1, 576, 1536, 0},
                                  {1, 1536, 577, 1},
                                  {3, 577, 769, 1},
                                  {5, 17, 63, 1},
                                  {37, 2500, 131, 0},
                                  {300, 200, 1001, 1}}) {
    add("matmul_bf16",
        "rows" + to_s(rows) + "_k" + to_s(k) + "_n" + to_s(n) + (bias ? "_bias" : ""),
        [=, rows = rows, k = k, n = n, bias = bias](uint64_t s) {
          return std::make_unique<Matmul>(rows, k, n, bias, s);
        });
  }
  // Shapes the CUDA kernel takes (k a multiple of 256, at most 8 rows): rows within a group
  // (k 256, 4096), rows across groups (k 768, 6144, 14336: split-K partials), three and two
  // products per call, a partial last group (3 x 768 elements), every row count of a decode.
  for (const Df11MatmulShape& d : {Df11MatmulShape{1, 4096, {96}, false},
                                   {1, 256, {64, 16, 16}, true},
                                   {2, 768, {3}, true},
                                   {3, 6144, {40, 24}, false},
                                   {3, 14336, {16}, false},
                                   {5, 512, {130, 66, 66}, true},
                                   {8, 1024, {72}, true},
                                   {7, 2048, {33}, false},
                                   {6, 4096, {20, 20}, false}}) {
    std::string name = "rows" + to_s(d.rows) + "_k" + to_s(d.k) + "_n";
    for (const int64_t n : d.n) name += to_s(n) + (&n == &d.n.back() ? "" : "_");
    add("matmul_df11", name + (d.bias ? "_bias" : ""),
        [=](uint64_t s) { return std::make_unique<Df11Matmul>(d, s); });
  }
  for (const RopeShape r : {RopeShape{37, 32, 8, 128, 16, KvDtype::kBf16, true},
                            {5, 4, 4, 64, 1, KvDtype::kF32, false},
                            {1, 8, 4, 80, 4, KvDtype::kBf16, true},
                            {37, 16, 2, 128, 16, KvDtype::kF32, false},
                            {6, 8, 2, 64, 4, KvDtype::kBf16, false}}) {
    add("rope_and_cache",
        "tokens" + to_s(r.tokens) + "_heads" + to_s(r.heads) + "_kv" + to_s(r.kv_heads) + "_d" +
            to_s(r.head_dim) + "_page" + to_s(r.page_size) + "_" + kv_name(r.dtype) +
            (r.fused ? "_fused" : "_separate"),
        [=](uint64_t s) { return std::make_unique<RopeAndCache>(r, s); });
  }
  // Decode steps (one query token each) with BF16 KV reach CUDA's decode kernel, other BF16 steps
  // its prefill kernel, F32 KV and head_dim 80 its simple kernel.
  const std::vector<SeqSpec> decode = {{1, 1}, {15, 1}, {16, 1}, {17, 1}, {300, 1}, {1000, 1}};
  // A chunk after a cached prefix, a whole prompt, decodes, a two-token step, a sequence with no
  // query tokens this step.
  const std::vector<SeqSpec> mixed = {{137, 37}, {70, 70}, {17, 1}, {33, 2}, {1, 1}, {90, 0}};
  for (const AttentionShape& a : {AttentionShape{"decode", decode, 2, 1, 128, 16, KvDtype::kBf16},
                                  {"decode", decode, 2, 2, 128, 16, KvDtype::kBf16},
                                  {"decode", decode, 2, 4, 128, 16, KvDtype::kBf16},
                                  {"decode", decode, 2, 8, 128, 16, KvDtype::kBf16},
                                  {"decode", decode, 2, 4, 64, 4, KvDtype::kBf16},
                                  {"decode", decode, 1, 2, 128, 1, KvDtype::kBf16},
                                  {"mixed", mixed, 2, 4, 128, 16, KvDtype::kBf16},
                                  {"mixed", mixed, 1, 8, 64, 4, KvDtype::kBf16},
                                  {"mixed", mixed, 3, 1, 128, 1, KvDtype::kBf16},
                                  {"mixed", mixed, 2, 2, 128, 16, KvDtype::kF32},
                                  {"decode", decode, 2, 4, 64, 4, KvDtype::kF32},
                                  {"mixed", mixed, 2, 2, 80, 16, KvDtype::kBf16},
                                  {"decode", decode, 2, 4, 80, 4, KvDtype::kBf16}}) {
    add("paged_attention",
        a.batch + "_kv" + to_s(a.kv_heads) + "_group" + to_s(a.group) + "_d" + to_s(a.head_dim) +
            "_page" + to_s(a.page_size) + "_" + kv_name(a.dtype),
        [=](uint64_t s) { return std::make_unique<PagedAttention>(a, s); });
  }
  // Vocabularies that take the sampler's 16-byte path (a multiple of 4) and its scalar one, up to
  // Llama-3's.
  for (const int64_t vocab : {int64_t{97}, int64_t{128}, int64_t{3001}, int64_t{128256}}) {
    add("sample", "vocab" + to_s(vocab),
        [=](uint64_t s) { return std::make_unique<Sample>(vocab, s); });
    add("sample_logprobs", "vocab" + to_s(vocab),
        [=](uint64_t s) { return std::make_unique<SampleWithLogprobs>(vocab, s); });
  }
  return cases;
}

class BackendOps : public testing::TestWithParam<OpCase> {};

TEST_P(BackendOps, CpuBackendMatchesTheDoublePrecisionReference) {
  const std::unique_ptr<OpRun> run = GetParam().make();
  const std::unique_ptr<Device> cpu = make_device("cpu", 2);
  expect_within(GetParam().op, run->run(*cpu), run->reference(), &Tolerance::cpu);
}

TEST_P(BackendOps, CudaBackendMatchesTheCpuBackend) {
  if (!cuda_available()) GTEST_SKIP() << cuda_unavailable_reason();
  const std::unique_ptr<OpRun> run = GetParam().make();
  const std::unique_ptr<Device> cpu = make_device("cpu", 2);
  const std::unique_ptr<Device> cuda = make_device("cuda", 0);
  expect_within(GetParam().op, run->run(*cuda), run->run(*cpu), &Tolerance::cuda);
}

INSTANTIATE_TEST_SUITE_P(Ops, BackendOps, testing::ValuesIn(all_cases()),
                         [](const testing::TestParamInfo<OpCase>& info) {
                           return info.param.op + "_" + info.param.shape;
                         });

// ---- argument checks ----------------------------------------------------------------------

// An op checks its arguments before it picks a kernel, so every backend refuses the same calls
// with the same error, before touching any memory: the pointers here are host memory even on
// CUDA, and nothing is written through them.
class OpChecks : public testing::TestWithParam<std::string> {};

using test::error_message;

TEST_P(OpChecks, BadArgumentsAreRefusedBeforeAnyKernelRuns) {
  if (GetParam() == "cuda" && !cuda_available()) GTEST_SKIP() << cuda_unavailable_reason();
  const std::unique_ptr<Device> device = make_device(GetParam(), 1);
  Device& d = *device;
  std::vector<float> f(64, 7.0f);
  std::vector<uint16_t> bits(64, 0);
  std::vector<int32_t> ids(4, 0);
  float* x = f.data();

  EXPECT_EQ(error_message([&] { ops::embed(d, ids.data(), -1, bits.data(), 8, x); }),
            "embed: -1 tokens of hidden size 8");
  EXPECT_EQ(error_message([&] { ops::embed(d, ids.data(), 2, nullptr, 8, x); }),
            "embed: a null pointer");
  Df11View table;
  table.numel = 10;
  table.lengths = reinterpret_cast<const uint8_t*>(bits.data());
  EXPECT_EQ(error_message([&] { ops::embed_df11(d, ids.data(), 1, table, 4, x, bits.data()); }),
            "embed: a DF11 table of 10 elements has no rows of 4");
  EXPECT_EQ(error_message([&] { ops::decode_df11(d, table, bits.data()); }),
            "decode_df11: a null pointer");
  EXPECT_EQ(error_message([&] { ops::gather_rows(d, x, ids.data(), 2, 4, nullptr); }),
            "gather_rows: a null pointer");
  EXPECT_EQ(error_message([&] { ops::copy_block(d, x, 8, x, 4, 2, 5); }),
            "copy_block: 2 rows of 5 from rows 8 apart to rows 4 apart");
  EXPECT_EQ(error_message([&] { ops::add_rms_norm_input(d, x, nullptr, x, 2, 0, 1e-5f, x, x); }),
            "add_rms_norm_input: 2 rows of 0");
  EXPECT_EQ(error_message([&] { ops::head_rms_norm(d, x, 2, 7, 2, 4, x, 1e-5f); }),
            "head_rms_norm: 2 tokens of 2 heads of 4, rows 7 apart");
  EXPECT_EQ(error_message([&] { ops::silu_mul_input(d, x, x, 3, 2, 4, x, x); }),
            "silu_mul_input: 2 rows of 4, 3 apart");
  EXPECT_EQ(error_message([&] {
              ops::matmul_bf16(d, {x, 1, 4}, bits.data(), -2, nullptr, x);
            }),
            "matmul_bf16: negative size rows=1 k=4 n=-2");
  const ops::Df11Product product{table, 2, nullptr, x};
  EXPECT_EQ(error_message([&] {
              ops::matmul_df11(d, {x, 1, 4}, &product, 1, x);
            }),
            "matmul_df11: the DF11 tensor holds 10 elements, not 2 x 4");
  EXPECT_EQ(error_message([&] {
              ops::matmul_df11(d, {x, 1, 5}, &product, 4, x);
            }),
            "matmul_df11: 4 products, not 1..3");
  if (GetParam() == "cuda") {
    // Rows of 576 end mid-step: the CUDA kernel refuses, the caller decodes ahead instead.
    Df11View wide = table;
    wide.numel = 2 * 576;
    wide.bitstream = wide.index = reinterpret_cast<const uint32_t*>(bits.data());
    wide.signmant = reinterpret_cast<const uint8_t*>(bits.data());
    const ops::Df11Product narrow{wide, 2, nullptr, x};
    EXPECT_EQ(ops::matmul_df11_max_rows(d, 576, 1), 0);
    EXPECT_EQ(error_message([&] {
                ops::matmul_df11(d, {x, 1, 576}, &narrow, 1, x);
              }),
              "matmul_df11: the CUDA kernel takes 0 rows at most for k 576 and 1 products, not 1");
  }

  PagedKv kv;
  kv.k_pages = kv.v_pages = bits.data();
  kv.kv_heads = 2;
  kv.head_dim = 8;
  kv.page_size = 4;
  const QkvRows rows{x, x, x, 64, 64};
  EXPECT_EQ(error_message([&] {
              ops::rope_and_cache(d, rows, ids.data(), 1, 4, x, kv, ids.data(), nullptr);
            }),
            "rope_and_cache: a null pointer");
  kv.head_dim = 3;
  EXPECT_EQ(
      error_message([&] { ops::rope_and_cache(d, rows, ids.data(), 1, 4, x, kv, ids.data(), x); }),
      "rope: head_dim must be even, got 3");
  kv.head_dim = 8;
  PagedBatch batch;
  batch.q_indptr = batch.page_indptr = batch.page_indices = batch.context_lens = ids.data();
  batch.num_seqs = batch.num_tokens = batch.max_query_tokens = batch.max_context = 1;
  EXPECT_EQ(error_message([&] { ops::paged_attention(d, x, kv, batch, 3, 1.0f, x, {}, x, x); }),
            "paged_attention: 3 query heads do not divide into 2 KV heads");
  EXPECT_EQ(
      error_message([&] { ops::paged_attention(d, x, kv, batch, 2 * 129, 1.0f, x, {}, x, x); }),
      "paged_attention: at most 128 query heads per KV head, got 129");
  kv.head_dim = 264;
  EXPECT_EQ(error_message([&] { ops::paged_attention(d, x, kv, batch, 4, 1.0f, x, {}, x, x); }),
            "paged_attention: head_dim 264 outside [1, 256]");
  SampleParams params;
  EXPECT_EQ(error_message([&] { ops::sample(d, x, 1, 8, &params, nullptr, x); }),
            "sample: a null pointer");
  SampleLogprobs logprobs{9, x, ids.data(), x};  // more than the 8 tokens there are
  EXPECT_EQ(error_message([&] { ops::sample(d, x, 1, 8, &params, ids.data(), x, &logprobs); }),
            "sample: 9 top logprobs; at most 8");
  logprobs = {2, x, nullptr, x};
  EXPECT_EQ(error_message([&] { ops::sample(d, x, 1, 8, &params, ids.data(), x, &logprobs); }),
            "sample: a null logprobs pointer");
  EXPECT_EQ(error_message([&] { ops::crc32(d, nullptr, 4, x); }), "crc32: a null pointer");
  EXPECT_EQ(error_message([&] { ops::crc32(d, x, -1, x); }), "crc32: -1 bytes");
  // Fixed-point sums of 2^40 per token fit 64 bits up to 2^23 tokens; a larger vocabulary is
  // refused before any logit is read.
  EXPECT_EQ(
      error_message([&] { ops::sample(d, x, 1, kMaxSampleVocab + 1, &params, ids.data(), x); }),
      "sample: vocabulary of 8388609 tokens; at most 8388608 can be sampled");
  EXPECT_EQ(ids, std::vector<int32_t>(4, 0));
  EXPECT_EQ(f, std::vector<float>(64, 7.0f));
}

// Attention over compressed KV pages: CUDA refuses head sizes its kernel does not take, with
// the unsupported category and the sizes named, before touching memory; the CPU checks the kept
// counts. kv_compress runs on both and checks the pages' kinds (on the host ids) before
// launching anything.
TEST_P(OpChecks, CompressedKvPagesAreCheckedBeforeAnyKernelRuns) {
  if (GetParam() == "cuda" && !cuda_available()) GTEST_SKIP() << cuda_unavailable_reason();
  const std::unique_ptr<Device> device = make_device(GetParam(), 1);
  std::vector<uint16_t> pages(2 * 4 * 8);
  std::vector<uint8_t> records(4096);
  std::vector<float> x(64, 0.0f);
  std::vector<int32_t> ids(4, 0);
  PagedKv kv;
  kv.k_pages = kv.v_pages = pages.data();
  kv.k_records = kv.v_records = records.data();
  kv.page_size = 4;
  kv.kv_heads = 1;
  kv.head_dim = 8;
  kv.dense_pages = 1;
  kv.k_kept = kv.v_kept = 4;
  const int32_t compressed = 1;
  PagedBatch batch;
  batch.q_indptr = batch.page_indptr = batch.page_indices = batch.context_lens = ids.data();
  batch.num_seqs = batch.num_tokens = batch.max_query_tokens = batch.max_context = 1;
  if (GetParam() == "cuda") {
    try {
      ops::paged_attention(*device, x.data(), kv, batch, 1, 1.0f, x.data(), {}, x.data(), x.data());
      ADD_FAILURE() << "head_dim 8 over compressed pages was not refused";
    } catch (const Error& e) {
      EXPECT_EQ(e.category(), ErrorCategory::kUnsupported);
      EXPECT_EQ(e.message(),
                "kv_sparsity > 0 on CUDA needs head_dim 64 or 128 and a power-of-two page_size, "
                "got head_dim 8, page_size 4 (1 query heads, 1 KV heads)");
    }
  } else {
    kv.k_kept = 9;
    EXPECT_EQ(error_message([&] {
                ops::paged_attention(*device, x.data(), kv, batch, 1, 1.0f, x.data(), {}, x.data(),
                                     x.data());
              }),
              "paged_attention: compressed pages need a bf16 cache, V records and kept counts in "
              "[0, head_dim], got 9 and 4 of 8");
  }
  kv.k_kept = 4;
  const ops::KvCompressIds from_compressed{&compressed, &compressed, &compressed, &compressed, 1};
  EXPECT_EQ(error_message([&] { ops::kv_compress(*device, kv, from_compressed, 2); }),
            "kv_compress: source page 1 is not a dense page");
  EXPECT_EQ(records, std::vector<uint8_t>(4096, 0));
}

INSTANTIATE_TEST_SUITE_P(Backends, OpChecks, testing::Values("cpu", "cuda"),
                         [](const testing::TestParamInfo<std::string>& info) {
                           return info.param;
                         });

}  // namespace
}  // namespace slimrt
