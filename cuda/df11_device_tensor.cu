// Df11DeviceTensor: one device allocation holding a validated DF11 tensor and its decoding table.
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda_check.h"
#include "df11_cuda.h"
#include "slimrt/df11.h"

namespace slimrt {
namespace {

// Every sub-array starts on a 256-byte boundary (cudaMalloc's own alignment), which the decoder's
// vector loads need and which keeps each array on its own cache lines.
constexpr int64_t kArrayAlignment = 256;

int64_t align_up(int64_t bytes) {
  return (bytes + kArrayAlignment - 1) / kArrayAlignment * kArrayAlignment;
}

void upload(void* memory, int64_t offset, const void* host, int64_t bytes) {
  if (bytes == 0) return;
  SLIMRT_CUDA_CHECK(cudaMemcpy(static_cast<char*>(memory) + offset, host,
                               static_cast<size_t>(bytes), cudaMemcpyHostToDevice));
}

}  // namespace

Df11DeviceTensor::Df11DeviceTensor(const Df11View& host) {
  df11_validate(host);
  const Df11Table table = df11_build_table(host.lengths);
  SLIMRT_CHECK(table.table_bits >= 0 && table.table_bits <= df11::kMaxCodeLength &&
                   table.entries.size() == (size_t{1} << table.table_bits),
               "df11_build_table returned " << table.entries.size() << " entries for table_bits "
                                            << table.table_bits);

  const int64_t bitstream_bytes = host.bitstream_words * int64_t{sizeof(uint32_t)};
  const int64_t index_bytes = host.groups() * df11::kIndexWords * int64_t{sizeof(uint32_t)};
  const int64_t signmant_bytes = host.numel;
  const int64_t table_bytes = static_cast<int64_t>(table.entries.size() * sizeof(uint16_t));
  const int64_t bitstream_at = 0;
  const int64_t index_at = bitstream_at + align_up(bitstream_bytes);
  const int64_t signmant_at = index_at + align_up(index_bytes);
  const int64_t table_at = signmant_at + align_up(signmant_bytes);
  const int64_t bytes = table_at + align_up(table_bytes);

  SLIMRT_CUDA_CHECK(cudaMalloc(&memory_, static_cast<size_t>(bytes)));
  bytes_ = bytes;
  try {
    upload(memory_, bitstream_at, host.bitstream, bitstream_bytes);
    upload(memory_, index_at, host.index, index_bytes);
    upload(memory_, signmant_at, host.signmant, signmant_bytes);
    upload(memory_, table_at, table.entries.data(), table_bytes);
    // cudaMemcpy from pageable memory may return before its DMA lands, and decode_into() may run
    // on a stream that does not wait for the legacy stream: wait here, once.
    SLIMRT_CUDA_CHECK(cudaDeviceSynchronize());
  } catch (...) {
    cudaFree(memory_);  // the destructor does not run for a constructor that throws
    memory_ = nullptr;
    throw;
  }

  char* base = static_cast<char*>(memory_);
  view_.bitstream = reinterpret_cast<const uint32_t*>(base + bitstream_at);
  view_.index = reinterpret_cast<const uint32_t*>(base + index_at);
  view_.signmant = reinterpret_cast<const uint8_t*>(base + signmant_at);
  view_.table = reinterpret_cast<const uint16_t*>(base + table_at);
  view_.table_bits = table.table_bits;
  view_.numel = host.numel;
}

Df11DeviceTensor::~Df11DeviceTensor() {
  // An error here (typically a context already torn down at exit) cannot be acted upon.
  if (memory_ != nullptr) cudaFree(memory_);
}

void Df11DeviceTensor::decode_into(uint16_t* out, void* stream) const {
  df11_decode_cuda(view_, out, stream);
}

}  // namespace slimrt
