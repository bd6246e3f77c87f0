// Engine: validation of every request, the sequence registry and the step transaction
// (check -> take pages -> run -> commit, or give the pages back). The forward pass itself is
// the Executor's; memory is planned here, once.
#include "slimrt/engine.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <unordered_map>

#include "arena.h"
#include "block_table.h"
#include "check.h"
#include "device.h"
#include "executor.h"
#include "kv_pool.h"
#include "kv_record.h"
#include "model_impl.h"
#include "ops/kv_compress.h"
#include "ops/paged_attention.h"
#include "prefix_index.h"
#include "sample_rules.h"
#include "weights.h"

namespace slimrt {
namespace {

constexpr int64_t kDefaultKvTokensCap = 32768;

// Checks the options and fills in the defaults that depend on the model.
EngineOptions resolve_options(const EngineOptions& in, const ModelConfig& config) {
  in.validate();
  EngineOptions o = in;
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  if (o.kv_tokens == 0) o.kv_tokens = std::min(config.max_position_embeddings, kDefaultKvTokensCap);
  SLIMRT_CHECK(o.kv_tokens <= kInt32Max - o.page_size,
               "options: kv_tokens " << o.kv_tokens << " exceeds the 2^31 slots kernels address");
  // The pool is whole pages; report and use the capacity it really has.
  o.kv_tokens = (o.kv_tokens + o.page_size - 1) / o.page_size * o.page_size;
  // A model whose every layer slides frees the pages that fall out of the window from the front
  // of each table, so a prompt's first pages do not outlive it: nothing to share.
  if (config.shared_window() > 0) o.enable_prefix_caching = false;
  return o;
}

std::shared_ptr<const Model> non_null(std::shared_ptr<const Model> model) {
  SLIMRT_CHECK(model != nullptr, "Engine: null model");
  return model;
}

}  // namespace

void EngineOptions::validate() const {
  const EngineOptions& o = *this;
  SLIMRT_CHECK(o.max_batch >= 1, "options: max_batch must be >= 1, got " << o.max_batch);
  SLIMRT_CHECK(o.page_size >= 1, "options: page_size must be >= 1, got " << o.page_size);
  SLIMRT_CHECK(o.max_step_tokens >= 1,
               "options: max_step_tokens must be >= 1, got " << o.max_step_tokens);
  SLIMRT_CHECK(o.kv_tokens >= 0, "options: kv_tokens must be >= 0, got " << o.kv_tokens);
  SLIMRT_CHECK(o.memory_limit_bytes >= 0,
               "options: memory_limit_bytes must be >= 0, got " << o.memory_limit_bytes);
  SLIMRT_CHECK(o.kv_dtype == "bf16" || o.kv_dtype == "f32",
               "options: kv_dtype must be \"bf16\" or \"f32\", got \"" << o.kv_dtype << "\"");
  constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();
  SLIMRT_CHECK(o.max_step_tokens <= kInt32Max && o.max_batch <= kInt32Max,
               "options: max_step_tokens and max_batch must fit in 32 bits");
  SLIMRT_CHECK(o.k_sparsity >= 0.0 && o.k_sparsity < 1.0,
               "options: k_sparsity must be in [0, 1), got " << o.k_sparsity);
  SLIMRT_CHECK(o.v_sparsity >= 0.0 && o.v_sparsity < 1.0,
               "options: v_sparsity must be in [0, 1), got " << o.v_sparsity);
  SLIMRT_CHECK(o.kv_window >= 0 && o.kv_window <= kInt32Max,
               "options: kv_window must be >= 0, got " << o.kv_window);
  SLIMRT_CHECK(!o.kv_compression || o.kv_dtype == "bf16",
               "options: kv_compression needs kv_dtype \"bf16\", got \"" << o.kv_dtype << "\"");
}

void SamplingParams::validate() const {
  SLIMRT_CHECK(std::isfinite(temperature) && temperature >= 0.0f,
               "sampling: temperature must be >= 0, got " << temperature);
  SLIMRT_CHECK(top_k >= 0, "sampling: top_k must be >= 0, got " << top_k);
  SLIMRT_CHECK(top_p > 0.0f && top_p <= 1.0f, "sampling: top_p must be in (0, 1], got " << top_p);
  SLIMRT_CHECK(min_p >= 0.0f && min_p <= 1.0f, "sampling: min_p must be in [0, 1], got " << min_p);
}

struct Engine::Impl {
  // Declared before everything that holds device memory, so it is destroyed after them.
  std::shared_ptr<const Model> model;
  const ModelConfig& config;
  Device& device;
  const Weights& weights;
  EngineOptions options;
  std::unique_ptr<KvPool> kv_pool;
  std::unique_ptr<Executor> executor;
  MemoryUsage memory;
  int64_t max_pages_per_sequence = 0;
  // The sliding window of every layer (0: some layer sees all): pages before it are freed.
  int64_t window = 0;

