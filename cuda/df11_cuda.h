// DF11 decoding on a CUDA GPU. The header needs no CUDA headers: streams travel as void*.
// In a build without CUDA every function here throws slimrt::Error("... built without CUDA").
//
//   slimrt::Df11DeviceTensor dev(host_view);         // validates, uploads once
//   dev.decode_into(out_device_ptr, stream);         // asynchronous, bit-exact BF16 bits
#pragma once

#include <cstdint>

#include "slimrt/df11.h"

namespace slimrt {

// Device pointers to one DF11 tensor plus its decoding table (see df11_build_table()).
struct Df11DeviceView {
  const uint32_t* bitstream = nullptr;
  const uint32_t* index = nullptr;
  const uint8_t* signmant = nullptr;
  const uint16_t* table = nullptr;  // 1 << table_bits entries
  int table_bits = 0;
  int64_t numel = 0;
};

// Launches the decode kernel on `stream` (a cudaStream_t, nullptr = default stream).
// `out` is device memory for numel uint16; any alignment works, 16 bytes is the fast path.
void df11_decode_cuda(const Df11DeviceView& view, uint16_t* out, void* stream);

// Rows ids[0 .. tokens) of the view as a [numel / width][width] matrix, each widened to FP32 into
// out[t][0 .. width) (an embedding lookup), on `stream`; ids and out are device memory, every id
// a row of the matrix (not checked: the ids live on the device). Decodes only the groups the rows
// touch; reads no host memory, so it can be captured in a CUDA graph.
void df11_gather_rows_cuda(const Df11DeviceView& view, const int32_t* ids, int64_t tokens,
                           int64_t width, float* out, void* stream);

// Owns device copies of a DF11 tensor's arrays and table.
class Df11DeviceTensor {
 public:
  explicit Df11DeviceTensor(const Df11View& host);  // validates, then uploads synchronously
  ~Df11DeviceTensor();
  Df11DeviceTensor(const Df11DeviceTensor&) = delete;
  Df11DeviceTensor& operator=(const Df11DeviceTensor&) = delete;

  void decode_into(uint16_t* out, void* stream) const;
  const Df11DeviceView& view() const { return view_; }
  int64_t numel() const { return view_.numel; }
  int64_t device_bytes() const { return bytes_; }

 private:
  Df11DeviceView view_;
  void* memory_ = nullptr;  // one allocation holding all arrays
  int64_t bytes_ = 0;
};

}  // namespace slimrt
