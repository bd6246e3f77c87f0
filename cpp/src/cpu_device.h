// CpuDevice: the Device backend that runs on the host, forwarding every kernel to slimrt::cpu
// with one ThreadPool it owns. Device memory is host memory, so copies are memcpy.
//
//   CpuDevice device(/*num_threads=*/0);   // 0 = all hardware threads
#pragma once

#include <map>

#include "device.h"
#include "thread_pool.h"

namespace slimrt {

class CpuDevice final : public Device {
 public:
  explicit CpuDevice(int num_threads);

  std::string name() const override { return "cpu"; }
  void* allocate(int64_t bytes) override;
  void deallocate(void* memory) override;
  int64_t available_memory() const override;
  void copy_to_device(void* dst, const void* host_src, int64_t bytes) override;
  void copy_to_host(void* host_dst, const void* src, int64_t bytes) override;

  void embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden,
             float* out) override;
  void embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table, int64_t hidden,
                  float* out, uint16_t* scratch) override;
  int64_t embed_df11_scratch_elements(int64_t hidden) const override;
  void prepare_df11(const Df11View& view) override;
  void decode_df11(const Df11View& view, uint16_t* out) override;
  void gather_rows(const float* src, const int32_t* rows, int64_t count, int64_t width,
                   float* dst) override;
  void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                  int64_t rows, int64_t cols) override;
  MatmulInput add_rms_norm_input(float* x, const float* residual, const float* weight, int64_t rows,
                                 int64_t cols, float eps, float* out, void* scratch) override;
  MatmulInput silu_mul_input(const float* gate, const float* up, int64_t row_stride, int64_t tokens,
                             int64_t width, float* out, void* scratch) override;
  int64_t matmul_input_bytes(int64_t, int64_t) const override { return 0; }
  void matmul_bf16(const MatmulInput& x, const uint16_t* w, int64_t n, const float* bias,
                   float* out) override;
  void rope_and_cache(const QkvRows& in, const int32_t* positions, int64_t tokens, int64_t heads,
                      const float* inv_freq, const PagedKv& kv, const int32_t* slots,
                      float* q_out) override;
  MatmulInput paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch,
                              int64_t heads, float scale, float* out, void* scratch,
                              void* input_scratch) override;
  int64_t attention_scratch_bytes(int64_t, int64_t, const PagedKv&, int64_t) const override {
    return 0;
  }
  void sample(float* logits, int64_t rows, int64_t vocab, const SampleParams* params, int32_t* out,
              void* scratch) override;
  int64_t sample_scratch_bytes(int64_t rows, int64_t vocab) const override;

 private:
  // The decoding table of the DF11 tensor whose lengths array is `lengths` (built by
  // prepare_df11, or here on first use if a caller skipped that).
  const Df11Table& table_for(const uint8_t* lengths);

  ThreadPool pool_;
  // Keyed by lengths pointer, as CUDA's; dropped by deallocate(), since freed memory may come
  // back holding another tensor.
  std::map<const uint8_t*, Df11Table> tables_;
};

}  // namespace slimrt