  std::unordered_map<int64_t, BlockTable> sequences;
  int64_t next_sequence_id = 0;
  // Per-step bookkeeping, sized at load.
  std::vector<BlockTable*> step_tables;
  std::vector<int64_t> pages_before;
  // Pages that leave the recent windows in a step: [max_compress] dense sources, then as many
  // compressed destinations, the layout of the executor's device copy (one upload for both).
  int64_t max_compress = 0;
  std::vector<int32_t> compress_ids;
  int64_t cached_tokens = 0;
  int64_t peak_tokens = 0;
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  std::vector<int32_t> prefix_pages;  // reuse_prefix's scratch, sized at load
  std::vector<uint64_t> prefix_keys;
  mutable std::mutex mutex;

  Impl(std::shared_ptr<const Model> model, const EngineOptions& requested);

  BlockTable& sequence(int64_t seq_id);
  void check_step(const StepInput& in, const SamplingParams* sampling);
  void run_step(const StepInput& in, const SamplingParams* sampling, float* logits,
                int32_t* token_ids, const StepLogprobs* logprobs);
  // Compressed pages `table` takes on as it grows to `length` tokens (0 without kv_compression).
  int64_t compressed_needed(const BlockTable& table, int64_t length) const;
  void compress_left_window(int64_t batch);
  void offer_to_prefix_cache(int64_t batch);
  int64_t reuse_prefix(BlockTable& table, const int32_t* tokens, int64_t count);
};

int64_t Engine::Impl::compressed_needed(const BlockTable& table, int64_t length) const {
  return options.kv_compression
             ? table.compressed_needed(length, options.kv_window, window, options.page_size)
             : 0;
}

Engine::Impl::Impl(std::shared_ptr<const Model> shared, const EngineOptions& requested)
    : model(std::move(shared)),
      config(model->config()),
      device(*model->impl().device),
      weights(*model->impl().weights) {
  options = resolve_options(requested, config);
  window = config.shared_window();

  KvPool::Shape shape;
  shape.layers = config.num_layers;
  shape.kv_heads = config.num_kv_heads;
  shape.head_dim = config.head_dim;
  shape.page_size = options.page_size;
  shape.num_pages = options.kv_tokens / options.page_size;
  shape.dtype = options.kv_dtype == "bf16" ? KvDtype::kBf16 : KvDtype::kF32;
  shape.prefix_caching = options.enable_prefix_caching;
  {
    // The pool mixes in its shape; what else shapes a page's bytes: the model (one pool serves
    // one model for its life, but a key should say what it was computed with), and the window
    // that decided which of a prefix's pages its tokens attended to compressed.
    const uint64_t salt[] = {static_cast<uint64_t>(reinterpret_cast<uintptr_t>(model.get())),
                             static_cast<uint64_t>(options.kv_compression),
                             static_cast<uint64_t>(options.kv_compression ? options.kv_window : 0)};
    shape.prefix_salt = hash_words(salt, 3);
  }
  if (options.kv_compression) {
    PagedKv layer;
    layer.kv_heads = shape.kv_heads;
    layer.head_dim = shape.head_dim;
    layer.page_size = shape.page_size;
    ops::check_sparse_attention_supported(device, config.num_heads, layer);
    const int64_t P = options.page_size;
    // What is dense at most: each of max_batch sequences holds ceil((window + P - 1) / P) pages
    // after a step; a step adds at most ceil(its tokens / P) + 1 pages to each of its sequences.
    const int64_t window_pages = (options.kv_window + P - 1 + P - 1) / P;
    const int64_t step_pages = (options.max_step_tokens + P - 1) / P;
    const int64_t budget = shape.num_pages * KvPool::dense_page_bytes(shape);
    shape.num_pages = options.max_batch * (window_pages + 2) + step_pages;
    shape.k_kept = kv_kept_count(shape.head_dim, options.k_sparsity);
    shape.v_kept = kv_kept_count(shape.head_dim, options.v_sparsity);
    const int64_t left = budget - shape.num_pages * KvPool::dense_page_bytes(shape) -
                         2 * shape.layers * kKvRecordTailPad;
    shape.compressed_pages = std::max<int64_t>(0, left / KvPool::compressed_page_bytes(shape));
    SLIMRT_CHECK_AS(ErrorCategory::kOutOfMemory, shape.compressed_pages > 0,
                    "options: kv_tokens="
                        << options.kv_tokens << " leaves no room for compressed "
                        << "pages beside the " << shape.num_pages << " dense pages of max_batch="
                        << options.max_batch << " windows of kv_window=" << options.kv_window
                        << " tokens and one step of max_step_tokens=" << options.max_step_tokens);
    options.kv_tokens = (shape.num_pages + shape.compressed_pages) * P;
    max_compress = step_pages + options.max_batch;
  }
  Executor::Limits limits;
  limits.max_batch = options.max_batch;
  limits.max_step_tokens = options.max_step_tokens;
  // What one table can hold at once: the pool, or the whole context if that is shorter.
  max_pages_per_sequence =
      (std::min(config.max_context(), options.kv_tokens) + options.page_size - 1) /
      options.page_size;
  // A sequence whose old pages are freed may grow past the pool.
  limits.max_context =
      window > 0 ? config.max_context() : std::min(config.max_context(), options.kv_tokens);
  // A page serves one sequence at most, unless prefix caching shares it among all of them.
  limits.max_page_indices = options.enable_prefix_caching
                                ? options.max_batch * max_pages_per_sequence
                                : shape.num_pages + shape.compressed_pages;
  limits.kv.dtype = shape.dtype;
  limits.kv.page_size = shape.page_size;
  limits.kv.kv_heads = shape.kv_heads;
  limits.kv.head_dim = shape.head_dim;
  limits.max_compress_pages = max_compress;

  // Every arena is measured, and the sum checked, before the first byte is reserved.
  const Executor::Sizes sizes = Executor::measure(config, weights, device, limits);
  MemoryPlan plan;
  plan.weights = weights.bytes();
  plan.df11_scratch = sizes.df11_scratch;
  plan.kv_pool = KvPool::bytes_needed(shape);
  plan.kv_tokens = options.kv_tokens;
  plan.activations = sizes.activations;
  // The weights are already reserved: what the device has left plus them is what the plan,
  // which counts them, may take.
  check_memory_budget(plan, options.memory_limit_bytes > 0
                                ? options.memory_limit_bytes
                                : device.available_memory() + weights.bytes());

  kv_pool = std::make_unique<KvPool>(device, shape);
  executor = std::make_unique<Executor>(config, weights, *kv_pool, device, limits);
  const Executor::Sizes reserved = executor->sizes();
  memory.weights = weights.bytes();
  memory.df11_scratch = reserved.df11_scratch;
  memory.kv_pool = kv_pool->bytes();
  memory.activations = reserved.activations;

  step_tables.assign(options.max_batch, nullptr);
  pages_before.assign(options.max_batch, 0);
  compress_ids.assign(2 * max_compress, 0);
  if (options.enable_prefix_caching) {
    prefix_pages.assign(max_pages_per_sequence, 0);
    prefix_keys.assign(max_pages_per_sequence, 0);
  }
}

BlockTable& Engine::Impl::sequence(int64_t seq_id) {
  const auto it = sequences.find(seq_id);
  SLIMRT_CHECK(it != sequences.end(), "unknown sequence id " << seq_id);
  return it->second;
}

// Every check of docs/ENGINE_API.md, before anything changes. Fills step_tables.
void Engine::Impl::check_step(const StepInput& in, const SamplingParams* sampling) {
  const int64_t B = in.batch;
  const int64_t T = in.num_tokens;
  SLIMRT_CHECK(B >= 1, "step: no sequences given");
  SLIMRT_CHECK(B <= options.max_batch,
               "step: " << B << " sequences exceed max_batch=" << options.max_batch);
  SLIMRT_CHECK(T <= options.max_step_tokens,
               "step: " << T << " tokens exceed max_step_tokens=" << options.max_step_tokens);
  SLIMRT_CHECK(in.seq_ids != nullptr && in.counts != nullptr && (T == 0 || in.tokens != nullptr),
               "step: null input array");
  int64_t sum = 0;
  for (int64_t b = 0; b < B; ++b) {
    SLIMRT_CHECK(in.counts[b] >= 1, "step: counts[" << b << "] is " << in.counts[b]
                                                    << "; every sequence needs at least 1 token");
    sum += in.counts[b];
  }
  SLIMRT_CHECK(sum == T, "step: counts sum to " << sum << " but " << T << " tokens were given");

  int64_t pages = 0;
  int64_t compressed = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t id = in.seq_ids[b];
    const auto it = sequences.find(id);
    SLIMRT_CHECK(it != sequences.end(), "step: unknown sequence id " << id);
    for (int64_t a = 0; a < b; ++a) {
      SLIMRT_CHECK(in.seq_ids[a] != id, "step: sequence id " << id << " appears twice");
    }
    BlockTable& table = it->second;
    const int64_t length = table.length() + in.counts[b];
    SLIMRT_CHECK(length <= config.max_position_embeddings,
                 "context length " << length << " exceeds the model's maximum of "
                                   << config.max_position_embeddings);
    pages += table.pages_needed(in.counts[b], options.page_size);
    compressed += compressed_needed(table, length);
    step_tables[b] = &table;
  }
  for (int64_t i = 0; i < T; ++i) {
    SLIMRT_CHECK(in.tokens[i] >= 0 && in.tokens[i] < config.vocab_size,
                 "step: token id " << in.tokens[i] << " (tokens[" << i << "]) is outside [0, "
                                   << config.vocab_size << ")");
  }
  if (sampling != nullptr) {
    for (int64_t b = 0; b < B; ++b) sampling[b].validate();
  }
  kv_pool->check_available(pages, compressed);
}

