// One layer's paged KV cache filled with random BF16 K/V, a batch of queries over it and
// everything ops::paged_attention needs, on a device: what `slimrt-bench attention` (dense
// pages, decode and prefill) and `slimrt-bench sparse-attention` (compressed pages against
// dense) time.
//
//   PagedKvFixture f(case_, *device, pool);
//   time_us(*device, [&] { f.attend(false); }, warmup, reps);
//   f.kv_bytes(false);  // the K/V bytes one call reads
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "device.h"
#include "device_memory.h"
#include "kernel_args.h"
#include "thread_pool.h"

namespace slimrt_bench {

struct AttentionShape {
  const char* name;
  int64_t heads, kv_heads, head_dim;
};

// SmolLM2-135M (9 query / 3 KV heads of 64) and Llama-3.1-8B (32 / 8 of 128).
extern const AttentionShape kAttentionShapes[2];

struct PagedCase {
  AttentionShape shape;
  int64_t batch = 1;         // sequences
  int64_t context = 4096;    // tokens cached per sequence, the new ones included
  int64_t query_tokens = 1;  // new tokens per sequence: 1 is a decode step, more a prefill chunk
  int64_t page_size = 16;
  // Compressed pages (docs/FORMAT.md, "Sparse KV pages") for every page older than the newest
  // `window` tokens, keeping 1 - sparsity of each K and V row; no compression when false.
  bool compress = false;
  int64_t window = 32;
  double sparsity = 0.0;

  std::string name() const;  // "smollm2 9q/3kv d64 b1 ctx 4096"
};

class PagedKvFixture {
 public:
  PagedKvFixture(const PagedCase& c, slimrt::Device& device, slimrt::ThreadPool& pool);
  ~PagedKvFixture();
  PagedKvFixture(const PagedKvFixture&) = delete;
  PagedKvFixture& operator=(const PagedKvFixture&) = delete;

  // One ops::paged_attention call over the dense pages, or over the compressed ones where the
  // case has them.
  void attend(bool compressed);
  // K/V bytes one call must read: every cached position of every sequence once, records for
  // compressed positions and dense rows for the others.
  double kv_bytes(bool compressed) const;
  // Query-key pairs one call scores (causal): the work of a prefill chunk.
  double attended_pairs() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace slimrt_bench
