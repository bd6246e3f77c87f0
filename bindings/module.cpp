// slimrt._core: thin pybind11 bindings over the C++ core. No logic lives here.
#include <pybind11/pybind11.h>

#include "check.h"

namespace py = pybind11;

namespace slimrt::bindings {
void bind_df11(py::module_& m);
void bind_engine(py::module_& m);
void bind_attention(py::module_& m);
}  // namespace slimrt::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "slimrt core (C++): DF11 codec, CPU and CUDA kernels";
  static py::exception<slimrt::Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const slimrt::Error& e) {
      py::set_error(error, e.what());
    }
  });
  slimrt::bindings::bind_df11(m);
  slimrt::bindings::bind_engine(m);
  slimrt::bindings::bind_attention(m);
}
