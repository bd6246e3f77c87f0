#include "cpu_device.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "arena.h"
#include "check.h"
#include "cpu/bf16.h"
#include "cpu/kernels.h"
#include "df11_groups.h"

namespace slimrt {
namespace {

// Groups one embedding row can touch: its own span plus one when it straddles a boundary.
int64_t groups_per_row(int64_t hidden) {
  return (hidden + df11::kGroupElements - 1) / df11::kGroupElements + 1;
}

}  // namespace

CpuDevice::CpuDevice(int num_threads) : pool_(num_threads) {}

void* CpuDevice::allocate(int64_t bytes) {
  const int64_t rounded = (bytes + Arena::kAlignment - 1) / Arena::kAlignment * Arena::kAlignment;
  void* memory = std::aligned_alloc(Arena::kAlignment, static_cast<size_t>(rounded));
  SLIMRT_CHECK(memory != nullptr, "could not allocate " << bytes << " bytes of host memory");
  return memory;
}

void CpuDevice::deallocate(void* memory) {
  tables_.clear();
  std::free(memory);
}

const Df11Table& CpuDevice::table_for(const uint8_t* lengths) {
  auto found = tables_.find(lengths);
  if (found == tables_.end()) found = tables_.emplace(lengths, df11_build_table(lengths)).first;
  return found->second;
}

void CpuDevice::prepare_df11(const Df11View& view) { table_for(view.lengths); }

int64_t CpuDevice::available_memory() const { return available_host_memory(); }

void CpuDevice::copy_to_device(void* dst, const void* host_src, int64_t bytes) {
  // Loading copies gigabytes of weights: spread large copies over the pool.
  constexpr int64_t kChunk = int64_t{16} << 20;
  if (bytes <= 4 * kChunk) {
    if (bytes > 0) std::memcpy(dst, host_src, static_cast<size_t>(bytes));
    return;
  }
  pool_.run((bytes + kChunk - 1) / kChunk, [&](int64_t begin, int64_t end) {
    const int64_t from = begin * kChunk, to = std::min(bytes, end * kChunk);
    std::memcpy(static_cast<char*>(dst) + from, static_cast<const char*>(host_src) + from,
                static_cast<size_t>(to - from));
  });
}

void CpuDevice::copy_to_host(void* host_dst, const void* src, int64_t bytes) {
  if (bytes > 0) std::memcpy(host_dst, src, static_cast<size_t>(bytes));
}

void CpuDevice::embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden,
                      float* out) {
  cpu::embed(ids, tokens, table, hidden, out, pool_);
}

void CpuDevice::embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table,
                           int64_t hidden, float* out, uint16_t* scratch) {
  // Work is split by scratch slot, not by token, so that each slot has one owner at a time.
  const int64_t slots = pool_.size();
  const int64_t slot_elements = groups_per_row(hidden) * df11::kGroupElements;
  const Df11Table& decoding = table_for(table.lengths);
  pool_.run(slots, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      uint16_t* rows = scratch + slot * slot_elements;
      for (int64_t t = slot; t < tokens; t += slots) {
        const int64_t first = int64_t{ids[t]} * hidden;
        const int64_t g0 = first / df11::kGroupElements;
        const int64_t g1 = (first + hidden - 1) / df11::kGroupElements + 1;
        df11_decode_cpu(df11_groups(table, g0, g1), decoding, rows, 1);
        const uint16_t* row = rows + (first - g0 * df11::kGroupElements);
        float* dst = out + t * hidden;
        for (int64_t i = 0; i < hidden; ++i) dst[i] = cpu::bf16_to_f32(row[i]);
      }
    }
  });
}

int64_t CpuDevice::embed_df11_scratch_elements(int64_t hidden) const {
  return int64_t{pool_.size()} * groups_per_row(hidden) * df11::kGroupElements;
}

void CpuDevice::decode_df11(const Df11View& view, uint16_t* out) {
  // One df11_decode_cpu call per range of groups on the engine's pool (its own num_threads
  // would start threads per call).
  const Df11Table& table = table_for(view.lengths);
  pool_.run(view.groups(), [&](int64_t begin, int64_t end) {
    df11_decode_cpu(df11_groups(view, begin, end), table, out + begin * df11::kGroupElements, 1);
  });
}

void CpuDevice::gather_rows(const float* src, const int32_t* rows, int64_t count, int64_t width,
                            float* dst) {
  for (int64_t i = 0; i < count; ++i) {
    std::memcpy(dst + i * width, src + int64_t{rows[i]} * width,
                static_cast<size_t>(width) * sizeof(float));
  }
}

void CpuDevice::copy_block(const float* src, int64_t src_stride, float* dst, int64_t dst_stride,
                           int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(dst + r * dst_stride, src + r * src_stride,
                static_cast<size_t>(cols) * sizeof(float));
  }
}

MatmulInput CpuDevice::add_rms_norm_input(float* x, const float* residual, const float* weight,
                                          int64_t rows, int64_t cols, float eps, float* out,
                                          void* /*scratch*/) {
  if (residual != nullptr) cpu::add_inplace(x, residual, rows * cols, pool_);
  cpu::rms_norm(x, weight, rows, cols, eps, out, pool_);
  return {out, rows, cols};
}

MatmulInput CpuDevice::silu_mul_input(const float* gate, const float* up, int64_t row_stride,
                                      int64_t tokens, int64_t width, float* out,
                                      void* /*scratch*/) {
  cpu::silu_mul(gate, up, row_stride, tokens, width, out, pool_);
  return {out, tokens, width};
}

void CpuDevice::matmul_bf16(const MatmulInput& x, const uint16_t* w, int64_t n, const float* bias,
                            float* out) {
  cpu::matmul_bf16(static_cast<const float*>(x.data), x.rows, x.k, w, n, bias, out, pool_);
}

void CpuDevice::rope_and_cache(const QkvRows& in, const int32_t* positions, int64_t tokens,
                               int64_t heads, const float* inv_freq, const PagedKv& kv,
                               const int32_t* slots, float* q_out) {
  const int64_t width = heads * kv.head_dim;
  if (q_out != in.q) copy_block(in.q, in.q_stride, q_out, width, tokens, width);
  cpu::rope(q_out, width, positions, tokens, heads, kv.head_dim, inv_freq, pool_);
  cpu::rope(in.k, in.kv_stride, positions, tokens, kv.kv_heads, kv.head_dim, inv_freq, pool_);
  cpu::kv_write(kv, in.k, in.v, in.kv_stride, slots, tokens, pool_);
}

MatmulInput CpuDevice::paged_attention(const float* q, const PagedKv& kv, const PagedBatch& batch,
                                       int64_t heads, float scale, float* out, void* /*scratch*/,
                                       void* /*input_scratch*/) {
  cpu::paged_attention(q, kv, batch, heads, scale, out, pool_);
  return {out, batch.num_tokens, heads * kv.head_dim};
}

void CpuDevice::sample(float* logits, int64_t rows, int64_t vocab, const SampleParams* params,
                       int32_t* out, void* scratch) {
  cpu::sample(logits, rows, vocab, params, out, scratch, pool_);
}

int64_t CpuDevice::sample_scratch_bytes(int64_t rows, int64_t vocab) const {
  return rows * vocab * 8;  // cpu::sample's documented need
}

}  // namespace slimrt
