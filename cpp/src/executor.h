// Executor: the Llama-family forward pass of one step over a ragged batch of sequences,
// through a Device. It owns three arenas, all sized at load for max_step_tokens and max_batch:
// activations (device), DF11 scratch (device) and staging (host: the step's tables before they
// are copied to the device). Nothing is allocated per step.
//
//   Executor executor(config, weights, kv_pool, device, limits);
//   fill_step_tables(..., executor.tables());   // host
//   executor.forward();                          // logits of each sequence's last new token
//   executor.read_logits(out);                   // or executor.sample(params, out)
//
// Buffer plan (T = max_step_tokens, B = max_batch): the residual stream x and a second [T][H]
// buffer h persist through a step (h carries each block's output until the next norm adds it to
// x, fused with that norm); one "phase" region is shared by the attention block (q|k|v, rotated
// q, attention output), the MLP block (gate|up, silu product) and the head (last-token rows,
// logits, sampling scratch), which never live at the same time. Matrices that lie back to back
// (q, k, v; gate, up) run as one matmul. The matmul-input scratch holds each matmul's
// left operand in the backend's form (BF16 on CUDA: ops/matmul_bf16.h).
//
// DF11: compressed matrices multiply as they decode (ops::matmul_df11) wherever the device does
// that and it pays: always on the CPU; on CUDA up to the input rows tuned at load for each of
// the five products (q|k|v, o, gate|up, down, lm_head; ops::tune_matmul_df11), so for decode
// steps of a few sequences. Else a layer's compressed matrices are decoded into scratch just
// before the layer runs; the scratch holds the largest layer's compressed matrices. On a device
// that overlaps decoding (CUDA), layer l + 1 is decoded on the second lane while layer l
// computes, into the other half of a scratch twice that size. A compressed lm_head is then
// decoded and applied a chunk of rows at a time in the same space (a whole one would need vocab x
// hidden BF16 of scratch, more than compression saves). A compressed embedding decodes only the
// groups holding the step's rows.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "arena.h"
#include "block_table.h"
#include "device.h"
#include "kv_pool.h"
#include "ops/matmul_df11.h"
#include "ops/moe.h"
#include "slimrt/model.h"
#include "weights.h"

namespace slimrt {

class Executor {
 public:
  struct Limits {
    int64_t max_batch = 0;
    int64_t max_step_tokens = 0;
    int64_t max_page_indices = 0;    // page entries of a step over all its sequences
    int64_t max_context = 0;         // the longest sequence, in tokens
    PagedKv kv;                      // the KV pool's layout (no pages)
    int64_t max_compress_pages = 0;  // the most pages a step packs (ops::kv_compress)
  };
  struct Sizes {
    int64_t activations = 0;  // activations + staging
    int64_t df11_scratch = 0;
  };

  static Sizes measure(const ModelConfig& config, const Weights& weights, Device& device,
                       const Limits& limits);

  Executor(const ModelConfig& config, const Weights& weights, const KvPool& kv_pool, Device& device,
           const Limits& limits);
  ~Executor();  // drops the device's recordings of this executor's steps
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // The five products a compressed model multiplies, and for each the most input rows it
  // multiplies as it decodes (0: never; the CPU: any).
  enum Product { kQkvProduct, kOProduct, kGateUpProduct, kDownProduct, kHeadProduct, kProducts };
  const std::array<int64_t, kProducts>& df11_fused_rows() const { return fused_rows_; }

  StepTables& tables() { return tables_; }
  // Host, [max_batch]: written before forward(), which uploads them with the step tables.
  SampleParams* sample_params() { return sample_params_; }
  // Device, [2 * max_compress_pages]: where the engine uploads the ids of the pages a step
  // packs (sources, then destinations), once for every layer's ops::kv_compress.
  int32_t* compress_ids() { return compress_ids_; }

  void forward();
  void read_logits(float* host_out);  // [batch][vocab]
  // [batch], with sample_params(); host_logprobs (host memory), when given, also receives theirs.
  void sample(int32_t* host_out, const StepLogprobs* host_logprobs);
  Sizes sizes() const;

 private:
  // Matrices of a layer in the order they run; each is dense in the weights arena or a slot of
  // the DF11 scratch.
  enum { kQ, kK, kV, kO, kGate, kUp, kDown, kMatrices };

