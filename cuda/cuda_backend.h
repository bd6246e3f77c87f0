// The CUDA backend as plain C++ sees it (no CUDA headers, so cpp/src includes it in every
// build): make_cuda_device() for make_device(), cuda_device() and the CUDA kernel of every op
// for the ops (ops/, through backend.h). Each kernel is defined in the cuda/ file named after its
// op (cuda/embed.cu, ...) and has the semantics of its op's header (ops/embed.h, ...); pointers
// are device memory; work is enqueued on the device's stream in call order. Activations are FP32
// between kernels; matmuls are cuBLAS BF16 GEMMs on activations rounded to BF16 by the producers
// of matmul inputs, as in every BF16 inference engine, so results differ from the CPU backend's
// FP32 activations by BF16 rounding (~1e-2 relative), not by more.
//
//   std::unique_ptr<Device> device = make_cuda_device();   // throws without a usable GPU
//   cuda::embed(cuda_device(*device), ids, tokens, table, hidden, out);
//
// In a build without CUDA none of these is defined: device.cpp never asks for a CUDA device and
// the ops reach the kernels through SLIMRT_CUDA only (backend.h).
#pragma once

#include <cstdint>
#include <memory>

#include "device.h"
#include "kernel_args.h"
#include "ops/matmul_df11.h"
#include "slimrt/df11.h"

namespace slimrt {

class CudaDevice;  // cuda/cuda_device.h

// Throws slimrt::Error when no CUDA device is usable.
std::unique_ptr<Device> make_cuda_device();

// The CudaDevice that `device` is (device.backend() == Backend::kCuda).
CudaDevice& cuda_device(Device& device);

namespace cuda {

void embed(CudaDevice& device, const int32_t* ids, int64_t tokens, const uint16_t* table,
           int64_t hidden, float* out);
// One kernel decodes just the groups each row touches, straight to FP32: no scratch.
void embed_df11(CudaDevice& device, const int32_t* ids, int64_t tokens, const Df11View& table,
                int64_t hidden, float* out);

// On the device's stream, and on its second stream (the ahead lane).
void decode_df11(CudaDevice& device, const Df11View& view, uint16_t* out);
void decode_df11_ahead(CudaDevice& device, const Df11View& view, uint16_t* out);

// ops::matmul_df11 (matmul_df11.cu): input rows up to matmul_df11_max_rows(k, count), which is 0
// unless k is a multiple of 256; scratch for the partial sums of rows that span groups.
int64_t matmul_df11_max_rows(int64_t k, int count);
int64_t matmul_df11_scratch_bytes(const ops::Df11Product* products, int count, int64_t k,
                                  int64_t rows);
void matmul_df11(CudaDevice& device, const MatmulInput& x, const ops::Df11Product* products,
                 int count, void* scratch);

void gather_rows(CudaDevice& device, const float* src, const int32_t* rows, int64_t count,
                 int64_t width, float* dst);
void copy_block(CudaDevice& device, const float* src, int64_t src_stride, float* dst,
                int64_t dst_stride, int64_t rows, int64_t cols);

// The matmul-input producers write BF16 into `scratch` and return it.
MatmulInput add_rms_norm_input(CudaDevice& device, float* x, const float* residual,
                               const float* weight, int64_t rows, int64_t cols, float eps,
                               void* scratch);
MatmulInput silu_mul_input(CudaDevice& device, const float* gate, const float* up,
                           int64_t row_stride, int64_t tokens, int64_t width, void* scratch);
// A cuBLAS BF16 GEMM (tensor cores, FP32 accumulation and output), then the bias.
void matmul_bf16(CudaDevice& device, const MatmulInput& x, const uint16_t* w, int64_t n,
                 const float* bias, float* out);

void head_rms_norm(CudaDevice& device, float* x, int64_t tokens, int64_t stride, int64_t heads,
                   int64_t head_dim, const float* weight, float eps);

// ops/moe.h, dense experts at one stride (expert e's gate at gate + e * expert_stride, ...).
int64_t moe_scratch_bytes(int64_t tokens, int64_t experts, int64_t top_k, int64_t hidden,
                          int64_t inter);
void moe(CudaDevice& device, const MatmulInput& x, const uint16_t* router, const uint16_t* gate,
         const uint16_t* up, const uint16_t* down, int64_t expert_stride, int64_t experts,
         int64_t top_k, int64_t hidden, int64_t inter, bool renormalize, float* out, void* scratch);
void rope_and_cache(CudaDevice& device, const QkvRows& in, const int32_t* positions, int64_t tokens,
                    int64_t heads, const float* inv_freq, const PagedKv& kv, const int32_t* slots,
                    float* q_out, const int32_t* freq_sets);

// ops::kv_compress with the page ids in device memory (kv_compress.cu). Allocates nothing and
// synchronises nothing.
void kv_compress(CudaDevice& device, const PagedKv& kv, const int32_t* src_pages,
                 const int32_t* dst_pages, int64_t count);

// Chooses between the split-K decode kernel (paged_decode_attention.cu), the tensor-core prefill
// kernel (paged_prefill_attention.cu) and a simple kernel for the rest.
MatmulInput paged_attention(CudaDevice& device, const float* q, const PagedKv& kv,
                            const PagedBatch& batch, int64_t heads, float scale, float* out,
                            const AttentionScratchPlan& plan, void* scratch, void* input_scratch);
AttentionScratchPlan plan_attention_scratch(int64_t max_seqs, int64_t heads, const PagedKv& kv,
                                            int64_t max_context);

// ops::crc32: the CRC-32 of `bytes` bytes of device memory, scratch: crc32_scratch_bytes().
int64_t crc32_scratch_bytes(int64_t bytes);
uint32_t crc32(CudaDevice& device, const void* data, int64_t bytes, void* scratch);

// Draws the ids cpu::sample draws from the same logits, greedy rows included (the largest
// logit, ties to the lowest id, NaNs skipped, id 0 when no logit is a number), and the
// log-probabilities cpu::sample writes (within rounding: the normaliser's sum runs in another
// order; the same ids). weights: [rows][vocab] floats, where rows that are not greedy hold their
// weights afterwards (the logits are left as they are). Allocates nothing, synchronises nothing.
void sample(CudaDevice& device, const float* logits, int64_t rows, int64_t vocab,
            const SampleParams* params, int32_t* out, float* weights,
            const SampleLogprobs* logprobs);

}  // namespace cuda
}  // namespace slimrt
