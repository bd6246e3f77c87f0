// _core.Model, _core.ModelOptions, _core.ModelConfig and _core.Df11Weight (docs/ENGINE_API.md):
// conversions of Python values to the C++ API and back, nothing more.
#include <pybind11/functional.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "buffer_span.h"
#include "check.h"
#include "options_dict.h"
#include "slimrt/df11.h"
#include "slimrt/model.h"

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

// A DF11 matrix for Model.from_tensors. Holding the buffer exports (not just references) keeps
// the four arrays from being resized or freed while the view points into them. The arrays are
// checked once, by the model (df11_validate), like every DF11 input.
struct Df11Weight {
  py::buffer_info lengths, bitstream, index, signmant;
  std::vector<int64_t> shape;
  Df11View view;
};

std::string type_name(const py::handle& object) {
  return py::str(py::type::handle_of(object).attr("__name__")).cast<std::string>();
}

py::buffer_info hold_u8(const py::buffer& object, const char* name) {
  as_span<const uint8_t>(object, name, false);  // names the argument in its errors
  return object.request();
}

py::buffer_info hold_u32(const py::buffer& object, const char* name) {
  as_span<const uint32_t>(object, name, false);
  return object.request();
}

std::unique_ptr<Df11Weight> make_df11_weight(const py::buffer& lengths, const py::buffer& bitstream,
                                             const py::buffer& index, const py::buffer& signmant,
                                             const std::vector<int64_t>& shape) {
  SLIMRT_CHECK(shape.size() == 2 && shape[0] > 0 && shape[1] > 0,
               "Df11Weight: shape must be 2-D with positive sizes");
  auto w = std::make_unique<Df11Weight>(Df11Weight{hold_u8(lengths, "lengths"),
                                                   hold_u32(bitstream, "bitstream"),
                                                   hold_u32(index, "index"),
                                                   hold_u8(signmant, "signmant"),
                                                   shape,
                                                   {}});
  Df11View& v = w->view;
  v.numel = shape[0] * shape[1];
  v.lengths = static_cast<const uint8_t*>(w->lengths.ptr);
  v.bitstream = static_cast<const uint32_t*>(w->bitstream.ptr);
  v.bitstream_words = w->bitstream.size;
  v.index = static_cast<const uint32_t*>(w->index.ptr);
  v.signmant = static_cast<const uint8_t*>(w->signmant.ptr);
  // Sizes the view itself cannot express; df11_validate checks the rest.
  SLIMRT_CHECK(w->lengths.size == df11::kSymbols,
               "Df11Weight: lengths has " << w->lengths.size << " entries, expected 256");
  SLIMRT_CHECK(w->index.size == v.groups() * df11::kIndexWords,
               "Df11Weight: index has " << w->index.size << " words, a [" << shape[0] << ", "
                                        << shape[1] << "] tensor needs "
                                        << v.groups() * df11::kIndexWords);
  SLIMRT_CHECK(w->signmant.size == v.numel,
               "Df11Weight: signmant has " << w->signmant.size << " bytes, a [" << shape[0] << ", "
                                           << shape[1] << "] tensor needs " << v.numel);
  return w;
}

// Keeps the arrays the WeightMap points into alive for the call.
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

