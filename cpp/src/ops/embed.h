// The embedding lookup of a step's tokens, from a dense BF16 table or a DF11 one, into the FP32
// residual stream (cpu/embed.cpp, cuda/embed.cu).
//
//   ops::embed(device, ids, tokens, table, hidden, x);
//   ops::embed_df11(device, ids, tokens, df11_table, hidden, x, scratch);
#pragma once

#include <cstdint>

#include "device.h"
#include "slimrt/df11.h"

namespace slimrt::ops {

// out[t][:] = table[ids[t]][:] widened to FP32, table [vocab][hidden]. Every id must be a row of
// the table (not checked: ids live on the device).
void embed(Device& device, const int32_t* ids, int64_t tokens, const uint16_t* table,
           int64_t hidden, float* out);

// embed() from a DF11 table ([numel / hidden][hidden]), decoding only the groups that hold the
// requested rows, into `scratch` (embed_df11_scratch_elements() uint16 elements; none on CUDA).
// The table is prepared by Device::prepare_df11 (or on first use).
void embed_df11(Device& device, const int32_t* ids, int64_t tokens, const Df11View& table,
                int64_t hidden, float* out, uint16_t* scratch);
int64_t embed_df11_scratch_elements(Device& device, int64_t hidden);

}  // namespace slimrt::ops
