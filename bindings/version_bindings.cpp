// _core.version, cuda_built, cuda_available, cuda_unavailable_reason: slimrt/version.h as is.
#include <pybind11/pybind11.h>

#include "slimrt/version.h"

namespace py = pybind11;

namespace slimrt::bindings {

void bind_version(py::module_& m) {
  m.def("version", &version, "The core's version, \"0.1.0\".");
  m.def("cuda_built", &cuda_built, "Whether the CUDA backend was compiled in.");
  m.def("cuda_available", &cuda_available, "Whether device \"cuda\" can run here.");
  m.def("cuda_unavailable_reason", &cuda_unavailable_reason,
        "Why cuda_available() is false (\"\" when it is true).");
}

}  // namespace slimrt::bindings