// Packs the pages that left each stepped sequence's window into compressed pages (check_step
// counted them free), in every layer, then gives the dense ones back. A prompt is compressed
// as its chunks complete, so it is never dense beyond a chunk and a window.
void Engine::Impl::compress_left_window(int64_t batch) {
  int32_t* src = compress_ids.data();
  int32_t* dst = src + max_compress;
  int64_t count = 0;
  for (int64_t b = 0; b < batch; ++b) {
    const BlockTable& table = *step_tables[b];
    const int64_t n = table.pages_to_compress(options.kv_window, options.page_size);
    for (int64_t i = 0; i < n; ++i) src[count++] = table.pages()[table.compressed_pages() + i];
  }
  if (count == 0) return;
  kv_pool->allocate_compressed(count, dst);
  try {
    // One upload (the whole buffer: one copy beats two) serves every layer's launch.
    int32_t* device_src = executor->compress_ids();
    device.copy_to_device(device_src, src,
                          static_cast<int64_t>(compress_ids.size() * sizeof(int32_t)));
    const ops::KvCompressIds ids{src, dst, device_src, device_src + max_compress, count};
    for (int64_t l = 0; l < config.num_layers; ++l) {
      ops::kv_compress(device, kv_pool->layer(l), ids,
                       kv_pool->total_pages() + kv_pool->compressed_pages());
    }
  } catch (...) {
    kv_pool->release(dst, count);
    throw;
  }
  int64_t at = 0;
  for (int64_t b = 0; b < batch; ++b) {
    BlockTable& table = *step_tables[b];
    const int64_t n = table.pages_to_compress(options.kv_window, options.page_size);
    table.swap_in_compressed(dst + at, n, src + at);
    at += n;
  }
  kv_pool->release(src, count);
}

