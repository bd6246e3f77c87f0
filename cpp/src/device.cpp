#include "device.h"

#include <memory>
#include <string>

#include "check.h"
#include "cpu_device.h"
#ifdef SLIMRT_WITH_CUDA
#include "cuda_backend.h"
#endif

namespace slimrt {

std::unique_ptr<Device> make_device(const std::string& name, int num_threads) {
  if (name == "cpu") return std::make_unique<CpuDevice>(num_threads);
#ifdef SLIMRT_WITH_CUDA
  if (name == "cuda") return make_cuda_device();
  SLIMRT_CHECK(false, "options: unknown device \"" << name << "\"; supported: cpu, cuda");
#else
  SLIMRT_CHECK(name != "cuda",
               "options: device \"cuda\": slimrt was built without CUDA (SLIMRT_CUDA=OFF or no "
               "nvcc found); use device \"cpu\"");
  SLIMRT_CHECK(false, "options: unknown device \"" << name << "\"; supported: cpu");
#endif
}

}  // namespace slimrt
