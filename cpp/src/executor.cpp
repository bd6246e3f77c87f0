#include "executor.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <numeric>
#include <string>
#include <type_traits>

#include "check.h"
#include "df11_groups.h"
#include "logging.h"
#include "ops/copy_rows.h"
#include "ops/df11_decode.h"
#include "ops/embed.h"
#include "ops/head_rms_norm.h"
#include "ops/matmul_bf16.h"
#include "ops/matmul_df11.h"
#include "ops/moe.h"
#include "ops/paged_attention.h"
#include "ops/rms_norm.h"
#include "ops/rope_and_cache.h"
#include "ops/sample.h"
#include "ops/silu_mul.h"
#include "sample_rules.h"

namespace slimrt {
namespace {

// A compressed lm_head is decoded in chunks of at least this many elements (8 MiB of BF16),
// or of the largest layer's scratch when that is larger: big enough that each chunk's matmul
// streams well, small next to the scratch a whole vocab x hidden matrix would need.
constexpr int64_t kMinHeadChunkElements = int64_t{1} << 22;

// The longest context of a step, rounded up to one of a few values per octave (256 tokens at
// least): backends size their attention launches by it, and a decode step's recorded launches
// (Device::run_graph) are keyed by it, so the rounding bounds how many recordings a long
// generation makes.
int64_t context_bucket(int64_t tokens) {
  int64_t octave = 256;
  while (octave * 2 <= tokens) octave *= 2;
  const int64_t step = std::max<int64_t>(256, octave / 8);
  return std::max<int64_t>(1, (tokens + step - 1) / step) * step;
}

// SLIMRT_DF11_FUSED_ROWS=N caps the rows the tuner may choose to multiply as they decode (0:
// always decode ahead, where the device can), for comparing both ways in one process.
int64_t fused_rows_cap() {
  const char* text = std::getenv("SLIMRT_DF11_FUSED_ROWS");
  if (text == nullptr || *text == '\0') return std::numeric_limits<int64_t>::max();
  char* end = nullptr;
  const long long value = std::strtoll(text, &end, 10);
  SLIMRT_CHECK_AS(ErrorCategory::kInvalidArgument, *end == '\0' && value >= 0,
                  "SLIMRT_DF11_FUSED_ROWS=" << text << ": not a row count");
  return value;
}

}  // namespace

Executor::Sizes Executor::measure(const ModelConfig& config, const Weights& weights, Device& device,
                                  const Limits& limits) {
  return Executor(config, weights, device, limits).sizes();
}

Executor::Executor(const ModelConfig& config, const Weights& weights, Device& device,
                   const Limits& limits)
    : config_(config), weights_(weights), device_(device), limits_(limits) {
  lay_out();
}

Executor::Executor(const ModelConfig& config, const Weights& weights, const KvPool& kv_pool,
                   Device& device, const Limits& limits)
    : config_(config),
      weights_(weights),
      kv_pool_(&kv_pool),
      device_(device),
      limits_(limits),
      inv_freq_host_(config.rope_inv_freq()) {
  if (config.rope_scaling.longrope) {
    // Both LongRoPE sets, short then long: a token's entry of rope_sets picks one.
    const std::vector<float> long_freq = config.rope_inv_freq(true);
    inv_freq_host_.insert(inv_freq_host_.end(), long_freq.begin(), long_freq.end());
  }
  lay_out();
  activations_.reserve(&device, activations_.used());
  staging_.reserve(nullptr, staging_.used());
  scratch_.reserve(&device, scratch_.used());
  lay_out();
  tune_df11();
  device.copy_to_device(inv_freq_, inv_freq_host_.data(),
                        static_cast<int64_t>(inv_freq_host_.size() * sizeof(float)));
}

Executor::~Executor() { device_.forget_graphs(this); }

Executor::Sizes Executor::sizes() const {
  return {activations_.used() + staging_.used(), scratch_.used()};
}

void Executor::lay_out() {
  const int64_t T = limits_.max_step_tokens;
  const int64_t B = limits_.max_batch;
  const int64_t P = limits_.max_page_indices;
  const int64_t H = config_.hidden_size;
  const int64_t V = config_.vocab_size;

  // Host staging: the engine writes a step's tables here.
  const int64_t tables_start = staging_.offset();
  tables_.token_ids = staging_.allocate<int32_t>(T);
  tables_.positions = staging_.allocate<int32_t>(T);
  tables_.slots = staging_.allocate<int32_t>(T);
  tables_.q_indptr = staging_.allocate<int32_t>(B + 1);
  tables_.page_indptr = staging_.allocate<int32_t>(B + 1);
  tables_.page_indices = staging_.allocate<int32_t>(P);
  tables_.context_lens = staging_.allocate<int32_t>(B);
  tables_.first_pages = staging_.allocate<int32_t>(B);
  tables_.last_rows = staging_.allocate<int32_t>(B);
  rope_sets_host_ = config_.rope_scaling.longrope ? staging_.allocate<int32_t>(T) : nullptr;
  sample_params_ = staging_.allocate<SampleParams>(B);
  tables_bytes_ = staging_.offset() - tables_start;

  // Their device copy (same layout), then the model constants and the activations.
  tables_device_ = activations_.allocate_bytes(tables_bytes_);
  auto mirror = [&](auto* host) {
    using T = std::remove_pointer_t<decltype(host)>;
    if (tables_device_ == nullptr) return static_cast<T*>(nullptr);
    const auto at =
        reinterpret_cast<const char*>(host) - reinterpret_cast<const char*>(tables_.token_ids);
    return reinterpret_cast<T*>(static_cast<char*>(tables_device_) + at);
  };
  token_ids_ = mirror(tables_.token_ids);
  positions_ = mirror(tables_.positions);
  slots_ = mirror(tables_.slots);
  q_indptr_ = mirror(tables_.q_indptr);
  page_indptr_ = mirror(tables_.page_indptr);
  page_indices_ = mirror(tables_.page_indices);
  context_lens_ = mirror(tables_.context_lens);
  first_pages_ = mirror(tables_.first_pages);
  last_rows_ = mirror(tables_.last_rows);
  rope_sets_ = rope_sets_host_ != nullptr ? mirror(rope_sets_host_) : nullptr;
  sample_params_device_ = mirror(sample_params_);
  compress_ids_ = activations_.allocate<int32_t>(2 * limits_.max_compress_pages);
  // LongRoPE keeps two sets (the constructor fills inv_freq_host_ with both).
  inv_freq_ =
      activations_.allocate<float>(config_.head_dim / 2 * (config_.rope_scaling.longrope ? 2 : 1));
  x_ = activations_.allocate<float>(T * H);
  h_ = activations_.allocate<float>(T * H);
  const int64_t widest = std::max({H, config_.q_width(), config_.intermediate_size});
  matmul_in_ =
      activations_.allocate_bytes(ops::matmul_input_bytes(device_, std::max(T, B), widest));
  attention_plan_ = ops::plan_attention_scratch(device_, B, config_.num_heads, limits_.kv,
                                                context_bucket(limits_.max_context));
  attention_scratch_ = activations_.allocate_bytes(attention_plan_.bytes);

  // One region, three phases that never overlap in time.
  const int64_t phase = activations_.offset();
  qkv_ = activations_.allocate<float>(T * (config_.q_width() + 2 * config_.kv_width()));
  q_ = activations_.allocate<float>(T * config_.q_width());
  attn_ = activations_.allocate<float>(T * config_.q_width());
  activations_.rewind(phase);
  // A model whose every layer has experts (Mixtral) needs no dense MLP buffers.
  bool dense_mlp = false;
  for (int64_t l = 0; l < weights_.num_layers(); ++l)
    dense_mlp = dense_mlp || !config_.moe_layer(l);
  const int64_t I = dense_mlp ? config_.intermediate_size : 0;
  gate_up_ = activations_.allocate<float>(T * 2 * I);
  act_ = activations_.allocate<float>(T * I);
  moe_layers_.assign(weights_.num_layers(), {});
  int64_t moe_bytes = 0;
  for (int64_t l = 0; l < weights_.num_layers(); ++l) {
    if (!config_.moe_layer(l)) continue;
    const LayerWeights& w = weights_.layer(l);
    moe_layers_[l] = {&w.router,
                      w.expert_gate.data(),
                      w.expert_up.data(),
                      w.expert_down.data(),
                      config_.num_experts,
                      config_.experts_per_token,
                      H,
                      config_.moe_intermediate_size,
                      config_.norm_topk_prob};
    moe_bytes = std::max(moe_bytes, ops::moe_scratch_bytes(device_, T, moe_layers_[l]));
  }
  moe_scratch_ = moe_bytes > 0 ? activations_.allocate_bytes(moe_bytes) : nullptr;
  activations_.rewind(phase);
  last_ = activations_.allocate<float>(B * H);
  last_h_ = activations_.allocate<float>(B * H);
  logits_ = activations_.allocate<float>(B * V);
  sample_scratch_ = activations_.allocate_bytes(ops::sample_scratch_bytes(device_, B, V));
  sampled_ = activations_.allocate<int32_t>(B);
  logprobs_.sampled = activations_.allocate<float>(B);
  logprobs_.top_ids = activations_.allocate<int32_t>(B * kMaxTopLogprobs);
  logprobs_.top_logprobs = activations_.allocate<float>(B * kMaxTopLogprobs);

  plan_df11(T);
  scratch_.rewind(0);
  embed_slot_ = weights_.embedding().is_df11
                    ? scratch_.allocate<uint16_t>(ops::embed_df11_scratch_elements(device_, H))
                    : nullptr;
}

// DF11 scratch: a slot per compressed matrix unless every product multiplies as it decodes at
// every step size (the CPU): every use starts at offset 0 (one layer at a time, then the head),
// or, when decoding ahead, at 0 for even layers and past the largest layer for odd ones. Then the
// fused products' scratch, apart from the slots (decoding ahead fills one while they run).
void Executor::plan_df11(int64_t T) {
  const int64_t B = limits_.max_batch;
  const int64_t H = config_.hidden_size;
  const int64_t V = config_.vocab_size;
  // Each product at the most compressed matrices any layer has of it (the fewest rows).
  bool need_slots = false;
  for (int product = 0; product < kProducts; ++product) {
    const int64_t most = product == kHeadProduct ? B : T;
    fused_rows_[product] = most;
    bool any = false;
    for (int64_t l = 0; l < weights_.num_layers(); ++l) {
      const Df11Products set = df11_products(static_cast<Product>(product), l, T);
      if (set.count == 0) continue;
      any = true;
      fused_rows_[product] =
          std::min(fused_rows_[product], ops::matmul_df11_max_rows(device_, set.k, set.count));
      if (product == kHeadProduct) break;
    }
    if (!any) fused_rows_[product] = 0;
    need_slots = need_slots || (any && fused_rows_[product] < most);
  }
  int64_t layer_bytes = 0;
  for (int64_t l = 0; l < weights_.num_layers(); ++l) {
    int64_t bytes = 0;
    for (const Matrix* m : layer_matrices(l)) {
      if (m->is_df11) bytes += align_up(m->numel() * static_cast<int64_t>(sizeof(uint16_t)));
    }
    layer_bytes = std::max(layer_bytes, bytes);
  }
  decode_ahead_ = need_slots && layer_bytes > 0 && device_.overlaps_decode();
  layer_slots_.assign(weights_.num_layers(), {});
  for (int64_t l = 0; need_slots && l < weights_.num_layers(); ++l) {
    const auto matrices = layer_matrices(l);
    scratch_.rewind(decode_ahead_ && l % 2 == 1 ? layer_bytes : 0);
    for (int m = 0; m < kMatrices; ++m) {
      layer_slots_[l][m] =
          matrices[m]->is_df11 ? scratch_.allocate<uint16_t>(matrices[m]->numel()) : nullptr;
    }
  }
  const Matrix& head = weights_.lm_head();
  if (head.is_df11 && need_slots) {
    // Chunks start on a DF11 group boundary: a whole number of `unit` rows.
    const int64_t unit = df11::kGroupElements / std::gcd(df11::kGroupElements, H);
    const int64_t budget = std::max(kMinHeadChunkElements, scratch_.used() / 2);
    head_chunk_rows_ = std::min(V, std::max(unit, budget / H / unit * unit));
    scratch_.rewind(0);
    lm_head_slot_ = scratch_.allocate<uint16_t>(head_chunk_rows_ * H);
    head_chunk_out_ = activations_.allocate<float>(B * head_chunk_rows_);
  }
  int64_t fused_bytes = 0;
  for (int product = 0; product < kProducts; ++product) {
    for (int64_t l = 0; fused_rows_[product] > 0 && l < weights_.num_layers(); ++l) {
      const Df11Products set = df11_products(static_cast<Product>(product), l, T);
      if (set.count == 0) continue;
      fused_bytes =
          std::max(fused_bytes, ops::matmul_df11_scratch_bytes(device_, set.p.data(), set.count,
                                                               set.k, fused_rows_[product]));
    }
  }
  scratch_.rewind(scratch_.used());
  fused_scratch_ = fused_bytes > 0 ? scratch_.allocate_bytes(fused_bytes) : nullptr;
}

// Where decoding ahead is planned, each product is timed both ways on the first layer's (or the
// head's) own matrices, in the buffers of a real step: fused_rows_ becomes the most rows for which
// multiplying as it decodes is no slower. Contents of the buffers do not matter to the timing.
void Executor::tune_df11() {
  bool tuned = false;
  for (int product = 0; product < kProducts; ++product) {
    if (fused_rows_[product] == 0 || layer_slots_.empty()) continue;
    const int64_t rows = fused_rows_[product];
    uint16_t* decoded = nullptr;
    float* combined = nullptr;
    Df11Products set;
    if (product == kHeadProduct) {
      // The head is decoded a chunk at a time: both ways timed on one chunk's rows.
      if (lm_head_slot_ == nullptr) continue;
      set = df11_products(kHeadProduct, 0, rows);
      // (A chunk ends on a group boundary, or is the whole head.)
      const int64_t elements = head_chunk_rows_ * config_.hidden_size;
      set.p[0].w =
          df11_groups(set.p[0].w, 0, (elements + df11::kGroupElements - 1) / df11::kGroupElements);
      set.p[0].n = head_chunk_rows_;
      decoded = lm_head_slot_;
      combined = logits_;
    } else {
      // The first layer that has compressed matrices of this product; they were given slots
      // back to back, in the product's order.
      int64_t l = 0;
      while (l < weights_.num_layers() &&
             df11_products(static_cast<Product>(product), l, rows).count == 0) {
        ++l;
      }
      set = df11_products(static_cast<Product>(product), l, rows);
      for (int m = 0; m < kMatrices && decoded == nullptr; ++m) {
        if (product_of(m) == product) decoded = layer_slots_[l][m];
      }
      combined = product == kQkvProduct ? qkv_ : product == kGateUpProduct ? gate_up_ : h_;
    }
    if (decoded == nullptr) continue;  // nothing decodes ahead: nothing to compare with
    const MatmulInput x{matmul_in_, std::min(rows, fused_rows_cap()), set.k};
    fused_rows_[product] = x.rows == 0 ? 0
                                       : ops::tune_matmul_df11(device_, x, set.p.data(), set.count,
                                                               decoded, combined, fused_scratch_);
    tuned = true;
  }
  if (!tuned) return;
  static const char* const kNames[kProducts] = {"q|k|v", "o", "gate|up", "down", "lm_head"};
  std::string choice = "DF11 on " + device_.name() + ": multiplied as decoded up to";
  for (int product = 0; product < kProducts; ++product) {
    choice += std::string(product == 0 ? " " : ", ") + kNames[product] + " " +
              std::to_string(fused_rows_[product]);
  }
  log_line(LogLevel::kInfo, choice + " rows; decoded ahead beyond");
}

Executor::Product Executor::product_of(int matrix) {
  switch (matrix) {
    case kQ:
    case kK:
    case kV:
      return kQkvProduct;
    case kO:
      return kOProduct;
    case kGate:
    case kUp:
      return kGateUpProduct;
    default:
      return kDownProduct;
  }
}

Executor::Df11Products Executor::df11_products(Product product, int64_t layer, int64_t rows) const {
  const int64_t Q = config_.q_width();
  const int64_t KV = config_.kv_width();
  const int64_t I = config_.intermediate_size;
  Df11Products set;
  auto add = [&](const Matrix& m, const float* bias, float* out) {
    if (!m.is_df11) return;
    set.p[set.count++] = {m.df11, m.rows, bias, out};
    set.k = m.cols;
  };
  // plan_df11 asks for the products before the buffers exist: no arithmetic on their null
  // pointers (undefined behaviour, which UBSan reports).
  auto at = [](float* buffer, int64_t offset) { return buffer ? buffer + offset : nullptr; };
  if (product == kHeadProduct) {
    add(weights_.lm_head(), nullptr, logits_);
    return set;
  }
  const LayerWeights& w = weights_.layer(layer);
  switch (product) {
    case kQkvProduct:
      add(w.q, w.q_bias, qkv_);
      add(w.k, w.k_bias, at(qkv_, rows * Q));
      add(w.v, w.v_bias, at(qkv_, rows * (Q + KV)));
      break;
    case kOProduct:
      add(w.o, w.o_bias, h_);
      break;
    case kGateUpProduct:
      add(w.gate, nullptr, gate_up_);
      add(w.up, nullptr, at(gate_up_, rows * I));
      break;
    default:
      add(w.down, nullptr, h_);
  }
  return set;
}

std::array<const Matrix*, Executor::kMatrices> Executor::layer_matrices(int64_t index) const {
  const LayerWeights& w = weights_.layer(index);
  return {&w.q, &w.k, &w.v, &w.o, &w.gate, &w.up, &w.down};
}

void Executor::decode_layer(int64_t index) {
  const auto matrices = layer_matrices(index);
  for (int m = 0; m < kMatrices; ++m) {
    if (!matrices[m]->is_df11 || fused(product_of(m), tables_.tokens)) continue;
    if (decode_ahead_) {
      ops::decode_df11_ahead(device_, matrices[m]->df11, layer_slots_[index][m]);
    } else {
      ops::decode_df11(device_, matrices[m]->df11, layer_slots_[index][m]);
    }
  }
}

void Executor::forward() {
  const StepTables& t = tables_;
  const int64_t T = t.tokens;
  const int64_t B = t.batch;
  SLIMRT_CHECK(T > 0 && T <= limits_.max_step_tokens && B > 0 && B <= limits_.max_batch &&
                   t.num_page_indices <= limits_.max_page_indices,
               "executor: step tables exceed the sizes planned at load");
  if (rope_sets_host_ != nullptr) {
    // LongRoPE as transformers applies it to a forward pass: the long factors for every token
    // of a step that takes its sequence past original_max_position_embeddings.
    const int64_t original = config_.rope_scaling.original_max_position_embeddings;
    for (int64_t b = 0; b < B; ++b) {
      const int32_t set = t.context_lens[b] > original ? 1 : 0;
      std::fill(rope_sets_host_ + t.q_indptr[b], rope_sets_host_ + t.q_indptr[b + 1], set);
    }
  }
  // One upload of every table (unused tail entries included: fewer, larger copies win).
  device_.copy_to_device(tables_device_, t.token_ids, tables_bytes_);
  const int64_t longest = *std::max_element(t.context_lens, t.context_lens + B);
  max_context_ = context_bucket(longest);

  if (T == B) {
    // A decode step (one token per sequence): the same launches for every step of this batch
    // size and context bucket.
    const uint64_t key = static_cast<uint64_t>(B) << 32 | static_cast<uint64_t>(max_context_);
    device_.run_graph(this, key, [this] { run_model(); });
  } else {
    run_model();
  }
}

void Executor::run_model() {
  const int64_t T = tables_.tokens;
  const int64_t B = tables_.batch;
  const int64_t H = config_.hidden_size;
  const int64_t L = weights_.num_layers();
  const Matrix& embedding = weights_.embedding();
  if (embedding.is_df11) {
    ops::embed_df11(device_, token_ids_, T, embedding.df11, H, x_, embed_slot_);
  } else {
    ops::embed(device_, token_ids_, T, embedding.dense, H, x_);
  }
  if (decode_ahead_) {
    // Layer l + 1 decodes on the ahead lane while layer l computes; the fork before each decode
    // makes it wait for layer l - 1, the last reader of its half of the scratch.
    device_.fork_ahead();
    decode_layer(0);
  }
  for (int64_t l = 0; l < L; ++l) {
    if (decode_ahead_) {
      device_.join_ahead();
      if (l + 1 < L) {
        device_.fork_ahead();
        decode_layer(l + 1);
      }
    } else {
      decode_layer(l);
    }
    run_layer(l);
  }

  // Only each sequence's last new token needs the head: the last residual update, the norm and
  // lm_head on B rows, not T.
  const float eps = static_cast<float>(config_.rms_norm_eps);
  ops::gather_rows(device_, x_, last_rows_, B, H, last_);
  ops::gather_rows(device_, h_, last_rows_, B, H, last_h_);
  const MatmulInput in = ops::add_rms_norm_input(device_, last_, last_h_, weights_.final_norm(), B,
                                                 H, eps, last_, matmul_in_);
  const Matrix& head = weights_.lm_head();
  if (head.is_df11 && !fused(kHeadProduct, B)) {
    apply_df11_head(head, in);
  } else {
    matmul(kHeadProduct, head, head.dense, in, nullptr, logits_);
  }
}

void Executor::matmul(Product product, const Matrix& m, const uint16_t* dense,
                      const MatmulInput& in, const float* bias, float* out) {
  if (m.is_df11 && fused(product, in.rows)) {
    const ops::Df11Product one{m.df11, m.rows, bias, out};
    ops::matmul_df11(device_, in, &one, 1, fused_scratch_);
  } else {
    ops::matmul_bf16(device_, in, dense, m.rows, bias, out);
  }
}

void Executor::matmul_df11_product(Product product, int64_t layer, const MatmulInput& in) {
  const Df11Products set = df11_products(product, layer, in.rows);
  if (set.count > 0) ops::matmul_df11(device_, in, set.p.data(), set.count, fused_scratch_);
}

void Executor::matmul_unless_fused(Product product, const Matrix& m, const uint16_t* dense,
                                   const MatmulInput& in, const float* bias, float* out) {
  if (!(m.is_df11 && fused(product, in.rows))) matmul(product, m, dense, in, bias, out);
}

void Executor::apply_df11_head(const Matrix& head, const MatmulInput& in) {
  const int64_t H = config_.hidden_size;
  const int64_t V = config_.vocab_size;
  const int64_t batch = in.rows;
  for (int64_t start = 0; start < V; start += head_chunk_rows_) {
    const int64_t rows = std::min(head_chunk_rows_, V - start);
    const int64_t first_group = start * H / df11::kGroupElements;
    const int64_t end_group =
        ((start + rows) * H + df11::kGroupElements - 1) / df11::kGroupElements;
    ops::decode_df11(device_, df11_groups(head.df11, first_group, end_group), lm_head_slot_);
    if (batch == 1) {
      ops::matmul_bf16(device_, in, lm_head_slot_, rows, nullptr, logits_ + start);
    } else {
      ops::matmul_bf16(device_, in, lm_head_slot_, rows, nullptr, head_chunk_out_);
      ops::copy_block(device_, head_chunk_out_, rows, logits_ + start, V, batch, rows);
    }
  }
}

void Executor::run_layer(int64_t index) {
  const LayerWeights& w = weights_.layer(index);
  const auto& slot = layer_slots_[index];
  // Compressed matrices were decoded into their slots (decode_layer), unless their product
  // multiplies as it decodes at this step's size.
  auto weight = [&](const Matrix& m, int which) { return m.is_df11 ? slot[which] : m.dense; };
  const uint16_t* wq = weight(w.q, kQ);
  const uint16_t* wk = weight(w.k, kK);
  const uint16_t* wv = weight(w.v, kV);
  const uint16_t* wo = weight(w.o, kO);
  const uint16_t* wg = weight(w.gate, kGate);
  const uint16_t* wu = weight(w.up, kUp);
  const uint16_t* wd = weight(w.down, kDown);

  const int64_t T = tables_.tokens;
  const int64_t H = config_.hidden_size;
  const int64_t Q = config_.q_width();
  const int64_t KV = config_.kv_width();
  const int64_t I = config_.intermediate_size;
  const float eps = static_cast<float>(config_.rms_norm_eps);

  // The previous layer's MLP output (in h) joins the residual stream first.
  const MatmulInput normed = ops::add_rms_norm_input(device_, x_, index == 0 ? nullptr : h_,
                                                     w.input_norm, T, H, eps, h_, matmul_in_);
  // q, k and v (and their biases) lie back to back in their arena (or DF11 scratch) whenever
  // their sizes keep the arena's alignment: then one matmul makes all three.
  // A product that multiplies as it decodes at this step's size runs its compressed matrices in
  // one launch (their slots, if any, were not decoded); the other matrices go one at a time.
  const bool fuse_qkv = fused(kQkvProduct, T);
  QkvRows rows;
  if (config_.fused_projections) {
    matmul(kQkvProduct, w.q, wq, normed, nullptr, qkv_);  // q holds q|k|v
    rows = {qkv_, qkv_ + Q, qkv_ + Q + KV, Q + 2 * KV, Q + 2 * KV};
  } else if (!fuse_qkv && wq != nullptr && wk == wq + Q * H && wv == wk + KV * H &&
             (w.q_bias == nullptr || (w.k_bias == w.q_bias + Q && w.v_bias == w.k_bias + KV))) {
    ops::matmul_bf16(device_, normed, wq, Q + 2 * KV, w.q_bias, qkv_);
    rows = {qkv_, qkv_ + Q, qkv_ + Q + KV, Q + 2 * KV, Q + 2 * KV};
  } else {
    float* v = qkv_ + T * (Q + KV);
    rows = {qkv_, qkv_ + T * Q, v, Q, KV};
    if (fuse_qkv) matmul_df11_product(kQkvProduct, index, normed);
    matmul_unless_fused(kQkvProduct, w.q, wq, normed, w.q_bias, rows.q);
    matmul_unless_fused(kQkvProduct, w.k, wk, normed, w.k_bias, rows.k);
    matmul_unless_fused(kQkvProduct, w.v, wv, normed, w.v_bias, v);
  }
  if (config_.qk_norm) {
    ops::head_rms_norm(device_, rows.q, T, rows.q_stride, config_.num_heads, config_.head_dim,
                       w.q_norm, eps);
    ops::head_rms_norm(device_, rows.k, T, rows.kv_stride, config_.num_kv_heads, config_.head_dim,
                       w.k_norm, eps);
  }
  const PagedKv kv = kv_pool_->layer(index);
  ops::rope_and_cache(device_, rows, positions_, T, config_.num_heads, inv_freq_, kv, slots_, q_,
                      rope_sets_);
  PagedBatch batch;
  batch.q_indptr = q_indptr_;
  batch.page_indptr = page_indptr_;
  batch.page_indices = page_indices_;
  batch.context_lens = context_lens_;
  batch.first_pages = first_pages_;
  batch.window = config_.layer_window(index);
  batch.num_seqs = tables_.batch;
  batch.num_tokens = T;
  batch.max_query_tokens = T == tables_.batch ? 1 : T;  // T == batch: one token each
  batch.max_context = max_context_;
  // LongRoPE's attention_factor multiplies cos and sin, so q and k: the scores by its square.
  const float rope_gain =
      static_cast<float>(config_.rope_scaling.longrope ? config_.rope_scaling.attention_factor *
                                                             config_.rope_scaling.attention_factor
                                                       : 1.0);
  const float scale = rope_gain / std::sqrt(static_cast<float>(config_.head_dim));
  const MatmulInput attended =
      ops::paged_attention(device_, q_, kv, batch, config_.num_heads, scale, attn_, attention_plan_,
                           attention_scratch_, matmul_in_);
  matmul(kOProduct, w.o, wo, attended, w.o_bias, h_);

  const MatmulInput normed_mlp =
      ops::add_rms_norm_input(device_, x_, h_, w.post_norm, T, H, eps, h_, matmul_in_);
  if (config_.moe_layer(index)) {
    // Its output joins the residual stream in the next layer's input norm (or the head's).
    ops::moe(device_, normed_mlp, moe_layers_[index], h_, moe_scratch_);
    return;
  }
  MatmulInput activated;
  const bool fuse_gate_up = fused(kGateUpProduct, T);
  if (config_.fused_projections) {
    matmul(kGateUpProduct, w.gate, wg, normed_mlp, nullptr, gate_up_);  // gate holds gate|up
    activated = ops::silu_mul_input(device_, gate_up_, gate_up_ + I, 2 * I, T, I, act_, matmul_in_);
  } else if (!fuse_gate_up && wg != nullptr && wu == wg + I * H) {  // back to back, as q, k and v
    ops::matmul_bf16(device_, normed_mlp, wg, 2 * I, nullptr, gate_up_);
    activated = ops::silu_mul_input(device_, gate_up_, gate_up_ + I, 2 * I, T, I, act_, matmul_in_);
  } else {
    if (fuse_gate_up) matmul_df11_product(kGateUpProduct, index, normed_mlp);
    matmul_unless_fused(kGateUpProduct, w.gate, wg, normed_mlp, nullptr, gate_up_);
    matmul_unless_fused(kGateUpProduct, w.up, wu, normed_mlp, nullptr, gate_up_ + T * I);
    activated = ops::silu_mul_input(device_, gate_up_, gate_up_ + T * I, I, T, I, act_, matmul_in_);
  }
  // Its output joins the residual stream in the next layer's input norm (or the head's).
  matmul(kDownProduct, w.down, wd, activated, nullptr, h_);
}

void Executor::read_logits(float* host_out) {
  device_.copy_to_host(host_out, logits_,
                       tables_.batch * config_.vocab_size * static_cast<int64_t>(sizeof(float)));
}

void Executor::sample(int32_t* host_out, const StepLogprobs* host_logprobs) {
  const int64_t B = tables_.batch;
  SampleLogprobs logprobs = logprobs_;
  if (host_logprobs != nullptr) logprobs.top_n = host_logprobs->top_n;
  ops::sample(device_, logits_, B, config_.vocab_size, sample_params_device_, sampled_,
              sample_scratch_, host_logprobs != nullptr ? &logprobs : nullptr);
  device_.copy_to_host(host_out, sampled_, B * static_cast<int64_t>(sizeof(int32_t)));
  if (host_logprobs == nullptr) return;
  // [B][top_n] on both sides: the device rows are packed at this step's top_n.
  const int64_t top = B * logprobs.top_n;
  device_.copy_to_host(host_logprobs->sampled, logprobs.sampled, B * int64_t{sizeof(float)});
  if (top == 0) return;
  device_.copy_to_host(host_logprobs->top_ids, logprobs.top_ids, top * int64_t{sizeof(int32_t)});
  device_.copy_to_host(host_logprobs->top_logprobs, logprobs.top_logprobs,
                       top * int64_t{sizeof(float)});
}

}  // namespace slimrt
