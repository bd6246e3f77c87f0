// Decoding a DF11 tensor into BF16 bits just before use, bit-exact: at once, or ahead of use on
// the device's second lane (Device::fork_ahead / join_ahead order it) (cpu/df11_decode.cpp,
// cuda/df11_decode.cu). The tensor was validated at load and is in the device's memory; its
// decoding table comes from Device::prepare_df11 (or is built on first use).
//
//   ops::decode_df11(device, matrix.df11, slot);          // in order with the ops around it
//   device.fork_ahead();
//   ops::decode_df11_ahead(device, next.df11, next_slot); // overlaps what is enqueued next
//   device.join_ahead();
#pragma once

#include <cstdint>

#include "device.h"
#include "slimrt/df11.h"

namespace slimrt::ops {

// out[0, numel) = the tensor's BF16 bits.
void decode_df11(Device& device, const Df11View& view, uint16_t* out);
// decode_df11() on the ahead lane; at once where the device has none (overlaps_decode() false).
void decode_df11_ahead(Device& device, const Df11View& view, uint16_t* out);

}  // namespace slimrt::ops