void Engine::Impl::run_step(const StepInput& in, const SamplingParams* sampling, float* logits,
                            int32_t* token_ids, const StepLogprobs* logprobs) {
  std::lock_guard<std::mutex> lock(mutex);
  std::lock_guard<std::mutex> device_lock(model->impl().step_mutex);
  check_step(in, sampling);
  const int64_t B = in.batch;
  for (int64_t b = 0; b < B; ++b) pages_before[b] = step_tables[b]->num_pages();
  try {
    // Cannot run out: check_step counted the pages of the whole step.
    for (int64_t b = 0; b < B; ++b) step_tables[b]->grow(*kv_pool, in.counts[b]);
    StepTables& tables = executor->tables();
    fill_step_tables(step_tables.data(), in.counts, B, in.tokens, options.page_size, tables);
    if (sampling != nullptr) {
      SampleParams* params = executor->sample_params();
      for (int64_t b = 0; b < B; ++b) {
        static_cast<SamplingParams&>(params[b]) = sampling[b];
        // The position of the token being drawn: the sequence's length after this step.
        params[b].counter = static_cast<uint64_t>(tables.context_lens[b]);
      }
    }
    executor->forward();
    if (sampling != nullptr) {
      executor->sample(token_ids, logprobs);
    } else {
      executor->read_logits(logits);
    }
  } catch (...) {
    // KV rows written for the new tokens sit past each sequence's length: never read again.
    for (int64_t b = 0; b < B; ++b) step_tables[b]->shrink_to(*kv_pool, pages_before[b]);
    throw;
  }
  const int32_t* tokens = in.tokens;
  for (int64_t b = 0; b < B; ++b) {
    step_tables[b]->commit(in.counts[b], tokens);
    tokens += in.counts[b];
  }
  cached_tokens += in.num_tokens;
  peak_tokens = std::max(peak_tokens, cached_tokens);
  if (window > 0) {
    for (int64_t b = 0; b < B; ++b) {
      BlockTable& table = *step_tables[b];
      const int64_t before = table.first_page();
      table.drop_unseen(*kv_pool, window, options.page_size);
      cached_tokens -= (table.first_page() - before) * options.page_size;
    }
  }
  if (options.kv_compression) compress_left_window(B);
  offer_to_prefix_cache(B);
}

