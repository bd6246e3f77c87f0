#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <memory>
#include <string>

#include "buffer_span.h"
#include "check.h"
#include "crc32.h"
#include "df11_cuda.h"
#include "dlpack_abi.h"
#include "slimrt/df11.h"

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

// A numpy array over memory the shared tensor owns: no copy of the compressed arrays.
template <class T>
py::array_t<T> share(const std::shared_ptr<Df11Tensor>& owner, const T* data,
                     std::vector<py::ssize_t> shape) {
  auto* keep = new std::shared_ptr<Df11Tensor>(owner);
  py::capsule base(keep, [](void* p) { delete static_cast<std::shared_ptr<Df11Tensor>*>(p); });
  return py::array_t<T>(shape, data, base);
}

// Borrowed views of the four arrays a Python caller passes, checked against numel.
struct ViewArgs {
  Df11View view;
  ViewArgs(const py::buffer& lengths, const py::buffer& bitstream, const py::buffer& index,
           const py::buffer& signmant, int64_t numel) {
    const auto l = as_span<const uint8_t>(lengths, "lengths", false);
    const auto b = as_span<const uint32_t>(bitstream, "bitstream", false);
    const auto i = as_span<const uint32_t>(index, "index", false);
    const auto s = as_span<const uint8_t>(signmant, "signmant", false);
    view.numel = numel;
    SLIMRT_CHECK(numel >= 0, "numel must be >= 0, got " << numel);
    SLIMRT_CHECK(l.size == df11::kSymbols, "lengths: expected 256 entries, got " << l.size);
    SLIMRT_CHECK(i.size == view.groups() * df11::kIndexWords,
                 "index: expected " << view.groups() * df11::kIndexWords << " words for " << numel
                                    << " elements, got " << i.size);
    SLIMRT_CHECK(s.size == numel, "signmant: expected " << numel << " bytes, got " << s.size);
    view.lengths = l.data;
    view.bitstream = b.data;
    view.bitstream_words = b.size;
    view.index = i.data;
    view.signmant = s.data;
  }
};

// The device pointer of a CUDA tensor given through DLPack, checked to hold numel 2-byte values.
uint16_t* cuda_output(const py::object& out, int64_t numel) {
  SLIMRT_CHECK(py::hasattr(out, "__dlpack__"), "out: expected a CUDA tensor supporting DLPack");
  py::capsule capsule = out.attr("__dlpack__")();
  SLIMRT_CHECK(std::string(capsule.name()) == "dltensor", "out: not a fresh DLPack capsule");
  auto* managed = capsule.get_pointer<DlManagedTensor>();
  // Ownership moves to us: rename so the capsule's destructor leaves it alone, delete at exit.
  PyCapsule_SetName(capsule.ptr(), "used_dltensor");
  std::unique_ptr<DlManagedTensor, void (*)(DlManagedTensor*)> guard(managed,
                                                                     [](DlManagedTensor* m) {
                                                                       if (m->deleter)
                                                                         m->deleter(m);
                                                                     });
  const DlTensor& t = managed->dl_tensor;
  SLIMRT_CHECK(t.device.device_type == kDlCuda, "out: tensor is not on a CUDA device");
  SLIMRT_CHECK(t.dtype.bits == 16 && t.dtype.lanes == 1,
               "out: expected a 16-bit dtype (bfloat16), got " << int(t.dtype.bits) << " bits");
  int64_t count = 1, expected_stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    SLIMRT_CHECK(t.strides == nullptr || t.shape[d] <= 1 || t.strides[d] == expected_stride,
                 "out: tensor must be contiguous");
    expected_stride *= t.shape[d];
    count *= t.shape[d];
  }
  SLIMRT_CHECK(count == numel, "out: expected " << numel << " elements, got " << count);
  return reinterpret_cast<uint16_t*>(static_cast<char*>(t.data) + t.byte_offset);
}

}  // namespace

