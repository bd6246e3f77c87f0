#include "bf16.h"
#include "df11_groups.h"
#include "kernels.h"
#include "work_split.h"

namespace slimrt::cpu {
namespace {

// Groups one embedding row can touch: its own span plus one when it straddles a boundary.
int64_t groups_per_row(int64_t hidden) {
  return (hidden + df11::kGroupElements - 1) / df11::kGroupElements + 1;
}

}  // namespace

void embed(const int32_t* ids, int64_t tokens, const uint16_t* table, int64_t hidden, float* out,
           ThreadPool& pool) {
  parallel_over(pool, tokens, hidden, [&](int64_t begin, int64_t end) {
    for (int64_t t = begin; t < end; ++t) {
      const uint16_t* row = table + static_cast<int64_t>(ids[t]) * hidden;
      float* o = out + t * hidden;
      for (int64_t i = 0; i < hidden; ++i) o[i] = bf16_to_f32(row[i]);
    }
  });
}

void embed_df11(const int32_t* ids, int64_t tokens, const Df11View& table,
                const Df11Table& decoding, int64_t hidden, float* out, uint16_t* scratch,
                ThreadPool& pool) {
  // Work is split by scratch slot, not by token, so that each slot has one owner at a time.
  const int64_t slots = pool.size();
  const int64_t slot_elements = groups_per_row(hidden) * df11::kGroupElements;
  pool.run(slots, [&](int64_t begin, int64_t end) {
    for (int64_t slot = begin; slot < end; ++slot) {
      uint16_t* rows = scratch + slot * slot_elements;
      for (int64_t t = slot; t < tokens; t += slots) {
        const int64_t first = int64_t{ids[t]} * hidden;
        const int64_t g0 = first / df11::kGroupElements;
        const int64_t g1 = (first + hidden - 1) / df11::kGroupElements + 1;
        df11_decode_cpu(df11_groups(table, g0, g1), decoding, rows, 1);
        const uint16_t* row = rows + (first - g0 * df11::kGroupElements);
        float* dst = out + t * hidden;
        for (int64_t i = 0; i < hidden; ++i) dst[i] = bf16_to_f32(row[i]);
      }
    }
  });
}

int64_t embed_df11_scratch_elements(int64_t hidden, const ThreadPool& pool) {
  return int64_t{pool.size()} * groups_per_row(hidden) * df11::kGroupElements;
}

}  // namespace slimrt::cpu
