#include "options_dict.h"

#include <algorithm>

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

std::string type_name(const py::handle& object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

}  // namespace

std::vector<std::string> bound_fields(const py::handle& type) {
  std::vector<std::string> names;
  const py::object property = py::module_::import("builtins").attr("property");
  for (const auto& item : type.attr("__dict__").cast<py::dict>()) {
    if (py::isinstance(item.second, property)) names.push_back(item.first.cast<std::string>());
  }
  std::sort(names.begin(), names.end());
  return names;
}

void set_fields(py::object& target, const py::dict& dict) {
  const std::vector<std::string> known = bound_fields(py::type::handle_of(target));
  for (const auto& item : dict) {
    const std::string key = py::str(item.first).cast<std::string>();
    SLIMRT_CHECK(std::find(known.begin(), known.end(), key) != known.end(),
                 "options: unknown option " << key << "; known: " << joined(known));
    if (item.second.is_none()) continue;  // None: the default
    const py::object current = target.attr(key.c_str());
    // bool is an int to Python, never meant as one here (and the reverse).
    const bool bool_mismatch =
        py::isinstance<py::bool_>(current) != py::isinstance<py::bool_>(item.second);
    bool ok = !bool_mismatch;
    if (ok) {
      try {
        target.attr(key.c_str()) = item.second;
      } catch (const py::error_already_set& e) {
        if (!e.matches(PyExc_TypeError)) throw;
        ok = false;
      }
    }
    SLIMRT_CHECK(ok, "options: " << key << " must be " << type_name(current) << ", got "
                                 << type_name(item.second));
  }
}

}  // namespace slimrt::bindings
