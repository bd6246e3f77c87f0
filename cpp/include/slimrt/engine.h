// Engine: runs a model one step at a time over a batch of sequences, with a paged KV cache, in
// memory reserved once at construction (as llama.cpp's llama_context on a llama_model).
// docs/ENGINE_API.md is the contract; the Python `slimrt._core.Engine` is a thin wrapper.
//
//   auto model = slimrt::Model::load("SmolLM2.gguf");      // slimrt/model.h
//   slimrt::EngineOptions options;                          // defaults: max_batch 8, page 16, ...
//   slimrt::Engine engine(model, options);                  // keeps the model alive
//
//   int64_t seq = engine.add_sequence();
//   slimrt::StepInput in;                 // one prefill chunk of 5 tokens for `seq`
//   in.seq_ids = &seq; in.counts = &five; in.batch = 1; in.tokens = prompt; in.num_tokens = 5;
//   std::vector<float> logits(engine.vocab_size());
//   engine.step(in, logits.data());       // logits of the chunk's last token
//
// A step either completes or changes nothing (all checks run before any work). Calls are
// serialized: one engine serves one step at a time, and engines on one model take turns on
// its device.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "slimrt/model.h"

namespace slimrt {

// Construction options, with the defaults of docs/ENGINE_API.md (like llama.cpp's
// llama_context_default_params(): a default-constructed struct is a working configuration).
struct EngineOptions {
  int64_t max_batch = 8;           // sequences per step
  int64_t kv_tokens = 0;           // KV pool capacity in tokens over all sequences; 0 =
                                   // min(max_position_embeddings, 32768); rounded up to pages
  int64_t page_size = 16;          // tokens per KV page
  int64_t max_step_tokens = 512;   // tokens per step (the prefill chunk budget)
  std::string kv_dtype = "bf16";   // "bf16" or "f32"
  int64_t memory_limit_bytes = 0;  // the model's weights and this engine's arenas together;
                                   // 0 = what the device has available
  // The bitmap-sparse KV cache (CPU only; bf16 KV): each sequence's newest kv_window tokens stay
  // dense, older ones are pruned per token and KV head to k = head_dim - round(s * head_dim)
  // values (s = k_sparsity for K, v_sparsity for V) and packed into compressed pages, a whole
  // page at a time. kv_tokens is then the byte budget of that many dense tokens, shared by the
  // dense pages of max_batch recent windows and by as many compressed pages as the rest holds.
  bool kv_compression = false;
  double k_sparsity = 0.0;  // in [0, 1)
  double v_sparsity = 0.0;
  int64_t kv_window = 32;  // >= 0
  // Prefix caching: full KV pages stay cached after their sequence ends, and a new sequence whose
  // tokens start with theirs reuses them (Engine::reuse_prefix) instead of computing them. With
  // kv_compression only compressed pages are cached, so a sequence that reuses them sees its
  // prefix compressed from the start, as with a window that ended there. Off for a model whose
  // every layer has a sliding window: its tables drop their first pages as they grow.
  bool enable_prefix_caching = true;

  // Throws "options: ..." naming the first value out of range (Engine's constructor calls it;
  // an application may call it before loading a model, to fail early).
  void validate() const;
};

// How the next token of a sequence is drawn. temperature 0 is greedy. The draw is keyed by
// (seed, position of the token being generated), so a request gets the same tokens whatever
// else shares its batch.
struct SamplingParams {
  float temperature = 1.0f;
  int32_t top_k = 0;   // 0 = off
  float top_p = 1.0f;  // 1 = off
  float min_p = 0.0f;  // 0 = off
  uint64_t seed = 0;

