// _core's model-file parsers: safetensors headers, DF11 containers and GGUF files, from any
// Python buffer (an mmap, bytes), and GGUF dequantization. Conversions only; the rules live in
// cpp/src/safetensors.cpp, df11_container.cpp, gguf.cpp and gguf_dequantize.cpp.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "buffer_span.h"
#include "check.h"
#include "df11_container.h"
#include "gguf.h"
#include "gguf_dequantize.h"
#include "safetensors.h"

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

// The bytes of a buffer, exported for as long as this lives: the GIL is released while they
// are parsed, and the export keeps another thread from closing or resizing the buffer.
struct HeldBytes {
  py::buffer_info info;
  const uint8_t* data;
  size_t size;

  explicit HeldBytes(const py::buffer& buffer) {
    const auto span = as_span<const uint8_t>(buffer, "buffer", false);
    info = buffer.request();
    data = span.data;
    size = static_cast<size_t>(span.size);
  }
};

// parse(data, size) over the buffer's bytes, with the GIL released.
template <class Parse>
auto parse_bytes(const py::buffer& buffer, const Parse& parse) {
  HeldBytes bytes(buffer);
  py::gil_scoped_release release;  // taken again before `bytes` gives its export back
  return parse(bytes.data, bytes.size);
}

template <class T>
py::tuple int_tuple(const std::vector<T>& values) {
  py::tuple out(values.size());
  for (size_t i = 0; i < values.size(); ++i) out[i] = values[i];
  return out;
}

// A str, or the bytes themselves where they are not UTF-8 (GGUF does not promise it for
// values; the caller decides).
py::object text(std::string_view s) {
  PyObject* str = PyUnicode_DecodeUTF8(s.data(), static_cast<Py_ssize_t>(s.size()), nullptr);
  if (str != nullptr) return py::reinterpret_steal<py::object>(str);
  PyErr_Clear();
  return py::bytes(s.data(), s.size());
}

// Elements [first, last) of a GGUF array: numbers as a numpy array of the element type,
// strings as a list.
py::object gguf_elements(const GgufValue& v, uint64_t first, uint64_t last) {
  const auto n = static_cast<py::ssize_t>(last - first);
  switch (v.type) {
    case gguf_type::kString: {
      py::list out(n);
      for (uint64_t i = first; i < last; ++i) out[i - first] = text(v.string_at(i));
      return std::move(out);
    }
    case gguf_type::kFloat32:
    case gguf_type::kFloat64: {
      py::array_t<double> wide(n, v.floats.data() + first);
      return wide.attr("astype")(v.type == gguf_type::kFloat32 ? "float32" : "float64");
    }
    case gguf_type::kArray:  // an empty array of arrays: no inner type is known
      return py::list();
  }
  static const char* const kDtypes[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                        nullptr, "bool", nullptr,  nullptr, "uint64", "int64"};
  py::array_t<int64_t> wide(n, v.ints.data() + first);
  return wide.attr("astype")(kDtypes[v.type]);
}

py::object gguf_value(const std::string& key, const GgufValue& v) {
  switch (v.kind) {
    case GgufValue::Kind::kUint:
      return py::int_(v.uint_value);
    case GgufValue::Kind::kInt:
      return py::int_(v.int_value);
    case GgufValue::Kind::kFloat:
      return py::float_(v.float_value);
    case GgufValue::Kind::kBool:
      return py::bool_(v.bool_value);
    case GgufValue::Kind::kString:
      return text(v.string_value);
    case GgufValue::Kind::kArray:
      break;
  }
  if (!v.rows.empty()) {
    py::list rows(v.rows.size() - 1);
    for (size_t i = 0; i + 1 < v.rows.size(); ++i) {
      rows[i] = gguf_elements(v, v.rows[i], v.rows[i + 1]);
    }
    return std::move(rows);
  }
  // A vocabulary as 49k Python strings costs more than the rest of the metadata together.
  if (v.type == gguf_type::kString &&
      (key == "tokenizer.ggml.tokens" || key == "tokenizer.ggml.merges")) {
    return py::make_tuple(py::bytes(v.blob),
                          py::array_t<uint64_t>(v.offsets.size(), v.offsets.data()));
  }
  return gguf_elements(v, 0, v.count);
}

// Dequantizes into a new numpy array of `count` elements after checking the buffer holds them.
template <class T, class Convert>
py::array_t<T> dequantize(uint32_t type, const py::buffer& buffer, int64_t count, Convert convert) {
  HeldBytes src(buffer);
  if (const GgmlTypeInfo* info = ggml_type_info(type);
      info && count >= 0 && count % info->block_size == 0) {
    const uint64_t needed = static_cast<uint64_t>(count / info->block_size) * info->type_size;
    SLIMRT_CHECK(needed <= src.size, "buffer: " << count << " elements of " << info->name
                                                << " need " << needed << " bytes, got "
                                                << src.size);
  }
  py::array_t<T> out(count >= 0 ? count : 0);
  T* dst = out.mutable_data();
  py::gil_scoped_release release;
  convert(type, src.data, count, dst);
  return out;
}

}  // namespace