// Caches the pages of the step's sequences that no step will write again: each full page of a
// dense pool, each compressed page of a compressing one (its dense pages are rewritten windows).
void Engine::Impl::offer_to_prefix_cache(int64_t batch) {
  const PrefixIndex* index = kv_pool->prefix_index();
  if (index == nullptr) return;
  for (int64_t b = 0; b < batch; ++b) {
    BlockTable& table = *step_tables[b];
    table.key_full_pages(*index);
    const int64_t done = options.kv_compression ? table.compressed_pages() : table.keyed_pages();
    for (int64_t p = table.offered_pages(); p < done; ++p) {
      kv_pool->cache(table.pages()[p], table.page_key(p), table.parent_key(*index, p),
                     table.tokens() + p * options.page_size);
    }
    table.set_offered_pages(std::max(done, table.offered_pages()));
  }
}

int64_t Engine::Impl::reuse_prefix(BlockTable& table, const int32_t* tokens, int64_t count) {
  const PrefixIndex* index = kv_pool->prefix_index();
  if (index == nullptr) return 0;
  SLIMRT_CHECK(table.length() == 0,
               "reuse_prefix: the sequence already holds " << table.length() << " tokens");
  // Tokens are not checked: a page holds only tokens a step accepted, so an invalid id never
  // matches, and the step that feeds it refuses it with its own message.
  const int64_t P = options.page_size;
  const int64_t most = std::min<int64_t>(std::max<int64_t>(count - 1, 0) / P,
                                         static_cast<int64_t>(prefix_pages.size()));
  int64_t hits = 0;
  uint64_t parent = index->root();
  for (; hits < most; ++hits) {
    const int32_t* page_tokens = tokens + hits * P;
    const uint64_t key = index->key(parent, page_tokens);
    const int32_t page = kv_pool->find_cached(key, parent, page_tokens);
    if (page < 0) break;
    prefix_pages[hits] = page;
    prefix_keys[hits] = key;
    parent = key;
  }
  for (int64_t i = 0; i < hits; ++i) kv_pool->retain(prefix_pages[i]);
  table.adopt_prefix(prefix_pages.data(), prefix_keys.data(), hits, tokens, P,
                     options.kv_compression);
  prefix_query_tokens += count;
  prefix_hit_tokens += hits * P;
  cached_tokens += hits * P;
  peak_tokens = std::max(peak_tokens, cached_tokens);
  return hits * P;
}