  // Throws "sampling: ..." naming the first invalid value.
  void validate() const;
};

// What a sampling step also writes when asked (docs/ENGINE_API.md): log-probabilities of the
// model's raw distribution, log_softmax of the logits before temperature, top-k, top-p and min-p
// (a NaN logit counts as -inf). top_n in [0, 20] and at most the vocabulary.
struct StepLogprobs {
  int32_t top_n = 0;
  float* sampled = nullptr;       // [batch]: the drawn token's
  int32_t* top_ids = nullptr;     // [batch][top_n]: the most likely first, ties to the lower id
  float* top_logprobs = nullptr;  // [batch][top_n]
};

// One step: sequence seq_ids[b] receives counts[b] consecutive ids of `tokens` (a prefill chunk,
// or 1 for a decode step; one step may mix both). The arrays are read during step() only.
struct StepInput {
  const int64_t* seq_ids = nullptr;  // [batch]
  const int32_t* counts = nullptr;   // [batch]
  int64_t batch = 0;
  const int32_t* tokens = nullptr;  // [num_tokens], num_tokens == sum(counts)
  int64_t num_tokens = 0;
};

// Bytes of each arena, reserved at construction and fixed for the engine's lifetime.
struct MemoryUsage {
  int64_t weights = 0;
  int64_t df11_scratch = 0;
  int64_t kv_pool = 0;
  int64_t activations = 0;
  int64_t total() const { return weights + df11_scratch + kv_pool + activations; }
};

// Where the KV cache's bytes are: its pages of each kind, in use and in all, and what one token
// costs in each (all layers, K and V). Without kv_compression there are no compressed pages.
struct KvUsage {
  int64_t page_size = 0;
  int64_t dense_pages = 0;
  int64_t dense_pages_used = 0;
  int64_t compressed_pages = 0;
  int64_t compressed_pages_used = 0;
  int64_t dense_page_bytes = 0;
  int64_t compressed_page_bytes = 0;
  int64_t tokens = 0;                 // tokens cached over all sequences (not those freed)
  int64_t peak_dense_pages_used = 0;  // the most in use at once so far
  int64_t peak_compressed_pages_used = 0;
  int64_t peak_tokens = 0;  // the most tokens cached at once after a step
  // Prefix caching (of the compressed pages with kv_compression, else of the dense ones): the
  // pages cached, those of them no sequence references (counted free, evicted least recently
  // used first when a page is needed), the pages evicted so far, and the tokens reuse_prefix
  // was asked for and found cached so far.
  int64_t prefix_cached_pages = 0;
  int64_t prefix_cached_free_pages = 0;
  int64_t prefix_evicted_pages = 0;
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
};

class Engine {
 public:
  // Checks the options and the memory budget, then reserves the arenas on the model's device.
  explicit Engine(std::shared_ptr<const Model> model, const EngineOptions& options = {});
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  int64_t add_sequence();                 // a new, empty sequence; ids are never reused
  void release_sequence(int64_t seq_id);  // returns its pages to the pool
  int64_t sequence_length(int64_t seq_id) const;
  // KV pages the pool must hand sequence seq_id for it to grow by new_tokens (0 when its last
  // page has room): what a scheduler compares with free_pages() before it plans a step. With
  // kv_compression, pages and free_pages() count compressed pages (the pages that bind: the
  // dense ones are sized for max_batch recent windows and a step's tokens).
  int64_t pages_needed(int64_t seq_id, int64_t new_tokens) const;
  // Prefix caching: gives the empty sequence seq_id the cached pages that hold the longest
  // prefix of tokens[0, count) in whole pages, short of the last token (a step computes at
  // least that one, for its logits), and returns how many tokens it holds now: the caller's
  // first step feeds tokens from there. 0 without enable_prefix_caching or a hit.
  int64_t reuse_prefix(int64_t seq_id, const int32_t* tokens, int64_t count);

  // Runs one step and writes the logits of each sequence's last new token: [batch][vocab].
  void step(const StepInput& input, float* logits);
  // Runs one step and writes one sampled token id per sequence: [batch]. sampling: [batch].
  void step(const StepInput& input, const SamplingParams* sampling, int32_t* token_ids);
  // The same, and the log-probabilities of each drawn token and of the top_n most likely.
  void step(const StepInput& input, const SamplingParams* sampling, int32_t* token_ids,
            const StepLogprobs& logprobs);

  int64_t free_pages() const;
  int64_t total_pages() const;
  int64_t page_size() const;
  int64_t vocab_size() const;
  int64_t max_position_embeddings() const;
  // The pool's capacity in tokens: options.kv_tokens, rounded up to pages; with kv_compression,
  // the tokens its dense and compressed pages hold together.
  int64_t kv_tokens() const;
  MemoryUsage memory() const;
  KvUsage kv_usage() const;
  const ModelConfig& config() const;
  const Model& model() const;

  // For tests and debugging: the pages of a sequence, in order, and the CRC-32 of a page's
  // bytes over every layer (K and V), to show a shared page is never written.
  std::vector<int32_t> sequence_pages(int64_t seq_id) const;
  uint32_t page_crc32(int32_t page) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace slimrt
