// Options structs from Python dicts, field by field through their bindings: the known names
// are the bound fields, so a misspelt option is refused with the list the binding has (never
// a list kept by hand), and a value of the wrong type names the option.
//
//   EngineOptions o = options_from_dict<EngineOptions>(dict);  // {"max_batch": 16, ...}
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "check.h"

namespace slimrt::bindings {

// The bound fields of a class (its properties), sorted.
std::vector<std::string> bound_fields(const pybind11::handle& type);

// Sets each key of `dict` on `target` (a bound options object); None keeps the default.
void set_fields(pybind11::object& target, const pybind11::dict& dict);

template <class Options>
Options options_from_dict(const pybind11::dict& dict) {
  pybind11::object target = pybind11::cast(Options{});
  set_fields(target, dict);
  return target.cast<Options>();
}

// An options argument: None (the defaults), a bound Options object, or a dict of its fields,
// checked (Options::validate).
template <class Options>
Options options_arg(const pybind11::object& options) {
  Options o;
  if (pybind11::isinstance<Options>(options)) {
    o = options.cast<Options>();
  } else if (!options.is_none()) {
    o = options_from_dict<Options>(options.cast<pybind11::dict>());
  }
  o.validate();
  return o;
}

// Options.from_dict(fields) and Options.validate() on a bound options class.
template <class Options>
void def_options_checks(pybind11::class_<Options>& cls) {
  cls.def_static(
         "from_dict", [](const pybind11::dict& fields) { return options_arg<Options>(fields); },
         pybind11::arg("fields"), "The options named in `fields`, checked.")
      .def("validate", &Options::validate);
}

}  // namespace slimrt::bindings
