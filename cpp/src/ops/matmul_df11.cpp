#include "ops/matmul_df11.h"

#include <algorithm>
#include <limits>

#include "arena.h"
#include "backend.h"
#include "check.h"
#include "cpu/kernels.h"
#include "ops/df11_decode.h"
#include "ops/matmul_bf16.h"

namespace slimrt::ops {
namespace {

void check_products(const MatmulInput& x, const Df11Product* products, int count) {
  SLIMRT_CHECK(count >= 1 && count <= kMaxDf11Products && products != nullptr,
               "matmul_df11: " << count << " products, not 1.." << kMaxDf11Products);
  SLIMRT_CHECK(x.rows >= 0 && x.k > 0, "matmul_df11: " << x.rows << " rows of " << x.k);
  for (int j = 0; j < count; ++j) {
    const Df11Product& p = products[j];
    SLIMRT_CHECK(p.n >= 0, "matmul_df11: " << p.n << " outputs");
    SLIMRT_CHECK(p.w.numel == p.n * x.k, "matmul_df11: the DF11 tensor holds "
                                             << p.w.numel << " elements, not " << p.n << " x "
                                             << x.k);
    SLIMRT_CHECK(x.rows * p.n == 0 ||
                     (x.data != nullptr && p.out != nullptr && p.w.lengths != nullptr &&
                      p.w.bitstream != nullptr && p.w.index != nullptr && p.w.signmant != nullptr),
                 "matmul_df11: a null pointer");
  }
}

// Device time of `body`, the fastest of a few runs of a few repetitions.
double fastest_ms(Device& device, const std::function<void()>& body) {
  constexpr int kRuns = 3;
  constexpr int kRepetitions = 5;
  body();  // warm-up: first launches, caches
  double best = std::numeric_limits<double>::infinity();
  for (int run = 0; run < kRuns; ++run) {
    best = std::min(best, device.time_ms([&] {
      for (int i = 0; i < kRepetitions; ++i) body();
    }));
  }
  return best;
}

}  // namespace

int64_t matmul_df11_max_rows(Device& device, int64_t k, int count) {
  switch (device.backend()) {
    case Backend::kCpu:
      return std::numeric_limits<int64_t>::max();
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::matmul_df11_max_rows(k, count));
  }
  return 0;
}

void matmul_df11(Device& device, const MatmulInput& x, const Df11Product* products, int count,
                 void* scratch) {
  check_products(x, products, count);
  if (x.rows == 0) return;
  switch (device.backend()) {
    case Backend::kCpu: {
      SLIMRT_CHECK(scratch != nullptr, "matmul_df11: a null pointer");
      CpuDevice& cpu = cpu_device(device);
      for (int j = 0; j < count; ++j) {
        const Df11Product& p = products[j];
        cpu::matmul_df11(static_cast<const float*>(x.data), x.rows, x.k, p.w,
                         cpu.df11_table(p.w.lengths), p.n, p.bias, p.out,
                         static_cast<uint16_t*>(scratch), cpu.pool());
      }
      return;
    }
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::matmul_df11(cuda_device(device), x, products, count, scratch));
  }
}

int64_t matmul_df11_scratch_bytes(Device& device, const Df11Product* products, int count, int64_t k,
                                  int64_t rows) {
  SLIMRT_CHECK(k > 0 && rows >= 0, "matmul_df11: k " << k << ", " << rows << " rows");
  switch (device.backend()) {
    case Backend::kCpu:  // one block of decoded rows per thread, whatever the products
      return cpu::matmul_df11_scratch_elements(k, cpu_device(device).pool()) * 2;
    case Backend::kCuda:
      return SLIMRT_CUDA(cuda::matmul_df11_scratch_bytes(products, count, k, rows));
  }
  return 0;
}

int64_t tune_matmul_df11(Device& device, const MatmulInput& x, const Df11Product* products,
                         int count, uint16_t* decoded, float* combined_out, void* scratch) {
  check_products(x, products, count);
  const int64_t most = std::min(x.rows, matmul_df11_max_rows(device, x.k, count));
  if (device.backend() == Backend::kCpu) return x.rows;
  int64_t all_n = 0;
  for (int j = 0; j < count; ++j) all_n += products[j].n;
  int64_t fused = 0;
  for (int64_t rows = 1; rows <= most; ++rows) {
    const MatmulInput in{x.data, rows, x.k};
    const double fused_ms =
        fastest_ms(device, [&] { matmul_df11(device, in, products, count, scratch); });
    const double ahead_ms = fastest_ms(device, [&] {
      uint16_t* at = decoded;
      for (int j = 0; j < count; ++j) {
        decode_df11(device, products[j].w, at);
        at += align_up(products[j].w.numel * 2) / 2;
      }
      matmul_bf16(device, in, decoded, all_n, nullptr, combined_out);
    });
    if (fused_ms > ahead_ms) break;
    fused = rows;
  }
  return fused;
}

}  // namespace slimrt::ops
