// The CUDA entry points in a build without CUDA: cuda_unavailable_reason() says why not, everything
// else throws a slimrt::Error that says why, so that callers can fall back to the CPU decoder.
#include "attention_cuda.h"
#include "check.h"
#include "df11_cuda.h"
#include "slimrt/version.h"

#define SLIMRT_NO_CUDA(what) \
  SLIMRT_CHECK(false, "slimrt was built without CUDA (SLIMRT_CUDA=OFF or no nvcc found): " << what)

namespace slimrt {

const char* cuda_unavailable_reason() {
  return "slimrt was built without CUDA (SLIMRT_CUDA=OFF or no nvcc found)";
}

void df11_decode_cuda(const Df11DeviceView&, uint16_t*, void*) {
  SLIMRT_NO_CUDA("decoding a DF11 tensor on the GPU");
}

void df11_gather_rows_cuda(const Df11DeviceView&, const int32_t*, int64_t, int64_t, float*, void*) {
  SLIMRT_NO_CUDA("gathering DF11 rows on the GPU");
}

Df11DeviceTensor::Df11DeviceTensor(const Df11View&) {
  SLIMRT_NO_CUDA("uploading a DF11 tensor to the GPU");
}

Df11DeviceTensor::~Df11DeviceTensor() = default;

void Df11DeviceTensor::decode_into(uint16_t*, void*) const {
  SLIMRT_NO_CUDA("decoding a DF11 tensor on the GPU");
}

PagedDecodePlan paged_decode_attention_plan(const PagedDecodeShape&, int64_t, int32_t) {
  SLIMRT_NO_CUDA("planning decode attention on the GPU");
}

void paged_decode_attention_cuda(const PagedDecodePlan&, const PagedDecodeArgs&, void*, int64_t,
                                 void*) {
  SLIMRT_NO_CUDA("running decode attention on the GPU");
}

bool paged_prefill_attention_fits(int64_t, int64_t, int64_t, int64_t) { return false; }

void paged_prefill_attention_cuda(const PagedPrefillArgs&, void*) {
  SLIMRT_NO_CUDA("running prefill attention on the GPU");
}

bool sparse_paged_attention_fits(int64_t, int64_t, int64_t, int64_t) { return false; }

void sparse_paged_attention_cuda(const SparsePagedArgs&, void*, int64_t, void*) {
  SLIMRT_NO_CUDA("running attention on compressed KV pages on the GPU");
}

}  // namespace slimrt