void bind_df11(py::module_& m) {
  m.attr("DF11_VERSION") = df11::kVersion;
  m.attr("DF11_LANES") = df11::kLanes;
  m.attr("DF11_LANE_ELEMENTS") = df11::kLaneElements;
  m.attr("DF11_MAX_CODE_LENGTH") = df11::kMaxCodeLength;

  m.def(
      "df11_compress",
      [](const py::buffer& bits, int max_code_length, int num_threads) {
        const auto in = as_span<const uint16_t>(bits, "bits", false);
        Df11CompressOptions options;
        options.max_code_length = max_code_length;
        options.num_threads = num_threads;
        std::shared_ptr<Df11Tensor> t;
        {
          py::gil_scoped_release release;
          t = std::make_shared<Df11Tensor>(df11_compress(in.data, in.size, options));
        }
        py::dict result;
        result["lengths"] = share<uint8_t>(t, t->lengths.data(), {df11::kSymbols});
        result["bitstream"] = share<uint32_t>(t, t->bitstream.data(),
                                              {static_cast<py::ssize_t>(t->bitstream.size())});
        result["index"] = share<uint32_t>(
            t, t->index.data(), {static_cast<py::ssize_t>(t->view().groups()), df11::kIndexWords});
        result["signmant"] = share<uint8_t>(t, t->signmant.data(), {t->numel});
        result["crc32"] = t->crc32;
        result["numel"] = t->numel;
        return result;
      },
      py::arg("bits"), py::arg("max_code_length") = df11::kMaxCodeLength,
      py::arg("num_threads") = 0,
      "Compresses BF16 bit patterns (uint16, C-contiguous). Returns the four DF11 arrays, "
      "crc32 and numel.");

  m.def(
      "df11_validate",
      [](const py::buffer& lengths, const py::buffer& bitstream, const py::buffer& index,
         const py::buffer& signmant, int64_t numel) {
        ViewArgs args(lengths, bitstream, index, signmant, numel);
        df11_validate(args.view);
      },
      py::arg("lengths"), py::arg("bitstream"), py::arg("index"), py::arg("signmant"),
      py::arg("numel"));

  m.def(
      "df11_decode_cpu",
      [](const py::buffer& lengths, const py::buffer& bitstream, const py::buffer& index,
         const py::buffer& signmant, int64_t numel, const py::buffer& out, int num_threads) {
        ViewArgs args(lengths, bitstream, index, signmant, numel);
        const auto dst = as_span<uint16_t>(out, "out", true);
        SLIMRT_CHECK(dst.size == numel, "out: expected " << numel << " elements, got " << dst.size);
        py::gil_scoped_release release;
        df11_validate(args.view);
        df11_decode_cpu(args.view, dst.data, num_threads);
      },
      py::arg("lengths"), py::arg("bitstream"), py::arg("index"), py::arg("signmant"),
      py::arg("numel"), py::arg("out"), py::arg("num_threads") = 0);

  m.def(
      "crc32",
      [](const py::buffer& data, int num_threads) {
        const auto bytes = as_span<const uint8_t>(data, "data", false);
        py::gil_scoped_release release;
        return crc32(bytes.data, static_cast<size_t>(bytes.size), num_threads);
      },
      py::arg("data"), py::arg("num_threads") = 0,
      "CRC-32 as zlib computes it, multithreaded for large buffers. Takes bytes-like buffers "
      "of 1-byte elements (use memoryview(a).cast('B') or a.view(np.uint8) for others).");

  py::class_<Df11DeviceTensor>(m, "Df11DeviceTensor")
      .def(py::init([](const py::buffer& lengths, const py::buffer& bitstream,
                       const py::buffer& index, const py::buffer& signmant, int64_t numel) {
             ViewArgs args(lengths, bitstream, index, signmant, numel);
             return std::make_unique<Df11DeviceTensor>(args.view);
           }),
           py::arg("lengths"), py::arg("bitstream"), py::arg("index"), py::arg("signmant"),
           py::arg("numel"))
      .def(
          "decode_into",
          [](const Df11DeviceTensor& self, const py::object& out, uintptr_t stream) {
            uint16_t* dst = cuda_output(out, self.numel());
            self.decode_into(dst, reinterpret_cast<void*>(stream));
          },
          py::arg("out"), py::arg("stream") = 0,
          "Decodes into a contiguous 16-bit CUDA tensor (DLPack), asynchronously on `stream`.")
      .def(
          "decode_into_ptr",
          [](const Df11DeviceTensor& self, uintptr_t out, uintptr_t stream) {
            SLIMRT_CHECK(out != 0, "out: null device pointer");
            self.decode_into(reinterpret_cast<uint16_t*>(out), reinterpret_cast<void*>(stream));
          },
          py::arg("out"), py::arg("stream") = 0)
      .def_property_readonly("numel", &Df11DeviceTensor::numel)
      .def_property_readonly("device_bytes", &Df11DeviceTensor::device_bytes);
}

}  // namespace slimrt::bindings
