// The CUDA backend against the CPU backend: the same tiny random models (from test_engine.cpp),
// the same steps (a batch of two sequences of different lengths: a prefill chunk, the rest of
// a prompt next to a decode, then decode steps, which the CUDA backend records as a graph and
// replays), BF16 and F32 KV caches, dense and DF11 weights. Logits must agree to a relative
// tolerance; sampled ids must be the CPU sampler's on the CUDA backend's logits.
// Skipped where no CUDA device is usable.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"
#include "df11_cuda.h"
#include "df11_test_data.h"
#include "error_message.h"
#include "slimrt/df11.h"
#include "slimrt/engine.h"
#include "slimrt/version.h"
#include "thread_pool.h"
#include "tiny_engine_model.h"

namespace slimrt {
namespace {

using test::make_model;
using test::random_tokens;
using test::run_step;
using test::test_options;
using test::tiny_model;
using test::TinyModel;
using test::to_bf16;
using test::Variant;
using test::widen;

// max |cpu - cuda| / max |cpu| over one step's logits.
double relative_diff(const std::vector<float>& cpu, const std::vector<float>& cuda) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    diff = std::max(diff, std::fabs(double(cpu[i]) - double(cuda[i])));
    scale = std::max(scale, std::fabs(double(cpu[i])));
  }
  return diff / std::max(scale, 1e-30);
}

// The CUDA backend rounds matmul inputs (and, in decode attention, q) to BF16 where the CPU keeps
// FP32: each rounding is off by up to 2^-9 relative, which averages down in the dot products;
// measured differences are ~1e-3 to 1e-2 of the largest logit. A wrong kernel is off by O(1).
constexpr double kTolerance = 3e-2;

// Two sequences: A (24 tokens) and B (7 tokens, then decodes), as the steps
// {A:16, B:7}, {A:8, B:1}, then 5 x {A:1, B:1} (and once {B:1, A:1}).
struct Steps {
  std::vector<std::vector<int32_t>> streams;
  std::vector<std::vector<std::pair<int, int>>> steps;
};

Steps two_sequences(int64_t vocab) {
  Steps s;
  s.streams = {random_tokens(24 + 6, vocab, 11), random_tokens(7 + 7, vocab, 12)};
  s.steps = {{{0, 16}, {1, 7}}, {{0, 8}, {1, 1}}, {{0, 1}, {1, 1}}, {{1, 1}, {0, 1}},
             {{0, 1}, {1, 1}},  {{0, 1}, {1, 1}}, {{0, 1}, {1, 1}}};
  return s;
}

// Runs the steps; returns each step's [batch][vocab] logits.
std::vector<std::vector<float>> run_steps(Engine& engine, const Steps& s) {
  std::vector<int64_t> ids;
  for (size_t i = 0; i < s.streams.size(); ++i) ids.push_back(engine.add_sequence());
  std::vector<size_t> consumed(s.streams.size(), 0);
  std::vector<std::vector<float>> out;
  for (const auto& step : s.steps) {
    std::vector<int64_t> step_ids;
    std::vector<std::vector<int32_t>> chunks;
    for (const auto& [seq, count] : step) {
      step_ids.push_back(ids[seq]);
      const auto& p = s.streams[seq];
      chunks.emplace_back(p.begin() + consumed[seq], p.begin() + consumed[seq] + count);
      consumed[seq] += count;
    }
    out.push_back(run_step(engine, step_ids, chunks));
  }
  return out;
}

void expect_cuda_matches_cpu(const TinyModel& m, const EngineOptions& options,
                             const std::string& what, double tolerance = kTolerance) {
  SCOPED_TRACE(what + ", kv_dtype " + options.kv_dtype);
  const Steps s = two_sequences(m.config.vocab_size);
  Engine cpu(tiny_model(m.config, m.weights(), "cpu"), options);
  Engine cuda(tiny_model(m.config, m.weights(), "cuda"), options);
  EXPECT_EQ(cuda.memory().df11_scratch > 0, cpu.memory().df11_scratch > 0);
  const auto want = run_steps(cpu, s);
  const auto got = run_steps(cuda, s);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    for (float v : got[i]) ASSERT_TRUE(std::isfinite(v)) << "step " << i;
    EXPECT_LT(relative_diff(want[i], got[i]), tolerance) << "step " << i;
  }
}

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << "no usable CUDA device"

