// Device: what the executor needs from a backend: memory for the arenas, copies across the
// host boundary, and the kernels of one forward step. Two backends implement it (CPU now, CUDA
// later); nothing above it knows which one runs.
//
//   std::unique_ptr<Device> device = make_device("cpu", /*num_threads=*/0);
//   void* memory = device->allocate(bytes);          // load time only
//   device->matmul_bf16(x, rows, k, w, n, bias, out);
//
// Pointers passed to kernels are device memory (the arenas), except where a comment says host.
// Kernels are enqueued in call order; copy_to_host returns once the data is there.
#pragma once

#include <cstdint>
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
  // Decodes a whole DF11 tensor (validated at load) into BF16 bits, bit-exact.
  virtual void decode_df11(const Df11View& view, uint16_t* out) = 0;
  // dst[i][:] = src[rows[i]][:], rows in host memory.
  virtual void gather_rows(const float* src, const int32_t* host_rows, int64_t count, int64_t width,
                           float* dst) = 0;
  // dst[r][0, cols) = src[r][0, cols) for r < rows, rows `*_stride` floats apart.
  virtual void copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                          int64_t rows, int64_t cols) = 0;
  virtual void rms_norm(const float* x, const float* weight, int64_t rows, int64_t cols, float eps,
                        float* out) = 0;
  virtual void matmul_bf16(const float* x, int64_t rows, int64_t k, const uint16_t* w, int64_t n,
                           const float* bias, float* out) = 0;
  virtual void rope(float* x, const int32_t* positions, int64_t tokens, int64_t heads,
                    int64_t head_dim, const float* inv_freq) = 0;
  virtual void silu_mul(const float* gate, const float* up, int64_t tokens, int64_t width,
                        float* out) = 0;
  virtual void add_inplace(float* x, const float* y, int64_t n) = 0;
  virtual void kv_write(const PagedKv& kv, const float* k, const float* v, const int32_t* slots,
                        int64_t tokens) = 0;
  virtual void paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch,
                               int64_t heads, float scale, float* out) = 0;
  // params: host memory, one per row. scratch: sample_scratch_bytes(rows, vocab) bytes.
  virtual void sample(const float* logits, int64_t rows, int64_t vocab,
                      const SampleParams* host_params, int32_t* out, void* scratch) = 0;
  virtual int64_t sample_scratch_bytes(int64_t rows, int64_t vocab) const = 0;
};

// "cpu", or an error naming what is supported ("cuda" comes with the CUDA backend).
std::unique_ptr<Device> make_device(const std::string& name, int num_threads);

}  // namespace slimrt
