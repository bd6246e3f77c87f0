// The DLPack ABI (v0.x, the `dltensor` capsule that __dlpack__() returns), declared here so the
// core needs no framework headers. Field order and sizes are fixed by the DLPack standard.
#pragma once

#include <cstdint>

namespace slimrt::bindings {

enum DlDeviceType : int32_t { kDlCpu = 1, kDlCuda = 2 };
enum DlTypeCode : uint8_t { kDlInt = 0, kDlUInt = 1, kDlFloat = 2, kDlBfloat = 4 };

struct DlDevice {
  int32_t device_type;
  int32_t device_id;
};
struct DlDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct DlTensor {
  void* data;
  DlDevice device;
  int32_t ndim;
  DlDataType dtype;
  int64_t* shape;
  int64_t* strides;
  uint64_t byte_offset;
};
struct DlManagedTensor {
  DlTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DlManagedTensor* self);
};

}  // namespace slimrt::bindings