  Executor(const ModelConfig& config, const Weights& weights, Device& device,
           const Limits& limits);  // measures only
  void lay_out();
  void run_layer(int64_t index);
  void apply_df11_head(const Matrix& head, const MatmulInput& in);
  // out = in · mᵀ (+ bias) for a product of one matrix: multiplied as it decodes if `product`
  // is fused at in.rows, else from its dense bits (the arena's, or the decoded slot's).
  void matmul(Product product, const Matrix& m, const uint16_t* dense, const MatmulInput& in,
              const float* bias, float* out);
  // A fused product's compressed matrices of `layer` in one launch (their run_layer outputs),
  // and the matmul of each matrix that launch leaves out.
  void matmul_df11_product(Product product, int64_t layer, const MatmulInput& in);
  void matmul_unless_fused(Product product, const Matrix& m, const uint16_t* dense,
                           const MatmulInput& in, const float* bias, float* out);
  // `product` of layer `layer` (the head: layer ignored) for `rows` input rows: its DF11
  // matrices with their biases and the outputs run_layer gives them; count 0 unless all its
  // matrices are compressed.
  struct Df11Products {
    std::array<ops::Df11Product, ops::kMaxDf11Products> p;
    int count = 0;
    int64_t k = 0;
  };
  Df11Products df11_products(Product product, int64_t layer, int64_t rows) const;
  bool fused(Product product, int64_t rows) const { return rows <= fused_rows_[product]; }
  void plan_df11(int64_t T);  // fused_rows_ from the device's limits, and the scratch
  void tune_df11();           // fused_rows_ measured, once the buffers are real
  std::array<const Matrix*, kMatrices> layer_matrices(int64_t index) const;
  static Product product_of(int matrix);
  void decode_layer(int64_t index);  // its compressed matrices into their slots, unless fused
  void run_model();                  // embedding to logits, on tables already on the device

  const ModelConfig& config_;
  const Weights& weights_;
  const KvPool* kv_pool_ = nullptr;
  Device& device_;
  Limits limits_;
  std::vector<float> inv_freq_host_;

  Arena activations_{"activations"};
  Arena staging_{"staging"};
  Arena scratch_{"DF11 scratch"};

  // Staging (host).
  StepTables tables_;
  SampleParams* sample_params_ = nullptr;
  // Activations (device). The step tables' device copy mirrors the staging layout, so that one
  // copy uploads them all.
  void* tables_device_ = nullptr;
  int64_t tables_bytes_ = 0;
  int32_t* token_ids_ = nullptr;
  int32_t* positions_ = nullptr;
  int32_t* slots_ = nullptr;
  int32_t* q_indptr_ = nullptr;
  int32_t* page_indptr_ = nullptr;
  int32_t* page_indices_ = nullptr;
  int32_t* context_lens_ = nullptr;
  int32_t* first_pages_ = nullptr;
  int32_t* last_rows_ = nullptr;
  // LongRoPE only (else null): per token, its frequency set (ops::rope_and_cache), filled by
  // forward() on the host and uploaded with the tables.
  int32_t* rope_sets_host_ = nullptr;
  int32_t* rope_sets_ = nullptr;
  SampleParams* sample_params_device_ = nullptr;
  int32_t* compress_ids_ = nullptr;
  int64_t max_context_ = 0;  // of the current step, rounded up (see context_bucket)
  float* inv_freq_ = nullptr;
  void* matmul_in_ = nullptr;  // ops::matmul_input_bytes() of scratch
  AttentionScratchPlan attention_plan_;
  void* attention_scratch_ = nullptr;  // ops::paged_attention scratch (attention_plan_.bytes)
  float* x_ = nullptr;
  float* h_ = nullptr;
  float* qkv_ = nullptr;  // [T][q | k | v] of one matmul, or q, k and v as three blocks
  float *q_ = nullptr, *attn_ = nullptr;  // rotated q; attention output
  float* gate_up_ = nullptr;  // [T][gate | up] of one matmul, or gate and up as two blocks
  float* act_ = nullptr;
  std::vector<ops::MoeLayer> moe_layers_;  // per layer; experts == 0 in a dense one
  void* moe_scratch_ = nullptr;            // ops::moe scratch, in the MLP phase
  float* last_ = nullptr;
  float* last_h_ = nullptr;  // the last layer's output rows of the sequences' last tokens
  float* logits_ = nullptr;
  void* sample_scratch_ = nullptr;
  int32_t* sampled_ = nullptr;
  SampleLogprobs logprobs_;  // room for kMaxTopLogprobs per row; top_n set per step
  // DF11 scratch (device): per layer, where each compressed matrix is decoded (null if dense).
  std::vector<std::array<uint16_t*, kMatrices>> layer_slots_;
  bool decode_ahead_ = false;  // the device overlaps decoding and some matrix needs a slot
  std::array<int64_t, kProducts> fused_rows_{};
  void* fused_scratch_ = nullptr;     // ops::matmul_df11 scratch
  uint16_t* lm_head_slot_ = nullptr;  // head_chunk_rows_ rows of a compressed lm_head
  int64_t head_chunk_rows_ = 0;
  float* head_chunk_out_ = nullptr;  // [max_batch][head_chunk_rows_] logits of one chunk
  uint16_t* embed_slot_ = nullptr;
};

}  // namespace slimrt
