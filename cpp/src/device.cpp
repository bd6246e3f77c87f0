#include "device.h"

#include <chrono>
#include <memory>
#include <string>

#include "check.h"
#include "cpu_device.h"
#ifdef SLIMRT_WITH_CUDA
#include "cuda_backend.h"
#endif

namespace slimrt {

// Ops of a device without a queue of its own (the CPU) are done when they return.
double Device::time_ms(const std::function<void()>& body) {
  const auto start = std::chrono::steady_clock::now();
  body();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
      .count();
}

void check_device_name(const std::string& name) {
#ifdef SLIMRT_WITH_CUDA
  SLIMRT_CHECK(name == "cpu" || name == "cuda",
               "options: unknown device \"" << name << "\"; supported: cpu, cuda");
#else
  SLIMRT_CHECK(name != "cuda",
               "options: device \"cuda\": slimrt was built without CUDA (SLIMRT_CUDA=OFF or no "
               "nvcc found); use device \"cpu\"");
  SLIMRT_CHECK(name == "cpu", "options: unknown device \"" << name << "\"; supported: cpu");
#endif
}

std::unique_ptr<Device> make_device(const std::string& name, int num_threads) {
  check_device_name(name);
#ifdef SLIMRT_WITH_CUDA
  if (name == "cuda") return make_cuda_device();
#endif
  return std::make_unique<CpuDevice>(num_threads);
}

}  // namespace slimrt
