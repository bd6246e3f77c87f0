// _core.Engine, _core.EngineOptions and _core.SamplingParams (docs/ENGINE_API.md): conversions of
// Python values to the C++ API and back, nothing more.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "check.h"
#include "options_dict.h"
#include "slimrt/engine.h"

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

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
                const py::handle& counts, const py::object& sampling,
                const py::object& top_logprobs) {
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
    SLIMRT_CHECK(top_logprobs.is_none(), "step: top_logprobs without sampling");
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
  if (top_logprobs.is_none()) {
    py::gil_scoped_release release;
    engine.step(in, params.data(), out);
    return std::move(sampled);
  }
  StepLogprobs logprobs;
  logprobs.top_n = top_logprobs.cast<int32_t>();
  // Shapes of a valid top_n; engine.step refuses the others before writing anything.
  const int64_t n = std::max(logprobs.top_n, 0);
  py::array_t<float> sampled_logprobs(in.batch);
  py::array_t<int32_t> top_ids({in.batch, n});
  py::array_t<float> top_values({in.batch, n});
  logprobs.sampled = sampled_logprobs.mutable_data();
  logprobs.top_ids = top_ids.mutable_data();
  logprobs.top_logprobs = top_values.mutable_data();
  {
    py::gil_scoped_release release;
    engine.step(in, params.data(), out, logprobs);
  }
  return py::make_tuple(sampled, sampled_logprobs, top_ids, top_values);
}

std::string repr(const SamplingParams& s) {
  std::ostringstream out;
  out << "SamplingParams(temperature=" << s.temperature << ", top_k=" << s.top_k
      << ", top_p=" << s.top_p << ", min_p=" << s.min_p << ", seed=" << s.seed << ")";
  return out.str();
}

}  // namespace

