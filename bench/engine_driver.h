// How the model-level benchmarks (decode-step, e2e) drive a slimrt::Engine: random prompt ids
// (llama-bench also times random tokens: the cost of a step does not depend on which), a
// prompt fed in chunks of at most `chunk` tokens, and one decode step over many sequences.
#pragma once

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "bench.h"
#include "slimrt/engine.h"

namespace slimrt_bench {

// A -m that names nothing is a bad command line (exit 2), not a model file error.
inline void require_model_path(const std::string& path) {
  std::error_code error;
  if (!std::filesystem::exists(path, error)) throw UsageError("-m: " + path + " does not exist");
}

// What the rows call a loaded model: its file or directory name.
inline std::string model_file_name(const std::string& path) {
  std::filesystem::path p(path);
  if (p.filename().empty()) p = p.parent_path();  // "dir/"
  return p.filename().string();
}

inline std::vector<int32_t> random_tokens(int64_t n, int64_t vocab, uint64_t seed) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  uint64_t state = seed;
  for (int32_t& id : ids) id = static_cast<int32_t>(splitmix64(state) % uint64_t(vocab));
  return ids;
}

// Steps that feed tokens[0, n) to `seq`, `chunk` at a time; the last step's greedy token is
// returned (sampling one id per step is what a generating caller pays too).
inline int32_t prefill(slimrt::Engine& engine, int64_t seq, const std::vector<int32_t>& tokens,
                       int64_t chunk) {
  slimrt::SamplingParams greedy;
  greedy.temperature = 0.0f;
  int32_t next = 0;
  for (size_t fed = 0; fed < tokens.size();) {
    const auto count = static_cast<int32_t>(std::min<size_t>(tokens.size() - fed, size_t(chunk)));
    slimrt::StepInput in;
    in.seq_ids = &seq;
    in.counts = &count;
    in.batch = 1;
    in.tokens = tokens.data() + fed;
    in.num_tokens = count;
    engine.step(in, &greedy, &next);
    fed += static_cast<size_t>(count);
  }
  return next;
}

// One decode step: sequence seqs[b] gets tokens[b]; tokens is overwritten with the greedy next
// ids, ready for the following step.
inline void decode_step(slimrt::Engine& engine, const std::vector<int64_t>& seqs,
                        std::vector<int32_t>& tokens) {
  const std::vector<int32_t> ones(seqs.size(), 1);
  std::vector<slimrt::SamplingParams> greedy(seqs.size());
  for (slimrt::SamplingParams& p : greedy) p.temperature = 0.0f;
  const std::vector<int32_t> in_tokens = tokens;
  slimrt::StepInput in;
  in.seq_ids = seqs.data();
  in.counts = ones.data();
  in.batch = static_cast<int64_t>(seqs.size());
  in.tokens = in_tokens.data();
  in.num_tokens = in.batch;
  engine.step(in, greedy.data(), tokens.data());
}

}  // namespace slimrt_bench