TEST(EngineCuda, LogitsMatchTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  for (Variant variant : {Variant::kLlama, Variant::kQwen2, Variant::kLlama3,
                          Variant::kLlamaHead128, Variant::kLlamaOddSizes, Variant::kQwen3}) {
    const TinyModel m = make_model(variant);
    const std::string name = variant == Variant::kLlama           ? "llama"
                             : variant == Variant::kQwen2         ? "qwen2"
                             : variant == Variant::kQwen3         ? "qwen3"
                             : variant == Variant::kLlamaHead128  ? "llama head_dim 128"
                             : variant == Variant::kLlamaOddSizes ? "llama odd sizes"
                                                                  : "llama3";
    for (const std::string kv : {"f32", "bf16"}) expect_cuda_matches_cpu(m, test_options(kv), name);
  }
}

EngineOptions sparse_options(double k_sparsity, double v_sparsity) {
  EngineOptions o = test_options("bf16");
  o.kv_tokens = 1024;
  o.kv_compression = true;
  o.k_sparsity = k_sparsity;
  o.v_sparsity = v_sparsity;
  o.kv_window = 4;  // one page: the prompts and the decodes compress pages at every step
  return o;
}

// The GPU prunes and packs the pages that leave the window and attends over them, as the CPU.
// Pruning keeps the k largest |x| of K and V as each backend computed them: where two values
// are within BF16 rounding of each other the backends may keep different ones, which moves the
// logits more than rounding alone (measured on an H200: up to 0.045 of the largest logit, where
// a wrong kernel is off by O(1)).
constexpr double kSparseTolerance = 0.1;

TEST(EngineCuda, ASparseKvCacheMatchesTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  for (Variant variant : {Variant::kLlamaHead128, Variant::kLlamaWide}) {
    const TinyModel m = make_model(variant);
    for (double v : {0.5, 0.7}) {
      expect_cuda_matches_cpu(m, sparse_options(0.7, v),
                              "sparse, head_dim " + std::to_string(m.config.head_dim) +
                                  ", V sparsity " + std::to_string(v),
                              kSparseTolerance);
    }
  }
}

// Sliding windows of 5 tokens, shorter than the prompts, chunks and decodes of two_sequences: in
// every layer (the pages that fall out of the window are freed and no longer listed) and in all
// layers but the first (nothing freed); dense KV of both dtypes (the decode, prefill and simple
// kernels), and the sparse KV cache (its kernel).
TEST(EngineCuda, SlidingWindowsMatchTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  for (Variant variant : {Variant::kLlama, Variant::kLlamaHead128}) {
    TinyModel m = make_model(variant);
    m.config.architecture = Architecture::kMistral;
    m.config.sliding_window = 5;
    for (bool first_full : {false, true}) {
      m.config.layer_windows.assign(m.config.num_layers, 5);
      if (first_full) m.config.layer_windows[0] = 0;
      const std::string name = "window 5, head_dim " + std::to_string(m.config.head_dim) +
                               (first_full ? ", layer 0 full" : "");
      for (const std::string kv : {"f32", "bf16"}) {
        expect_cuda_matches_cpu(m, test_options(kv), name);
      }
      if (variant == Variant::kLlamaHead128) {
        expect_cuda_matches_cpu(m, sparse_options(0.7, 0.5), "sparse, " + name, kSparseTolerance);
      }
    }
  }
}

TEST(EngineCuda, ASparseKvCacheOfHeadsTheKernelsDoNotTakeIsRefused) {
  SKIP_WITHOUT_CUDA();
  const TinyModel m = make_model(Variant::kLlama);
  try {
    Engine engine(tiny_model(m.config, m.weights(), "cuda"), sparse_options(0.5, 0.5));
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::kUnsupported);
    EXPECT_EQ(e.message(),
              "kv_sparsity > 0 on CUDA needs head_dim 64 or 128 and a power-of-two "
              "page_size, got head_dim " +
                  std::to_string(m.config.head_dim) + ", page_size 4 (" +
                  std::to_string(m.config.num_heads) + " query heads, " +
                  std::to_string(m.config.num_kv_heads) + " KV heads)");
  }
}

TEST(EngineCuda, Df11WeightsMatchTheCpuBackend) {
  SKIP_WITHOUT_CUDA();
  for (Variant variant : {Variant::kLlama, Variant::kQwen2}) {
    TinyModel m = make_model(variant);
    // Every matrix, the embedding (tied or not) and lm_head included.
    m.compress([](const std::string&) { return true; });
    const std::string name = variant == Variant::kLlama ? "llama df11" : "qwen2 df11";
    for (const std::string kv : {"f32", "bf16"}) expect_cuda_matches_cpu(m, test_options(kv), name);
  }
}

