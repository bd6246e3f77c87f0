// The engine with kv_compression: pages leave each sequence's recent window whole and are
// packed into compressed pages of the same pool; sparsity 0 is bit-identical to the dense
// engine; a step that needs more compressed pages than are free is refused and changes
// nothing; the pool's counts of both kinds come back to full after every test.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "error_message.h"
#include "slimrt/engine.h"
#include "tiny_engine_model.h"

namespace slimrt {
namespace {

using test::error_message;
using test::make_model;
using test::random_tokens;
using test::run_step;
using test::test_options;
using test::tiny_model;
using test::TinyModel;
using test::Variant;

EngineOptions sparse_options(double ks, double vs, int64_t window) {
  EngineOptions o = test_options("bf16");  // page_size 4, max_batch 4, max_step_tokens 64
  o.kv_tokens = 1024;
  o.kv_compression = true;
  o.k_sparsity = ks;
  o.v_sparsity = vs;
  o.kv_window = window;
  return o;
}

// Two sequences: prompts in chunks (the second chunk attends to pages compressed after the
// first), then decode steps of both together. Returns every step's logits.
std::vector<std::vector<float>> run_two_sequences(Engine& engine, int decode_steps) {
  const int64_t a = engine.add_sequence(), b = engine.add_sequence();
  std::vector<std::vector<float>> out;
  out.push_back(run_step(engine, {a, b}, {random_tokens(24, 97, 1), random_tokens(13, 97, 2)}));
  out.push_back(run_step(engine, {a, b}, {random_tokens(21, 97, 3), random_tokens(30, 97, 4)}));
  for (int i = 0; i < decode_steps; ++i) {
    out.push_back(run_step(engine, {a, b}, {{(5 * i) % 97}, {(7 * i + 3) % 97}}));
  }
  engine.release_sequence(a);
  engine.release_sequence(b);
  return out;
}

void expect_pool_full(const Engine& engine) {
  const KvUsage u = engine.kv_usage();
  EXPECT_EQ(u.dense_pages_used, 0);
  EXPECT_EQ(u.compressed_pages_used, 0);
  EXPECT_EQ(engine.free_pages(), engine.total_pages());
}

TEST(SparseEngine, SparsityZeroGivesBitIdenticalLogitsToTheDenseEngine) {
  for (Variant variant : {Variant::kLlama, Variant::kLlamaOddSizes, Variant::kLlamaHead128}) {
    const TinyModel m = make_model(variant);
    Engine dense(tiny_model(m.config, m.weights()), test_options("bf16"));
    Engine sparse(tiny_model(m.config, m.weights()), sparse_options(0.0, 0.0, 8));
    const auto want = run_two_sequences(dense, 20);
    const auto got = run_two_sequences(sparse, 20);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(std::memcmp(got[i].data(), want[i].data(), got[i].size() * sizeof(float)), 0)
          << "step " << i << " head_dim " << m.config.head_dim;
    }
    expect_pool_full(sparse);
  }
}

// Nothing is pruned while every token is inside the window; pruning shows once pages leave it.
TEST(SparseEngine, TokensInsideTheWindowAreExactAndOlderOnesArePruned) {
  const TinyModel m = make_model(Variant::kLlama);
  Engine dense(tiny_model(m.config, m.weights()), test_options("bf16"));
  EngineOptions wide = sparse_options(0.7, 0.5, 64);  // longer than the 55 tokens run
  wide.kv_tokens = 4096;
  Engine sparse(tiny_model(m.config, m.weights()), wide);
  EXPECT_EQ(run_two_sequences(sparse, 10), run_two_sequences(dense, 10));
  Engine pruned(tiny_model(m.config, m.weights()), sparse_options(0.7, 0.5, 8));
  const auto want = run_two_sequences(dense, 2);
  const auto got = run_two_sequences(pruned, 2);
  // The first chunks' logits come before any page is compressed: a chunk attends densely.
  EXPECT_EQ(got[0], want[0]);
  EXPECT_NE(got[1], want[1]);
  expect_pool_full(pruned);
}

TEST(SparseEngine, PagesLeaveTheWindowWholeAndAllComeBack) {
  const TinyModel m = make_model(Variant::kLlama);
  Engine engine(tiny_model(m.config, m.weights()), sparse_options(0.7, 0.7, 8));
  const KvUsage empty = engine.kv_usage();
  // 4 windows of ceil((8 + 3) / 4) + 2 = 5 pages, and 16 pages for a step of 64 tokens.
  EXPECT_EQ(empty.dense_pages, 4 * 5 + 16);
  // head_dim 16 at 70 %: 11 dropped, 5 kept, records of 2 + 10 bytes against 32 dense.
  EXPECT_EQ(empty.dense_page_bytes, 2 * 2 * 4 * 2 * 16 * 2);
  EXPECT_EQ(empty.compressed_page_bytes, 2 * 4 * 2 * (12 + 12));
  // The budget of 1024 dense tokens, less the dense pages and the records' tail pads.
  EXPECT_EQ(empty.compressed_pages,
            (256 * empty.dense_page_bytes - 36 * empty.dense_page_bytes - 4 * 64) /
                empty.compressed_page_bytes);
  EXPECT_EQ(engine.total_pages(), empty.compressed_pages);
  EXPECT_EQ(engine.kv_tokens(), (empty.dense_pages + empty.compressed_pages) * 4);

  const int64_t a = engine.add_sequence();
  EXPECT_EQ(engine.pages_needed(a, 37), (37 - 8) / 4);
  run_step(engine, {a}, {random_tokens(37, 97, 1)});
  KvUsage u = engine.kv_usage();
  EXPECT_EQ(u.tokens, 37);
  EXPECT_EQ(u.compressed_pages_used, 7);  // tokens 0..27; 28..36 stay dense
  EXPECT_EQ(u.dense_pages_used, 10 - 7);
  EXPECT_EQ(engine.free_pages(), u.compressed_pages - 7);
  for (int i = 0; i < 5; ++i) run_step(engine, {a}, {{i}});
  u = engine.kv_usage();
  EXPECT_EQ(u.compressed_pages_used, (42 - 8) / 4);
  EXPECT_EQ(u.dense_pages_used, 11 - 8);
  EXPECT_EQ(engine.pages_needed(a, 1), 0);
  EXPECT_EQ(engine.pages_needed(a, 2), 1);  // at 44 tokens, 36 leave the window: page 9
  engine.release_sequence(a);
  expect_pool_full(engine);
}

TEST(SparseEngine, AStepBeyondTheCompressedPagesIsRefusedAndChangesNothing) {
  const TinyModel m = make_model(Variant::kLlama);
  EngineOptions o = sparse_options(0.5, 0.5, 4);
  o.kv_tokens = 144;  // room for 6 compressed pages beside the 32 dense ones
  Engine engine(tiny_model(m.config, m.weights()), o);
  const int64_t total = engine.total_pages();
  ASSERT_EQ(total, 6);
  const int64_t a = engine.add_sequence(), b = engine.add_sequence();
  // a takes all compressed pages but one.
  const std::vector<int32_t> prompt = random_tokens(4 + 4 * (total - 1), 97, 5);
  const auto first = run_step(engine, {a}, {prompt});
  EXPECT_EQ(engine.free_pages(), 1);
  const KvUsage before = engine.kv_usage();
  const std::string message = error_message([&] {
    run_step(engine, {a, b}, {{1}, random_tokens(12, 97, 6)});  // b needs 2
  });
  EXPECT_EQ(message,
            "KV cache out of pages: this step needs 2 more compressed pages, 1 are free (" +
                std::to_string(total) + " compressed pages of 4 tokens)");
  const KvUsage after = engine.kv_usage();
  EXPECT_EQ(after.dense_pages_used, before.dense_pages_used);
  EXPECT_EQ(after.compressed_pages_used, before.compressed_pages_used);
  EXPECT_EQ(engine.sequence_length(a), static_cast<int64_t>(prompt.size()));
  EXPECT_EQ(engine.sequence_length(b), 0);
  // Preemption by recompute: b goes, a is released and recomputed to the same logits.
  engine.release_sequence(b);
  engine.release_sequence(a);
  expect_pool_full(engine);
  const int64_t c = engine.add_sequence();
  EXPECT_EQ(run_step(engine, {c}, {prompt}), first);
  engine.release_sequence(c);
  expect_pool_full(engine);
}

// The dense pages hold max_batch windows and a step: an application that keeps more sequences
// than that alive runs out of them, with its own message, and nothing changes.
TEST(SparseEngine, MoreLiveSequencesThanMaxBatchRunOutOfDensePages) {
  const TinyModel m = make_model(Variant::kLlama);
  Engine engine(tiny_model(m.config, m.weights()), sparse_options(0.5, 0.5, 8));
  ASSERT_EQ(engine.kv_usage().dense_pages, 36);
  std::vector<int64_t> ids;
  // 12 tokens each: 3 dense pages during the step, then 1 compressed and 2 dense.
  for (int i = 0; i < 17; ++i) {
    ids.push_back(engine.add_sequence());
    run_step(engine, {ids.back()}, {random_tokens(12, 97, i)});
  }
  EXPECT_EQ(engine.kv_usage().dense_pages_used, 34);
  ids.push_back(engine.add_sequence());
  EXPECT_EQ(error_message([&] { run_step(engine, {ids.back()}, {random_tokens(12, 97, 99)}); }),
            "KV cache out of dense pages: this step needs 3 more, 2 are free (36 dense pages hold "
            "the recent windows of max_batch sequences)");
  EXPECT_EQ(engine.kv_usage().compressed_pages_used, 17);
  EXPECT_EQ(engine.sequence_length(ids.back()), 0);
  for (int64_t id : ids) engine.release_sequence(id);
  expect_pool_full(engine);
}

TEST(SparseEngine, BadOptionsGiveClearErrors) {
  const TinyModel m = make_model(Variant::kLlama);
  const auto model = tiny_model(m.config, m.weights());
  EngineOptions o = sparse_options(0.5, 0.5, 8);
  o.kv_dtype = "f32";
  EXPECT_EQ(error_message([&] { Engine e(model, o); }),
            "options: kv_compression needs kv_dtype \"bf16\", got \"f32\"");
  o = sparse_options(1.0, 0.5, 8);
  EXPECT_EQ(error_message([&] { Engine e(model, o); }),
            "options: k_sparsity must be in [0, 1), got 1");
  o = sparse_options(0.5, -0.1, 8);
  EXPECT_EQ(error_message([&] { Engine e(model, o); }),
            "options: v_sparsity must be in [0, 1), got -0.1");
  o = sparse_options(0.5, 0.5, -1);
  EXPECT_EQ(error_message([&] { Engine e(model, o); }), "options: kv_window must be >= 0, got -1");
  o = sparse_options(0.5, 0.5, 8);
  o.kv_tokens = 64;
  try {
    Engine e(model, o);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.category(), ErrorCategory::kOutOfMemory);
    EXPECT_EQ(e.message(),
              "options: kv_tokens=64 leaves no room for compressed pages beside the 36 dense pages "
              "of max_batch=4 windows of kv_window=8 tokens and one step of max_step_tokens=64");
  }
}

}  // namespace
}  // namespace slimrt
