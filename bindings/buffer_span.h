// Typed, checked views of Python buffers (numpy arrays, bytes, memoryviews) for the bindings.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "check.h"

namespace slimrt::bindings {

template <class T>
struct Span {
  T* data;
  int64_t size;
};

// The buffer as `count` contiguous elements of T; any mismatch names the argument.
template <class T>
Span<T> as_span(const pybind11::buffer& object, const char* name, bool writable) {
  pybind11::buffer_info info = object.request(writable);
  SLIMRT_CHECK(info.itemsize == static_cast<pybind11::ssize_t>(sizeof(T)),
               name << ": expected elements of " << sizeof(T) << " bytes, got " << info.itemsize
                    << " (format '" << info.format << "')");
  pybind11::ssize_t expected_stride = info.itemsize;
  for (int d = static_cast<int>(info.ndim) - 1; d >= 0; --d) {
    SLIMRT_CHECK(info.shape[d] <= 1 || info.strides[d] == expected_stride,
                 name << ": array must be C-contiguous");
    expected_stride *= info.shape[d];
  }
  SLIMRT_CHECK(!writable || !info.readonly, name << ": array is read-only");
  int64_t count = 1;
  for (auto extent : info.shape) count *= extent;
  return {static_cast<T*>(info.ptr), count};
}

}  // namespace slimrt::bindings
