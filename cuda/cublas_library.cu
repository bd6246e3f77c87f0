#include <dlfcn.h>

#include <string>

#include "check.h"
#include "cublas_library.h"

#ifndef SLIMRT_CUBLAS_DIR
#define SLIMRT_CUBLAS_DIR ""
#endif

namespace slimrt {
namespace {

template <class F>
void bind(void* library, const char* name, F& function) {
  function = reinterpret_cast<F>(dlsym(library, name));
  SLIMRT_CHECK(function != nullptr,
               "cuBLAS: symbol " << name << " not found in the loaded library");
}

CublasLibrary load() {
  const std::string soname = "libcublas.so." + std::to_string(CUBLAS_VER_MAJOR);
  void* library = dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  std::string first_error = library == nullptr ? dlerror() : "";
  const std::string fallback = std::string(SLIMRT_CUBLAS_DIR) + "/" + soname;
  if (library == nullptr && SLIMRT_CUBLAS_DIR[0] != '\0') {
    library = dlopen(fallback.c_str(), RTLD_NOW | RTLD_LOCAL);
  }
  SLIMRT_CHECK(library != nullptr, "cuBLAS: cannot load "
                                       << soname << " (" << first_error << "), nor " << fallback
                                       << "; install it (pip install nvidia-cublas) or add its "
                                          "directory to LD_LIBRARY_PATH");
  CublasLibrary api;
  bind(library, "cublasCreate_v2", api.create);
  bind(library, "cublasDestroy_v2", api.destroy);
  bind(library, "cublasSetStream_v2", api.set_stream);
  bind(library, "cublasSetWorkspace_v2", api.set_workspace);
  bind(library, "cublasGemmEx", api.gemm_ex);
  bind(library, "cublasGetStatusName", api.status_name);
  bind(library, "cublasGetStatusString", api.status_string);
  return api;
}

}  // namespace

const CublasLibrary& cublas_library() {
  static const CublasLibrary api = load();  // a throw leaves it unset: the next call retries
  return api;
}

}  // namespace slimrt
