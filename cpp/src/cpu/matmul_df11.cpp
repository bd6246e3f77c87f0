// cpu::matmul_df11: a matmul whose weights are decoded into cache just before they are used.
//
// Each thread takes a run of weight rows and walks it a block at a time: the DF11 groups that hold
// the block are decoded into the thread's slot (about kBlockElements BF16, an L2-sized block),
// then matmul_bf16_rows multiplies them, so a decode step's weights stream once, compressed, and
// the BF16 bits live only in L2. Threads share the rows evenly; inside a thread, blocks end on
// multiples of whole `unit` rows (the fewest rows that end on a group boundary), so a group is
// decoded twice only where two threads' rows meet. (Blocks cut mid-group decoded 12 % of
// SmolLM2's k = 576 groups twice; blocks split between threads whole left small matrices such as
// its k_proj, 3 blocks, unbalanced on 2 threads: both ran slower than decoding ahead.)
#include <algorithm>

#include "df11_groups.h"
#include "kernels.h"

namespace slimrt::cpu {
namespace {

constexpr int64_t kBlockElements = int64_t{1} << 16;  // 128 KB of BF16

int64_t gcd(int64_t a, int64_t b) { return b == 0 ? a : gcd(b, a % b); }

int64_t rows_per_block(int64_t k) {
  const int64_t unit = df11::kGroupElements / gcd(df11::kGroupElements, k);
  return std::max<int64_t>(1, kBlockElements / (unit * k)) * unit;
}

// Decoded elements of a block: its rows, plus the parts of its first and last groups before and
// after them (a block at a thread's first or last row may start or end mid-group).
int64_t slot_elements(int64_t k) { return rows_per_block(k) * k + 2 * df11::kGroupElements; }

}  // namespace

int64_t matmul_df11_scratch_elements(int64_t k, const ThreadPool& pool) {
  return int64_t{pool.size()} * slot_elements(k);
}

void matmul_df11(const float* x, int64_t rows, int64_t k, const Df11View& w,
                 const Df11Table& decoding, int64_t n, const float* bias, float* out,
                 uint16_t* scratch, ThreadPool& pool) {
  if (rows == 0 || n == 0) return;
  const int64_t block = rows_per_block(k);
  // One part per thread, each with its own slot: ThreadPool::run hands every part to one call.
  const int64_t parts = std::min<int64_t>(pool.size(), n);
  pool.run(parts, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p) {
      uint16_t* slot = scratch + p * slot_elements(k);
      const int64_t last = n * (p + 1) / parts;
      for (int64_t j0 = n * p / parts; j0 < last;) {
        const int64_t j1 = std::min(last, (j0 / block + 1) * block);
        const int64_t first_group = j0 * k / df11::kGroupElements;
        const int64_t end_group = (j1 * k + df11::kGroupElements - 1) / df11::kGroupElements;
        df11_decode_cpu(df11_groups(w, first_group, end_group), decoding, slot, 1);
        const uint16_t* rows_start = slot + (j0 * k - first_group * df11::kGroupElements);
        matmul_bf16_rows(x, rows, k, rows_start, j1 - j0, bias != nullptr ? bias + j0 : nullptr,
                         out + j0, n);
        j0 = j1;
      }
    }
  });
}

}  // namespace slimrt::cpu