// A metadata value as Python sees it: scalars as int/float/bool/str, numeric arrays as numpy
// arrays, string arrays as (bytes blob, uint64 offsets): one object, not one per string.
py::object metadata_value(const MetadataValue& v) {
  using Kind = MetadataValue::Kind;
  switch (v.kind) {
    case Kind::kUint:
      return py::int_(v.uint_value);
    case Kind::kInt:
      return py::int_(v.int_value);
    case Kind::kFloat:
      return py::float_(v.float_value);
    case Kind::kBool:
      return py::bool_(v.bool_value);
    case Kind::kString:
      return py::str(v.string_value);
    case Kind::kArray:
      if (!v.offsets.empty()) {
        return py::make_tuple(
            py::bytes(v.blob),
            py::array_t<uint64_t>(static_cast<py::ssize_t>(v.offsets.size()), v.offsets.data()));
      }
      if (!v.floats.empty()) {
        return py::array_t<double>(static_cast<py::ssize_t>(v.floats.size()), v.floats.data());
      }
      return py::array_t<int64_t>(static_cast<py::ssize_t>(v.ints.size()), v.ints.data());
  }
  return py::none();
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Df11Weight>(m, "Df11Weight")
      .def(py::init(&make_df11_weight), py::arg("lengths"), py::arg("bitstream"), py::arg("index"),
           py::arg("signmant"), py::arg("shape"),
           "A DF11 matrix for Model.from_tensors: the four arrays of a slimrt.df11.Df11Tensor and "
           "its 2-D shape. The arrays are borrowed (kept alive), not copied.")
      .def_property_readonly("shape",
                             [](const Df11Weight& w) { return py::tuple(py::cast(w.shape)); })
      .def_property_readonly("numel", [](const Df11Weight& w) { return w.view.numel; });

  py::class_<LoadProgress>(m, "LoadProgress")
      .def_property_readonly("stage", [](const LoadProgress& p) { return std::string(p.stage); })
      .def_readonly("done", &LoadProgress::done)
      .def_readonly("total", &LoadProgress::total);

  py::class_<ModelOptions> model_options(m, "ModelOptions");
  model_options.def(py::init<>())
      .def_readwrite("device", &ModelOptions::device)
      .def_readwrite("weights", &ModelOptions::weights)
      .def_readwrite("verify", &ModelOptions::verify)
      .def_readwrite("num_threads", &ModelOptions::num_threads)
      .def_readwrite("memory_limit_bytes", &ModelOptions::memory_limit_bytes)
      .def_readwrite("progress", &ModelOptions::progress)
      .def_readwrite("repeat_layers", &ModelOptions::repeat_layers);
  def_options_checks(model_options);
  m.attr("MODEL_OPTIONS") = bound_fields(m.attr("ModelOptions"));

  py::class_<RopeScaling>(m, "RopeScaling")
      .def_readonly("llama3", &RopeScaling::llama3)
      .def_readonly("longrope", &RopeScaling::longrope)
      .def_readonly("short_factor", &RopeScaling::short_factor)
      .def_readonly("long_factor", &RopeScaling::long_factor)
      .def_readonly("attention_factor", &RopeScaling::attention_factor)
      .def_readonly("factor", &RopeScaling::factor)
      .def_readonly("low_freq_factor", &RopeScaling::low_freq_factor)
      .def_readonly("high_freq_factor", &RopeScaling::high_freq_factor)
      .def_readonly("original_max_position_embeddings",
                    &RopeScaling::original_max_position_embeddings);

  py::class_<ModelConfig>(m, "ModelConfig")
      .def_static("from_json", &ModelConfig::from_json, py::arg("text"), py::arg("where"),
                  "config.json text, normalised (defaults, each architecture's rules) and checked.")
      .def_property_readonly("architecture",
                             [](const ModelConfig& c) { return architecture_name(c.architecture); })
      .def_readonly("vocab_size", &ModelConfig::vocab_size)
      .def_readonly("hidden_size", &ModelConfig::hidden_size)
      .def_readonly("intermediate_size", &ModelConfig::intermediate_size)
      .def_readonly("num_layers", &ModelConfig::num_layers)
      .def_readonly("num_heads", &ModelConfig::num_heads)
      .def_readonly("num_kv_heads", &ModelConfig::num_kv_heads)
      .def_readonly("head_dim", &ModelConfig::head_dim)
      .def_readonly("rms_norm_eps", &ModelConfig::rms_norm_eps)
      .def_readonly("rope_theta", &ModelConfig::rope_theta)
      .def_readonly("rope_scaling", &ModelConfig::rope_scaling)
      .def_readonly("max_position_embeddings", &ModelConfig::max_position_embeddings)
      .def_readonly("tie_word_embeddings", &ModelConfig::tie_word_embeddings)
      .def_readonly("attention_bias", &ModelConfig::attention_bias)
      .def_readonly("o_proj_bias", &ModelConfig::o_proj_bias)
      .def_readonly("qk_norm", &ModelConfig::qk_norm)
      .def_readonly("sliding_window", &ModelConfig::sliding_window)
      .def_readonly("fused_projections", &ModelConfig::fused_projections)
      .def_readonly("num_experts", &ModelConfig::num_experts)
      .def_readonly("experts_per_token", &ModelConfig::experts_per_token)
      .def_readonly("moe_intermediate_size", &ModelConfig::moe_intermediate_size)
      .def_readonly("norm_topk_prob", &ModelConfig::norm_topk_prob)
      .def_readonly("decoder_sparse_step", &ModelConfig::decoder_sparse_step)
      .def_readonly("mlp_only_layers", &ModelConfig::mlp_only_layers)
      .def("moe_layer", &ModelConfig::moe_layer, py::arg("layer"))
      .def_property_readonly("max_context", &ModelConfig::max_context);

  py::class_<Model, std::shared_ptr<Model>>(m, "Model")
      .def_static(
          "load",
          [](const std::string& path, const py::object& options) {
            const ModelOptions o = options_arg<ModelOptions>(options);
            py::gil_scoped_release release;  // progress callbacks take the GIL back
            return std::const_pointer_cast<Model>(Model::load(path, o));
          },
          py::arg("path"), py::arg("options") = py::none(),
          "Loads an HF or slimrt directory or a .gguf file. options: a ModelOptions or a dict of "
          "its fields (MODEL_OPTIONS).")
      .def_static(
          "from_tensors",
          [](const ModelConfig& config, const py::dict& weights, const py::object& options) {
            const ModelOptions o = options_arg<ModelOptions>(options);
            WeightArgs args;
            convert_weights(weights, args);
            py::gil_scoped_release release;  // copying gigabytes needs no Python
            return std::const_pointer_cast<Model>(Model::from_tensors(config, args.map, o));
          },
          py::arg("config"), py::arg("weights"), py::arg("options") = py::none(),
          "A model from tensors in memory: Hugging Face names -> numpy uint16 BF16 bits, float32 "
          "(1-D only) or Df11Weight.")
      .def_property_readonly("config", &Model::config)
      .def_property_readonly("device", &Model::device)
      .def_property_readonly("format", &Model::format)
      .def_property_readonly("summary", &Model::summary)
      .def_property_readonly("weight_bytes", &Model::weight_bytes)
      .def_property_readonly("df11_matrices", &Model::df11_matrices)
      .def("metadata",
           [](const Model& model) {
             py::dict out;
             for (const auto& [key, value] : model.metadata())
               out[py::str(key)] = metadata_value(value);
             return out;
           })
      .def(
          "matrix_bf16",
          [](const Model& model, const std::string& name) {
            std::vector<uint16_t> bits = model.matrix_bf16(name);
            return py::array_t<uint16_t>(static_cast<py::ssize_t>(bits.size()), bits.data());
          },
          py::arg("name"), "A matrix as the engine holds it, as BF16 bits (flat).")
      .def(
          "vector_f32",
          [](const Model& model, const std::string& name) {
            std::vector<float> values = model.vector_f32(name);
            return py::array_t<float>(static_cast<py::ssize_t>(values.size()), values.data());
          },
          py::arg("name"));
}

}  // namespace slimrt::bindings
