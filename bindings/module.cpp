// slimrt._core: thin pybind11 bindings over the C++ core. No logic lives here.
#include <pybind11/pybind11.h>

#include "check.h"

namespace py = pybind11;

namespace slimrt::bindings {
void bind_df11(py::module_& m);
void bind_engine(py::module_& m);
void bind_attention(py::module_& m);
void bind_model_files(py::module_& m);
}  // namespace slimrt::bindings

PYBIND11_MODULE(_core, m) {
  m.doc() = "slimrt core (C++): model-file parsers, DF11 codec, CPU and CUDA kernels";
  static py::exception<slimrt::Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const slimrt::Error& e) {
      // str() is what() (the message and where it was raised); `message` is the text alone
      // and `category` its slimrt::ErrorCategory name, for Python to pick its own exception.
      py::object instance = py::reinterpret_borrow<py::object>(error)(e.what());
      instance.attr("message") = e.message();
      instance.attr("category") = slimrt::error_category_name(e.category());
      PyErr_SetObject(error.ptr(), instance.ptr());
    }
  });
  slimrt::bindings::bind_df11(m);
  slimrt::bindings::bind_engine(m);
  slimrt::bindings::bind_attention(m);
  slimrt::bindings::bind_model_files(m);
}
