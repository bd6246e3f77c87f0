// slimrt._core: thin pybind11 bindings over the C++ core. No logic lives here.
//
// slimrt::Error reaches Python as the exception class registered for its category
// (slimrt.errors registers its classes at import: set_error_class), or as _core.Error before
// that; str() is the message, .place where in the C++ sources it was raised. Log lines go to
// the callable given to set_log_callback (slimrt.errors hands them to the `slimrt` logger).
#include <pybind11/pybind11.h>

#include <cstring>
#include <map>
#include <string>

#include "check.h"
#include "slimrt/log.h"

namespace py = pybind11;

namespace slimrt::bindings {
void bind_df11(py::module_& m);
void bind_model(py::module_& m);
void bind_engine(py::module_& m);
void bind_attention(py::module_& m);
void bind_model_files(py::module_& m);
void bind_version(py::module_& m);

namespace {

// Keyed by error_category_name(); leaked on purpose: exception classes must outlive the
// interpreter's teardown of this module.
std::map<std::string, py::object>& error_classes() {
  static auto* classes = new std::map<std::string, py::object>();
  return *classes;
}

// The Python callable of set_log_callback; leaked for the same reason. Read and written with
// the GIL held.
py::object& log_callable() {
  static auto* callable = new py::object();
  return *callable;
}

// Called on whichever thread logs, usually one that released the GIL (Model.load).
void forward_log_line(LogLevel level, const char* text, void* /*user_data*/) {
  if (!Py_IsInitialized()) return;
  py::gil_scoped_acquire gil;
  if (!log_callable()) return;  // unset since the line was written
  // Paths in a line need not be UTF-8: undecodable bytes are shown as \xNN.
  PyObject* line =
      PyUnicode_DecodeUTF8(text, static_cast<Py_ssize_t>(std::strlen(text)), "backslashreplace");
  try {
    if (line == nullptr) throw py::error_already_set();
    log_callable()(static_cast<int>(level), py::reinterpret_steal<py::str>(line));
  } catch (py::error_already_set& e) {
    // A failing callback must not unwind through C++ frames that cannot expect it.
    e.discard_as_unraisable("slimrt log callback");
  }
}

}  // namespace
}  // namespace slimrt::bindings

PYBIND11_MODULE(_core, m) {
  using slimrt::bindings::error_classes;
  m.doc() = "slimrt core (C++): model loading, engine, DF11 codec, CPU and CUDA kernels";
  static py::exception<slimrt::Error> error(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const slimrt::Error& e) {
      const auto it = error_classes().find(slimrt::error_category_name(e.category()));
      const py::object cls = it != error_classes().end() ? it->second : py::object(error);
      py::object instance = cls(e.message());
      instance.attr("category") = slimrt::error_category_name(e.category());
      const std::string what = e.what();
      instance.attr("place") =
          what.size() > e.message().size() ? what.substr(e.message().size()) : std::string();
      PyErr_SetObject(cls.ptr(), instance.ptr());
    }
  });
  m.def(
      "set_error_class",
      [](const std::string& category, const py::object& cls) { error_classes()[category] = cls; },
      py::arg("category"), py::arg("cls"),
      "Raise `cls(message)` for C++ errors of `category` (\"invalid argument\", \"model file\", "
      "\"unsupported\", \"out of memory\", \"I/O\", \"internal\").");
  m.def(
      "set_log_callback",
      [](const py::object& callable) {
        using slimrt::bindings::forward_log_line;
        using slimrt::bindings::log_callable;
        log_callable() = callable.is_none() ? py::object() : callable;
        slimrt::set_log_callback(callable.is_none() ? nullptr : &forward_log_line, nullptr);
      },
      py::arg("callable"),
      "Hand every C++ log line to `callable(level, text)` (level: 0 debug, 1 info, 2 warning, 3 "
      "error), from the thread that logs; None: back to the default (warnings and errors on "
      "stderr).");
  slimrt::bindings::bind_df11(m);
  slimrt::bindings::bind_model(m);
  slimrt::bindings::bind_engine(m);
  slimrt::bindings::bind_attention(m);
  slimrt::bindings::bind_model_files(m);
  slimrt::bindings::bind_version(m);
}