void bind_model_files(py::module_& m) {
  m.def(
      "parse_safetensors_header",
      [](const py::buffer& buffer, const std::string& where) {
        const SafetensorsHeader header = parse_bytes(buffer, [&](const uint8_t* data, size_t size) {
          return parse_safetensors(data, size, where);
        });
        py::list tensors;
        for (const SafetensorsTensor& t : header.tensors) {
          tensors.append(py::make_tuple(t.name, t.dtype, int_tuple(t.shape), t.begin, t.end));
        }
        py::dict metadata;
        for (const auto& [key, value] : header.metadata) metadata[py::str(key)] = value;
        return py::make_tuple(header.data_offset, tensors, metadata);
      },
      py::arg("buffer"), py::arg("where"),
      "Validates a safetensors file given as a buffer of its bytes. Returns (data_offset, "
      "[(name, dtype, shape, begin, end)] in data order, __metadata__ dict); begin and end are "
      "absolute byte offsets. Errors are _core.Error with category 'model file'.");

  m.def(
      "read_df11_tensors",
      [](const py::buffer& buffer, const std::string& where) {
        const auto entries = parse_bytes(buffer, [&](const uint8_t* data, size_t size) {
          return read_df11_tensors(parse_safetensors(data, size, where), data, where);
        });
        py::list out;
        for (const Df11Entry& e : entries) {
          out.append(py::make_tuple(e.name, int_tuple(e.shape), e.crc32));
        }
        return out;
      },
      py::arg("buffer"), py::arg("where"),
      "The DF11 tensors of a safetensors file given as a buffer of its bytes, checked as "
      "docs/FORMAT.md says (description, arrays, df11_validate): [(name, shape, crc32)] in the "
      "order their first array is stored. Their arrays are NAME.df11.lengths, .bitstream, .index "
      "and .signmant.");

  m.def(
      "parse_gguf",
      [](const py::buffer& buffer, const std::string& where) {
        const GgufFile file = parse_bytes(buffer, [&](const uint8_t* data, size_t size) {
          return parse_gguf(data, size, where);
        });
        py::list tensors;
        for (const GgufTensorInfo& t : file.tensors) {
          tensors.append(py::make_tuple(t.name, int_tuple(t.dims), t.type, t.begin, t.end));
        }
        py::dict metadata, types;
        for (const auto& [key, value] : file.metadata) {
          metadata[py::str(key)] = gguf_value(key, value);
          types[py::str(key)] = value.kind == GgufValue::Kind::kArray
                                    ? py::object(py::make_tuple(gguf_type::kArray, value.type))
                                    : py::object(py::int_(value.type));
        }
        py::dict out;
        out["version"] = file.version;
        out["alignment"] = file.alignment;
        out["data_offset"] = file.data_offset;
        out["tensors"] = tensors;
        out["metadata"] = metadata;
        out["types"] = types;
        return out;
      },
      py::arg("buffer"), py::arg("where"),
      "Validates a GGUF file given as a buffer of its bytes. Returns a dict: version, "
      "alignment, data_offset, tensors [(name, dims in GGUF order, ggml type id, begin, end)] in "
      "file order with absolute byte offsets, metadata {key: value} and types {key: GGUF value "
      "type id, or (9, element type id) for arrays}. Values: int, float, bool, str (bytes where "
      "not UTF-8); numeric arrays as numpy arrays of their element type, string arrays as lists, "
      "except tokenizer.ggml.tokens and tokenizer.ggml.merges, which come as (blob: bytes, "
      "offsets: uint64 numpy array), element i being blob[offsets[i]:offsets[i + 1]] (decode in "
      "Python: 49k str objects are the bulk of the cost); an array of arrays as a list of them.");

  m.def("ggml_type_name", &ggml_type_name, py::arg("type"));
  m.def("gguf_value_type_name", &gguf_value_type_name, py::arg("type"),
        "The name of a GGUF metadata value type id: \"UINT32\", \"STRING\", ...");
  m.def(
      "ggml_type_info",
      [](uint32_t type) -> py::object {
        const GgmlTypeInfo* info = ggml_type_info(type);
        if (info == nullptr) return py::none();
        return py::make_tuple(info->name, info->block_size, info->type_size);
      },
      py::arg("type"), "(name, block_size, type_size) of a ggml type id, or None if unknown.");
  m.def("gguf_dequantize_supported", &gguf_dequantize_supported, py::arg("type"));
  m.def(
      "gguf_dequantize_f32",
      [](uint32_t type, const py::buffer& buffer, int64_t count) {
        return dequantize<float>(type, buffer, count, gguf_dequantize_f32);
      },
      py::arg("type"), py::arg("buffer"), py::arg("count"),
      "float32 values of `count` elements of ggml type `type` stored in `buffer` (bytes), as "
      "gguf.quants.dequantize computes them.");
  m.def(
      "gguf_dequantize_bf16",
      [](uint32_t type, const py::buffer& buffer, int64_t count) {
        return dequantize<uint16_t>(type, buffer, count, gguf_dequantize_bf16);
      },
      py::arg("type"), py::arg("buffer"), py::arg("count"),
      "The same values rounded to BF16 (nearest even), as uint16 bit patterns.");
}

}  // namespace slimrt::bindings