Engine::Engine(std::shared_ptr<const Model> model, const EngineOptions& options)
    : impl_(std::make_unique<Impl>(non_null(std::move(model)), options)) {}

Engine::~Engine() = default;

int64_t Engine::add_sequence() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const int64_t id = impl_->next_sequence_id++;
  const int64_t kept_tokens = impl_->options.enable_prefix_caching
                                  ? impl_->max_pages_per_sequence * impl_->options.page_size
                                  : 0;
  impl_->sequences.emplace(id, BlockTable(impl_->max_pages_per_sequence, kept_tokens));
  return id;
}

void Engine::release_sequence(int64_t seq_id) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  BlockTable& table = impl_->sequence(seq_id);
  impl_->cached_tokens -= table.length() - table.first_page() * impl_->options.page_size;
  table.release(*impl_->kv_pool);
  impl_->sequences.erase(seq_id);
}

int64_t Engine::sequence_length(int64_t seq_id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->sequence(seq_id).length();
}

int64_t Engine::pages_needed(int64_t seq_id, int64_t new_tokens) const {
  SLIMRT_CHECK(new_tokens >= 0, "pages_needed: new_tokens must be >= 0, got " << new_tokens);
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const BlockTable& table = impl_->sequence(seq_id);
  if (impl_->options.kv_compression) {
    return impl_->compressed_needed(table, table.length() + new_tokens);
  }
  return table.pages_needed(new_tokens, impl_->options.page_size);
}

int64_t Engine::reuse_prefix(int64_t seq_id, const int32_t* tokens, int64_t count) {
  SLIMRT_CHECK(count >= 0 && (count == 0 || tokens != nullptr),
               "reuse_prefix: null tokens or negative count");
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->reuse_prefix(impl_->sequence(seq_id), tokens, count);
}

void Engine::step(const StepInput& input, float* logits) {
  SLIMRT_CHECK(logits != nullptr, "step: null logits output");
  impl_->run_step(input, nullptr, logits, nullptr, nullptr);
}