TEST(EngineCuda, Df11LogitsAreTheDenseLogits) {
  // DF11 is lossless: on one backend, compressed weights give the dense weights' logits.
  SKIP_WITHOUT_CUDA();
  TinyModel m = make_model(Variant::kQwen2);
  const Steps s = two_sequences(m.config.vocab_size);
  Engine dense(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
  const auto expected = run_steps(dense, s);
  m.compress([](const std::string&) { return true; });
  Engine compressed(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
  EXPECT_EQ(run_steps(compressed, s), expected);
}

// Widths the fused DF11 matmul takes: decode steps of two sequences multiply as they decode
// where the tuner found that faster at load, prefill steps decode ahead. Either way: logits
// within the backends' tolerance of the CPU's, and greedy ids those of the dense weights on the
// same GPU (the fused sums run in another order than cuBLAS's; backend-ops tests the kernel
// itself).
TEST(EngineCuda, FusedDf11MatmulsMatchTheCpuBackendAndKeepTheGreedyIds) {
  SKIP_WITHOUT_CUDA();
  TinyModel m = make_model(Variant::kLlamaWide);
  const Steps s = two_sequences(m.config.vocab_size);
  Engine dense(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
  const auto dense_logits = run_steps(dense, s);
  m.compress([](const std::string&) { return true; });
  expect_cuda_matches_cpu(m, test_options("bf16"), "llama wide df11");
  Engine compressed(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
  const auto logits = run_steps(compressed, s);
  ASSERT_EQ(logits.size(), dense_logits.size());
  const int64_t V = m.config.vocab_size;
  for (size_t i = 0; i < logits.size(); ++i) {
    for (size_t row = 0; row * V < logits[i].size(); ++row) {
      const auto first = logits[i].begin() + row * V;
      const auto dense_first = dense_logits[i].begin() + row * V;
      EXPECT_EQ(std::max_element(first, first + V) - first,
                std::max_element(dense_first, dense_first + V) - dense_first)
          << "step " << i << " row " << row;
    }
  }
}

// SLIMRT_DF11_FUSED_ROWS=0 keeps every product decoding ahead for cuBLAS: the dense weights'
// logits bit for bit, as before the fused kernel. A value that is no row count is refused.
TEST(EngineCuda, Df11FusedRowsCapOfZeroGivesTheDenseLogits) {
  SKIP_WITHOUT_CUDA();
  TinyModel m = make_model(Variant::kLlamaWide);
  const Steps s = two_sequences(m.config.vocab_size);
  Engine dense(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
  const auto expected = run_steps(dense, s);
  m.compress([](const std::string&) { return true; });
  const auto model = tiny_model(m.config, m.weights(), "cuda");
  setenv("SLIMRT_DF11_FUSED_ROWS", "two", 1);
  EXPECT_EQ(test::error_message([&] { Engine refused(model, test_options("bf16")); }),
            "SLIMRT_DF11_FUSED_ROWS=two: not a row count");
  setenv("SLIMRT_DF11_FUSED_ROWS", "0", 1);
  Engine ahead(model, test_options("bf16"));
  unsetenv("SLIMRT_DF11_FUSED_ROWS");
  EXPECT_EQ(run_steps(ahead, s), expected);
}

TEST(EngineCuda, LargeDf11LmHeadInChunksMatchesTheCpuBackend) {
  // 70001 x 64: more than one 2^22-element chunk of lm_head, the last one partial.
  SKIP_WITHOUT_CUDA();
  TinyModel m = make_model(Variant::kLlama);
  m.config.vocab_size = 70001;
  m.config.num_layers = 1;
  std::mt19937 rng(99);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int64_t H = m.config.hidden_size;
  for (const std::string name : {"model.embed_tokens.weight", "lm_head.weight"}) {
    std::vector<uint16_t> bits(m.config.vocab_size * H);
    const float scale = name == "lm_head.weight" ? 1.0f / std::sqrt(float(H)) : 1.0f;
    for (auto& b : bits) b = to_bf16(normal(rng) * scale);
    m.shapes[name] = {m.config.vocab_size, H};
    m.bf16[name] = std::move(bits);
  }
  for (auto it = m.shapes.begin(); it != m.shapes.end();) {
    if (it->first.rfind("model.layers.1.", 0) == 0) {
      m.bf16.erase(it->first);
      m.f32.erase(it->first);
      it = m.shapes.erase(it);
    } else {
      ++it;
    }
  }
  m.compress([](const std::string& name) { return name == "lm_head.weight"; });
  expect_cuda_matches_cpu(m, test_options("bf16"), "vocab 70001, df11 lm_head");
}

// Sampling on the CUDA backend draws what the CPU sampler draws from the same logits: those the
// CUDA backend computes (a second CUDA engine fed the same tokens returns them: the backend is
// deterministic), through the engine's path (parameters uploaded with the step tables).
TEST(EngineCuda, SamplingDrawsWhatTheCpuSamplerDrawsFromTheSameLogits) {
  SKIP_WITHOUT_CUDA();
  const TinyModel m = make_model(Variant::kLlama);
  const int64_t V = m.config.vocab_size;
  ThreadPool pool(1);
  for (const bool greedy : {true, false}) {
    SCOPED_TRACE(greedy ? "greedy" : "seeded");
    Engine logits_engine(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
    Engine cuda(tiny_model(m.config, m.weights(), "cuda"), test_options("bf16"));
    std::vector<std::vector<int32_t>> next = {random_tokens(11, V, 21), random_tokens(4, V, 22)};
    std::vector<int64_t> ids_l, ids_g;
    for (int i = 0; i < 2; ++i) {
      ids_l.push_back(logits_engine.add_sequence());
      ids_g.push_back(cuda.add_sequence());
    }
    SamplingParams params[2];
    SampleParams kernel_params[2];
    for (int b = 0; b < 2; ++b) {
      if (greedy) {
        params[b].temperature = 0.0f;
      } else {
        params[b].temperature = 0.9f;
        params[b].top_k = 40;
        params[b].top_p = 0.95f;
        params[b].seed = 77 + b;
      }
      kernel_params[b].temperature = params[b].temperature;
      kernel_params[b].top_k = params[b].top_k;
      kernel_params[b].top_p = params[b].top_p;
      kernel_params[b].min_p = params[b].min_p;
      kernel_params[b].seed = params[b].seed;
    }
    int64_t lengths[2] = {0, 0};
    for (int step = 0; step < 8; ++step) {
      std::vector<int32_t> tokens, counts;
      for (int b = 0; b < 2; ++b) {
        tokens.insert(tokens.end(), next[b].begin(), next[b].end());
        counts.push_back(static_cast<int32_t>(next[b].size()));
        lengths[b] += static_cast<int64_t>(next[b].size());
        kernel_params[b].counter = static_cast<uint64_t>(lengths[b]);  // as the engine sets it
      }
      std::vector<float> logits = run_step(logits_engine, ids_l, next);
      // Odd steps also ask for log-probabilities: the same ids, the same top 5 in the same order,
      // their values within rounding of the CPU's (the normaliser sums in another order).
      const bool with_logprobs = step % 2 == 1;
      constexpr int32_t kTop = 5;
      std::vector<int32_t> want(2, -1), want_top(2 * kTop), got_top(2 * kTop, -1);
      std::vector<float> want_lp(2), want_top_lp(2 * kTop), got_lp(2), got_top_lp(2 * kTop);
      std::vector<uint64_t> scratch(2 * V);
      const SampleLogprobs cpu_lp{kTop, want_lp.data(), want_top.data(), want_top_lp.data()};
      cpu::sample(logits.data(), 2, V, kernel_params, want.data(), scratch.data(), pool, &cpu_lp);
      StepInput in;
      in.seq_ids = ids_g.data();
      in.counts = counts.data();
      in.batch = 2;
      in.tokens = tokens.data();
      in.num_tokens = static_cast<int64_t>(tokens.size());
      std::vector<int32_t> got(2, -1);
      if (with_logprobs) {
        cuda.step(in, params, got.data(),
                  StepLogprobs{kTop, got_lp.data(), got_top.data(), got_top_lp.data()});
        EXPECT_EQ(got_top, want_top) << "step " << step;
        for (int k = 0; k < 2; ++k) EXPECT_NEAR(got_lp[k], want_lp[k], 1e-5) << "step " << step;
        for (int k = 0; k < 2 * kTop; ++k) {
          EXPECT_NEAR(got_top_lp[k], want_top_lp[k], 1e-5) << "step " << step;
        }
      } else {
        cuda.step(in, params, got.data());
      }
      EXPECT_EQ(got, want) << "step " << step;
      next = {{got[0]}, {got[1]}};
    }
  }
}

TEST(EngineCuda, ReportsItsDeviceMemory) {
  SKIP_WITHOUT_CUDA();
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions o = test_options("bf16");
  o.memory_limit_bytes = 0;  // what the GPU has free
  Engine engine(tiny_model(m.config, m.weights(), "cuda"), o);
  EXPECT_GT(engine.memory().total(), 0);
  const int64_t seq = engine.add_sequence();
  const std::vector<float> logits = run_step(engine, {seq}, {random_tokens(5, 97, 5)});
  for (float v : logits) EXPECT_TRUE(std::isfinite(v));
}

}  // namespace
}  // namespace slimrt