void bind_engine(py::module_& m) {
  py::class_<SamplingParams>(m, "SamplingParams")
      .def(py::init([](const py::kwargs& fields) {
             py::object target = py::cast(SamplingParams{});
             set_fields(target, fields);
             SamplingParams s = target.cast<SamplingParams>();
             s.validate();
             return s;
           }),
           "SamplingParams(**fields): the fields below, checked (validate()).")
      .def_readwrite("temperature", &SamplingParams::temperature)
      .def_readwrite("top_k", &SamplingParams::top_k)
      .def_readwrite("top_p", &SamplingParams::top_p)
      .def_readwrite("min_p", &SamplingParams::min_p)
      .def_readwrite("seed", &SamplingParams::seed)
      .def("validate", &SamplingParams::validate)
      .def("__repr__", &repr);

  py::class_<EngineOptions> engine_options(m, "EngineOptions");
  engine_options.def(py::init<>())
      .def_readwrite("max_batch", &EngineOptions::max_batch)
      .def_readwrite("kv_tokens", &EngineOptions::kv_tokens)
      .def_readwrite("page_size", &EngineOptions::page_size)
      .def_readwrite("max_step_tokens", &EngineOptions::max_step_tokens)
      .def_readwrite("kv_dtype", &EngineOptions::kv_dtype)
      .def_readwrite("memory_limit_bytes", &EngineOptions::memory_limit_bytes)
      .def_readwrite("kv_compression", &EngineOptions::kv_compression)
      .def_readwrite("k_sparsity", &EngineOptions::k_sparsity)
      .def_readwrite("v_sparsity", &EngineOptions::v_sparsity)
      .def_readwrite("kv_window", &EngineOptions::kv_window)
      .def_readwrite("enable_prefix_caching", &EngineOptions::enable_prefix_caching);
  def_options_checks(engine_options);
  m.attr("ENGINE_OPTIONS") = bound_fields(m.attr("EngineOptions"));

  py::class_<Engine>(m, "Engine")
      .def(py::init([](const std::shared_ptr<Model>& model, const py::object& options) {
             const EngineOptions o = options_arg<EngineOptions>(options);
             py::gil_scoped_release release;
             return std::make_unique<Engine>(model, o);
           }),
           py::arg("model"), py::arg("options") = py::none(),
           "An engine (KV pool, sequences, steps) on `model`. options: an EngineOptions or a dict "
           "of its fields (ENGINE_OPTIONS).")
      .def("add_sequence", &Engine::add_sequence)
      .def("release_sequence", &Engine::release_sequence, py::arg("seq_id"))
      .def("sequence_length", &Engine::sequence_length, py::arg("seq_id"))
      .def("pages_needed", &Engine::pages_needed, py::arg("seq_id"), py::arg("new_tokens"),
           "KV pages the pool must supply for seq_id to grow by new_tokens tokens.")
      .def(
          "reuse_prefix",
          [](Engine& e, int64_t seq_id, const py::handle& tokens) {
            const auto ids = int_array<int32_t>(tokens, "tokens");
            return e.reuse_prefix(seq_id, ids.data(), ids.size());
          },
          py::arg("seq_id"), py::arg("tokens"),
          "Gives the empty sequence seq_id the cached KV pages of the longest whole-page prefix "
          "of tokens short of the last token; returns the tokens it holds now (0 without prefix "
          "caching or a hit): its first step feeds tokens from there.")
      .def("sequence_pages", &Engine::sequence_pages, py::arg("seq_id"),
           "For tests: the KV page ids of seq_id, in order.")
      .def("page_crc32", &Engine::page_crc32, py::arg("page"),
           "For tests: the CRC-32 of a KV page's bytes over every layer.")
      .def("step", &step, py::arg("seq_ids"), py::arg("tokens"), py::arg("counts"),
           py::arg("sampling") = py::none(), py::arg("top_logprobs") = py::none(),
           "Appends counts[b] tokens to sequence seq_ids[b] and runs the model: float32[B, "
           "vocab] logits of each sequence's last new token, or int32[B] sampled ids. With "
           "top_logprobs n (0..20) as well: (ids, float32[B] their log-probabilities, int32[B, n] "
           "the n most likely ids, float32[B, n] theirs), of log_softmax(logits) before any "
           "sampling parameter.")
      .def_property_readonly("free_pages", &Engine::free_pages)
      .def_property_readonly("total_pages", &Engine::total_pages)
      .def_property_readonly("page_size", &Engine::page_size)
      .def_property_readonly("kv_tokens", &Engine::kv_tokens)
      .def_property_readonly("vocab_size", &Engine::vocab_size)
      .def_property_readonly("max_position_embeddings", &Engine::max_position_embeddings)
      .def("memory",
           [](const Engine& e) {
             const MemoryUsage u = e.memory();
             py::dict d;
             d["weights"] = u.weights;
             d["df11_scratch"] = u.df11_scratch;
             d["kv_pool"] = u.kv_pool;
             d["activations"] = u.activations;
             d["total"] = u.total();
             return d;
           })
      .def(
          "kv_usage",
          [](const Engine& e) {
            const KvUsage u = e.kv_usage();
            py::dict d;
            d["page_size"] = u.page_size;
            d["dense_pages"] = u.dense_pages;
            d["dense_pages_used"] = u.dense_pages_used;
            d["compressed_pages"] = u.compressed_pages;
            d["compressed_pages_used"] = u.compressed_pages_used;
            d["dense_page_bytes"] = u.dense_page_bytes;
            d["compressed_page_bytes"] = u.compressed_page_bytes;
            d["tokens"] = u.tokens;
            d["peak_dense_pages_used"] = u.peak_dense_pages_used;
            d["peak_compressed_pages_used"] = u.peak_compressed_pages_used;
            d["peak_tokens"] = u.peak_tokens;
            d["prefix_cached_pages"] = u.prefix_cached_pages;
            d["prefix_cached_free_pages"] = u.prefix_cached_free_pages;
            d["prefix_evicted_pages"] = u.prefix_evicted_pages;
            d["prefix_query_tokens"] = u.prefix_query_tokens;
            d["prefix_hit_tokens"] = u.prefix_hit_tokens;
            return d;
          },
          "The KV pool's pages of each kind (in all, in use, bytes each over all layers), the "
          "tokens cached, and the prefix cache's pages and hits.");
}

}  // namespace slimrt::bindings