void Engine::step(const StepInput& input, const SamplingParams* sampling, int32_t* token_ids) {
  SLIMRT_CHECK(sampling != nullptr && token_ids != nullptr, "step: null sampling or output");
  impl_->run_step(input, sampling, nullptr, token_ids, nullptr);
}

void Engine::step(const StepInput& input, const SamplingParams* sampling, int32_t* token_ids,
                  const StepLogprobs& logprobs) {
  SLIMRT_CHECK(sampling != nullptr && token_ids != nullptr, "step: null sampling or output");
  SLIMRT_CHECK(logprobs.top_n >= 0 && logprobs.top_n <= kMaxTopLogprobs &&
                   logprobs.top_n <= impl_->config.vocab_size,
               "step: top_n " << logprobs.top_n << " outside [0, "
                              << std::min<int64_t>(kMaxTopLogprobs, impl_->config.vocab_size)
                              << "]");
  SLIMRT_CHECK(logprobs.sampled != nullptr &&
                   (logprobs.top_n == 0 ||
                    (logprobs.top_ids != nullptr && logprobs.top_logprobs != nullptr)),
               "step: null logprobs output");
  impl_->run_step(input, sampling, nullptr, token_ids, &logprobs);
}

int64_t Engine::free_pages() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->options.kv_compression ? impl_->kv_pool->free_compressed_pages()
                                       : impl_->kv_pool->free_pages();
}
int64_t Engine::total_pages() const {
  return impl_->options.kv_compression ? impl_->kv_pool->compressed_pages()
                                       : impl_->kv_pool->total_pages();
}
int64_t Engine::page_size() const { return impl_->options.page_size; }
int64_t Engine::vocab_size() const { return impl_->config.vocab_size; }
int64_t Engine::max_position_embeddings() const { return impl_->config.max_position_embeddings; }
int64_t Engine::kv_tokens() const { return impl_->options.kv_tokens; }
MemoryUsage Engine::memory() const { return impl_->memory; }
KvUsage Engine::kv_usage() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const KvPool& pool = *impl_->kv_pool;
  KvUsage u;
  u.page_size = pool.page_size();
  u.dense_pages = pool.total_pages();
  u.dense_pages_used = pool.total_pages() - pool.free_pages();
  u.compressed_pages = pool.compressed_pages();
  u.compressed_pages_used = pool.compressed_pages() - pool.free_compressed_pages();
  u.dense_page_bytes = KvPool::dense_page_bytes(pool.shape());
  u.compressed_page_bytes =
      pool.compressed_pages() > 0 ? KvPool::compressed_page_bytes(pool.shape()) : 0;
  u.tokens = impl_->cached_tokens;
  u.peak_dense_pages_used = pool.peak_pages_used();
  u.peak_compressed_pages_used = pool.peak_compressed_pages_used();
  u.peak_tokens = impl_->peak_tokens;
  if (const PrefixIndex* index = pool.prefix_index()) {
    u.prefix_cached_pages = index->size();
    u.prefix_cached_free_pages = index->parked();
    u.prefix_evicted_pages = index->evictions();
  }
  u.prefix_query_tokens = impl_->prefix_query_tokens;
  u.prefix_hit_tokens = impl_->prefix_hit_tokens;
  return u;
}

std::vector<int32_t> Engine::sequence_pages(int64_t seq_id) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  const BlockTable& table = impl_->sequence(seq_id);
  return std::vector<int32_t>(table.pages(), table.pages() + table.num_pages());
}

uint32_t Engine::page_crc32(int32_t page) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  std::lock_guard<std::mutex> device_lock(impl_->model->impl().step_mutex);
  return impl_->kv_pool->page_crc32(impl_->device, page);
}
const ModelConfig& Engine::config() const { return impl_->config; }
const Model& Engine::model() const { return *impl_->model; }

}  // namespace slimrt
