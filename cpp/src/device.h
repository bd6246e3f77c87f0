// Device: what the executor needs from a backend: memory for the arenas, copies across the
// host boundary, and the kernels of one forward step. Two backends implement it (CPU and CUDA);
// nothing above it knows which one runs.
//
//   std::unique_ptr<Device> device = make_device("cpu", /*num_threads=*/0);
//   void* memory = device->allocate(bytes);          // load time only
//   MatmulInput in = device->add_rms_norm_input(x, nullptr, norm, rows, k, eps, h, scratch);
//   device->matmul_bf16(in, w, n, bias, out);
//
// Pointers passed to kernels are device memory (the arenas), except where a comment says host.
// Kernels are enqueued in call order; copy_to_host returns once the data is there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kernel_args.h"
#include "slimrt/df11.h"

namespace slimrt {

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;

  // Memory. allocate() returns 64-byte aligned memory or throws; called at load only.
  virtual void* allocate(int64_t bytes) = 0;
  virtual void deallocate(void* memory) = 0;
  virtual int64_t available_memory() const = 0;  // bytes an engine could still reserve
  virtual void copy_to_device(void* dst, const void* host_src, int64_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, int64_t bytes) = 0;

  // Kernels: see cpu/kernels.h for the exact semantics, which every backend shares.
  virtual void embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden,
                     float* out) = 0;
  // embed() from a DF11 table, decoding only the groups that hold the requested rows into
  // `scratch` (embed_df11_scratch_elements(hidden) uint16 elements).
  virtual void embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table, int64_t hidden,
                          float* out, uint16_t* scratch) = 0;
  virtual int64_t embed_df11_scratch_elements(int64_t hidden) const = 0;
  // Builds what decoding `view` (in this device's memory) needs, once, at load: the steps that
  // decode it then allocate nothing. Views of part of a tensor (df11_groups) share its table.
  virtual void prepare_df11(const Df11View& view) = 0;
  // Decodes a whole DF11 tensor (validated at load) into BF16 bits, bit-exact.
  virtual void decode_df11(const Df11View& view, uint16_t* out) = 0;
  // Decoding ahead of use, on a second lane of work (CUDA: a second stream) that overlaps the
  // kernels enqueued meanwhile: decode_df11_ahead() runs after everything enqueued before the
  // last fork_ahead(); join_ahead() makes everything enqueued later wait for the ahead lane's
  // work so far. Every fork needs a join before the results are read or a run_graph body ends.
  // A backend without a second lane (overlaps_decode() false) decodes at once and ignores both.
  virtual bool overlaps_decode() const { return false; }
  virtual void fork_ahead() {}
  virtual void decode_df11_ahead(const Df11View& view, uint16_t* out) { decode_df11(view, out); }
  virtual void join_ahead() {}
  // dst[i][:] = src[rows[i]][:].
  virtual void gather_rows(const float* src, const int32_t* rows, int64_t count, int64_t width,
                           float* dst) = 0;
  // dst[r][0, cols) = src[r][0, cols) for r < rows, rows `*_stride` floats apart.
  virtual void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                          int64_t rows, int64_t cols) = 0;
  // Matmul inputs. A matmul_bf16 reads its left operand x[rows][k] in the form its backend's GEMM
  // takes: FP32 on the CPU (the FP32 `out` buffer the producer is given), BF16 on CUDA, whose
  // tensor cores read BF16 (rounded to nearest even into `scratch`, matmul_input_bytes(rows, k)
  // bytes; `out` is then left alone). One input may serve several matmuls (q, k and v). The
  // producers fuse the step before each matmul:
  //
  // x += residual (unless residual is null), then RMSNorm(x) * weight: a layer's input norm
  // after the previous block's residual update. out may be x.
  virtual MatmulInput add_rms_norm_input(float* x, const float* residual, const float* weight,
                                         int64_t rows, int64_t cols, float eps, float* out,
                                         void* scratch) = 0;
  // silu(gate) * up, elementwise over [tokens][width]; gate and up rows `row_stride` apart
  // (a fused gate|up matmul output: 2 * width).
  virtual MatmulInput silu_mul_input(const float* gate, const float* up, int64_t row_stride,
                                     int64_t tokens, int64_t width, float* out, void* scratch) = 0;
  virtual int64_t matmul_input_bytes(int64_t rows, int64_t k) const = 0;
  // out[r][j] = sum_k x[r][k] * w[j][k] (+ bias[j]), w [n][k] BF16, FP32 accumulation and out.
  virtual void matmul_bf16(const MatmulInput& x, const uint16_t* w, int64_t n, const float* bias,
                           float* out) = 0;

  // RoPE on q ([heads][head_dim] per token) into q_out [tokens][heads][head_dim], and on k
  // ([kv.kv_heads][head_dim] per token), whose rotated rows go to the cache at `slots` with v's
  // (cpu::rope, then cpu::kv_write). The rows of `in` may be rotated in place or left as they are.
  virtual void rope_and_cache(const QkvRows& in, const int32_t* positions, int64_t tokens,
                              int64_t heads, const float* inv_freq, const PagedKv& kv,
                              const int32_t* slots, float* q_out) = 0;
  // Attention of q over the cache (cpu::paged_attention), as the o_proj matmul's input (FP32
  // into `out`, or on CUDA BF16 in `scratch` or `input_scratch`). scratch:
  // attention_scratch_bytes() bytes for batches within the bounds given there; input_scratch:
  // matmul_input_bytes(tokens, heads * head_dim).
  virtual MatmulInput paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch,
                                      int64_t heads, float scale, float* out, void* scratch,
                                      void* input_scratch) = 0;
  virtual int64_t attention_scratch_bytes(int64_t max_seqs, int64_t heads, const PagedKv& kv,
                                          int64_t max_context) const = 0;
  // One id per row of logits, by the rules of sample_rules.h (cpu::sample): every backend draws
  // the same ids from the same logits. params: device memory, one per row. logits may be
  // overwritten. scratch: sample_scratch_bytes(rows, vocab) bytes.
  virtual void sample(float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
                      int32_t* out, void* scratch) = 0;
  virtual int64_t sample_scratch_bytes(int64_t rows, int64_t vocab) const = 0;

  // Runs `body`: kernel calls of this device that read no host memory and wait for nothing, whose
  // launches depend only on `key` (and on the contents of device memory). A backend may record
  // the body once a key repeats and replay the recording instead (CUDA graphs): the same
  // results, without the per-launch cost.
  virtual void run_graph(uint64_t key, const std::function<void()>& body) {
    (void)key;
    body();
  }
};

// "cpu", or an error naming what is supported ("cuda" comes with the CUDA backend).
std::unique_ptr<Device> make_device(const std::string& name, int num_threads);

// Throws make_device's error for a name this build has no device for (whether a GPU is
// usable is make_device's to find out): options are checked before anything is read.
void check_device_name(const std::string& name);

}  // namespace slimrt
