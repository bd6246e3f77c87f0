// _core.Engine, _core.Df11Weight and _core.SamplingParams (docs/ENGINE_API.md): conversions of
// Python values to the C++ API and back, nothing more.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "buffer_span.h"
#include "check.h"
#include "slimrt/df11.h"
#include "slimrt/engine.h"

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

// A DF11 matrix for the Engine. Holding the buffer exports (not just references) keeps the
// four arrays from being resized or freed while the view points into them.
struct Df11Weight {
  py::buffer_info lengths, bitstream, index, signmant;
  std::vector<int64_t> shape;
  Df11View view;
};

std::string type_name(const py::handle& object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

py::buffer_info hold(const py::buffer& object, const char* name, int64_t itemsize) {
  // as_span names the argument in its errors (element size, contiguity); then keep the export.
  switch (itemsize) {
    case 1:
      as_span<const uint8_t>(object, name, false);
      break;
    default:
      as_span<const uint32_t>(object, name, false);
      break;
  }
  return object.request();
}

std::unique_ptr<Df11Weight> make_df11_weight(const py::buffer& lengths, const py::buffer& bitstream,
                                             const py::buffer& index, const py::buffer& signmant,
                                             const std::vector<int64_t>& shape) {
  SLIMRT_CHECK(shape.size() == 2 && shape[0] > 0 && shape[1] > 0,
               "Df11Weight: shape must be 2-D with positive sizes");
  auto w = std::make_unique<Df11Weight>(Df11Weight{hold(lengths, "lengths", 1),
                                                   hold(bitstream, "bitstream", 4),
                                                   hold(index, "index", 4),
                                                   hold(signmant, "signmant", 1),
                                                   shape,
                                                   {}});
  Df11View& v = w->view;
  v.numel = shape[0] * shape[1];
  v.lengths = static_cast<const uint8_t*>(w->lengths.ptr);
  v.bitstream = static_cast<const uint32_t*>(w->bitstream.ptr);
  v.bitstream_words = w->bitstream.size;
  v.index = static_cast<const uint32_t*>(w->index.ptr);
  v.signmant = static_cast<const uint8_t*>(w->signmant.ptr);
  SLIMRT_CHECK(w->lengths.size == df11::kSymbols,
               "Df11Weight: lengths has " << w->lengths.size << " entries, expected 256");
  SLIMRT_CHECK(w->index.size == v.groups() * df11::kIndexWords,
               "Df11Weight: index has " << w->index.size << " words, a [" << shape[0] << ", "
                                        << shape[1] << "] tensor needs "
                                        << v.groups() * df11::kIndexWords);
  SLIMRT_CHECK(w->signmant.size == v.numel,
               "Df11Weight: signmant has " << w->signmant.size << " bytes, a [" << shape[0] << ", "
                                           << shape[1] << "] tensor needs " << v.numel);
  df11_validate(v);
  return w;
}

// config.json values -> ConfigValue; nested objects flattened to "key.member".
void convert_config(const py::dict& dict, const std::string& prefix, ConfigMap& out) {
  for (const auto& item : dict) {
    const std::string key = prefix + py::str(item.first).cast<std::string>();
    const py::handle v = item.second;
    if (v.is_none()) {
      out[key] = ConfigValue::null();
    } else if (py::isinstance<py::bool_>(v)) {
      out[key] = ConfigValue::of_bool(v.cast<bool>());
    } else if (py::isinstance<py::int_>(v) || PyIndex_Check(v.ptr())) {
      try {
        out[key] = ConfigValue::of_int(v.cast<int64_t>());
      } catch (const py::cast_error&) {
        out[key] = ConfigValue::other("an integer outside int64");
      }
    } else if (py::isinstance<py::float_>(v) ||
               py::isinstance(v, py::module_::import("numpy").attr("floating"))) {
      out[key] = ConfigValue::of_float(v.cast<double>());
    } else if (py::isinstance<py::str>(v)) {
      out[key] = ConfigValue::of_string(v.cast<std::string>());
    } else if (py::isinstance<py::dict>(v)) {
      out[key] = ConfigValue::object();
      convert_config(v.cast<py::dict>(), key + ".", out);
    } else if (py::isinstance<py::list>(v) || py::isinstance<py::tuple>(v)) {
      std::vector<std::string> strings;
      bool all_strings = true;
      for (const auto& e : v) {
        if (!py::isinstance<py::str>(e)) {
          all_strings = false;
          break;
        }
        strings.push_back(e.cast<std::string>());
      }
      out[key] = all_strings ? ConfigValue::of_strings(std::move(strings))
                             : ConfigValue::other("a list of non-strings");
    } else {
      out[key] = ConfigValue::other(type_name(v));
    }
  }
}

// Keeps the arrays the WeightMap points into alive for the Engine's constructor.
struct WeightArgs {
  WeightMap map;
  std::vector<py::array> arrays;
};

void convert_weights(const py::dict& dict, WeightArgs& out) {
  out.arrays.reserve(dict.size());
  for (const auto& item : dict) {
    const std::string name = py::str(item.first).cast<std::string>();
    const py::handle value = item.second;
    if (py::isinstance<Df11Weight>(value)) {
      const auto& w = value.cast<const Df11Weight&>();
      out.map[name] = WeightTensor::compressed(w.view, w.shape);
      continue;
    }
    // C order, copying only an array that is not already C-contiguous.
    py::array array = py::array::ensure(value, py::array::c_style);
    if (!array) {
      out.map[name] = WeightTensor::unsupported(type_name(value), {});
      continue;
    }
    std::vector<int64_t> shape(array.shape(), array.shape() + array.ndim());
    const char kind = array.dtype().kind();
    const auto itemsize = array.itemsize();
    if (kind == 'u' && itemsize == 2) {
      out.map[name] = WeightTensor::bf16(static_cast<const uint16_t*>(array.data()), shape);
    } else if (kind == 'f' && itemsize == 4) {
      out.map[name] = WeightTensor::f32(static_cast<const float*>(array.data()), shape);
    } else {
      out.map[name] = WeightTensor::unsupported(py::str(array.dtype()).cast<std::string>(), shape);
    }
    out.arrays.push_back(std::move(array));
  }
}

int64_t option_int(const std::string& key, const py::handle& value) {
  SLIMRT_CHECK(!py::isinstance<py::bool_>(value) && PyIndex_Check(value.ptr()),
               "options: " << key << " must be an integer, got " << type_name(value));
  return value.cast<int64_t>();
}

std::string option_str(const std::string& key, const py::handle& value) {
  SLIMRT_CHECK(py::isinstance<py::str>(value),
               "options: " << key << " must be a string, got " << type_name(value));
  return value.cast<std::string>();
}

// Unknown keys are errors: a misspelt option silently ignored would run with a default.
EngineOptions convert_options(const py::dict& dict) {
  EngineOptions o;
  for (const auto& item : dict) {
    const std::string key = py::str(item.first).cast<std::string>();
    const py::handle v = item.second;
    if (v.is_none()) continue;  // None: the default
    if (key == "device") {
      o.device = option_str(key, v);
    } else if (key == "kv_dtype") {
      o.kv_dtype = option_str(key, v);
    } else if (key == "max_batch") {
      o.max_batch = option_int(key, v);
    } else if (key == "kv_tokens") {
      o.kv_tokens = option_int(key, v);
    } else if (key == "page_size") {
      o.page_size = option_int(key, v);
    } else if (key == "max_step_tokens") {
      o.max_step_tokens = option_int(key, v);
    } else if (key == "num_threads") {
      const int64_t n = option_int(key, v);
      SLIMRT_CHECK(n >= 0 && n <= 1 << 16, "options: num_threads must be >= 0, got " << n);
      o.num_threads = static_cast<int>(n);
    } else if (key == "memory_limit_bytes") {
      o.memory_limit_bytes = option_int(key, v);
    } else {
      SLIMRT_CHECK(false, "options: unknown option "
                              << key
                              << "; known: device, max_batch, kv_tokens, page_size, "
                                 "max_step_tokens, kv_dtype, num_threads, memory_limit_bytes");
    }
  }
  return o;
}

// An integer array argument as C-contiguous T (lists and other integer dtypes are converted).
template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> int_array(const py::handle& object,
                                                                    const char* name) {
  py::array array = py::array::ensure(object);
  SLIMRT_CHECK(array, name << ": expected an integer array");
  const char kind = array.dtype().kind();
  SLIMRT_CHECK(
      array.size() == 0 || kind == 'i' || kind == 'u',
      name << ": expected integers, got dtype " << py::str(array.dtype()).cast<std::string>());
  SLIMRT_CHECK(array.ndim() == 1, name << ": expected a 1-D array, got " << array.ndim() << "-D");
  return py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(array);
}

py::object step(Engine& engine, const py::handle& seq_ids, const py::handle& tokens,
                const py::handle& counts, const py::object& sampling) {
  const auto ids = int_array<int64_t>(seq_ids, "seq_ids");
  const auto toks = int_array<int32_t>(tokens, "tokens");
  const auto cnts = int_array<int32_t>(counts, "counts");
  SLIMRT_CHECK(cnts.size() == ids.size(),
               "step: counts has " << cnts.size() << " entries, seq_ids has " << ids.size());
  StepInput in;
  in.seq_ids = ids.data();
  in.counts = cnts.data();
  in.batch = ids.size();
  in.tokens = toks.data();
  in.num_tokens = toks.size();
  if (sampling.is_none()) {
    py::array_t<float> logits({in.batch, engine.vocab_size()});
    float* out = logits.mutable_data();
    {
      py::gil_scoped_release release;
      engine.step(in, out);
    }
    return std::move(logits);
  }
  const auto params = sampling.cast<std::vector<SamplingParams>>();
  SLIMRT_CHECK(static_cast<int64_t>(params.size()) == in.batch,
               "step: sampling has " << params.size() << " entries, expected " << in.batch);
  py::array_t<int32_t> sampled(in.batch);
  int32_t* out = sampled.mutable_data();
  {
    py::gil_scoped_release release;
    engine.step(in, params.data(), out);
  }
  return std::move(sampled);
}

std::string repr(const SamplingParams& s) {
  std::ostringstream out;
  out << "SamplingParams(temperature=" << s.temperature << ", top_k=" << s.top_k
      << ", top_p=" << s.top_p << ", min_p=" << s.min_p << ", seed=" << s.seed << ")";
  return out.str();
}

}  // namespace

void bind_engine(py::module_& m) {
  py::class_<Df11Weight>(m, "Df11Weight")
      .def(py::init(&make_df11_weight), py::arg("lengths"), py::arg("bitstream"), py::arg("index"),
           py::arg("signmant"), py::arg("shape"),
           "A DF11 matrix for Engine: the four arrays of a slimrt.df11.Df11Tensor and its 2-D "
           "shape, validated here. The arrays are borrowed (kept alive), not copied.")
      .def_property_readonly("shape",
                             [](const Df11Weight& w) { return py::tuple(py::cast(w.shape)); })
      .def_property_readonly("numel", [](const Df11Weight& w) { return w.view.numel; });

  py::class_<SamplingParams>(m, "SamplingParams")
      .def(py::init([](float temperature, int32_t top_k, float top_p, float min_p, uint64_t seed) {
             SamplingParams s;
             s.temperature = temperature;
             s.top_k = top_k;
             s.top_p = top_p;
             s.min_p = min_p;
             s.seed = seed;
             s.validate();
             return s;
           }),
           py::arg("temperature") = 1.0f, py::arg("top_k") = 0, py::arg("top_p") = 1.0f,
           py::arg("min_p") = 0.0f, py::arg("seed") = 0)
      .def_readonly("temperature", &SamplingParams::temperature)
      .def_readonly("top_k", &SamplingParams::top_k)
      .def_readonly("top_p", &SamplingParams::top_p)
      .def_readonly("min_p", &SamplingParams::min_p)
      .def_readonly("seed", &SamplingParams::seed)
      .def("__repr__", &repr);

  py::class_<Engine>(m, "Engine")
      .def(py::init([](const py::dict& config, const py::dict& weights, const py::dict& options) {
             ConfigMap config_map;
             convert_config(config, "", config_map);
             const ModelConfig model = ModelConfig::parse(config_map);
             WeightArgs args;
             convert_weights(weights, args);
             const EngineOptions engine_options = convert_options(options);
             // Copying gigabytes of weights needs no Python: let other threads run meanwhile.
             py::gil_scoped_release release;
             return std::make_unique<Engine>(model, args.map, engine_options);
           }),
           py::arg("config"), py::arg("weights"), py::arg("options") = py::dict())
      .def("add_sequence", &Engine::add_sequence)
      .def("release_sequence", &Engine::release_sequence, py::arg("seq_id"))
      .def("sequence_length", &Engine::sequence_length, py::arg("seq_id"))
      .def("pages_needed", &Engine::pages_needed, py::arg("seq_id"), py::arg("new_tokens"),
           "KV pages the pool must supply for seq_id to grow by new_tokens tokens.")
      .def("step", &step, py::arg("seq_ids"), py::arg("tokens"), py::arg("counts"),
           py::arg("sampling") = py::none(),
           "Appends counts[b] tokens to sequence seq_ids[b] and runs the model: float32[B, "
           "vocab] logits of each sequence's last new token, or int32[B] sampled ids.")
      .def_property_readonly("free_pages", &Engine::free_pages)
      .def_property_readonly("total_pages", &Engine::total_pages)
      .def_property_readonly("page_size", &Engine::page_size)
      .def_property_readonly("vocab_size", &Engine::vocab_size)
      .def_property_readonly("max_position_embeddings", &Engine::max_position_embeddings)
      .def("memory", [](const Engine& e) {
        const MemoryUsage u = e.memory();
        py::dict d;
        d["weights"] = u.weights;
        d["df11_scratch"] = u.df11_scratch;
        d["kv_pool"] = u.kv_pool;
        d["activations"] = u.activations;
        d["total"] = u.total();
        return d;
      });
}

}  // namespace slimrt::bindings
