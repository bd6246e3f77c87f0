// Low-level entry points of the CUDA decode and prefill attention, for benchmarks and tests: device
// buffers travel as integer addresses (torch: tensor.data_ptr()) and every size is passed
// explicitly, so nothing here knows about torch. The caller keeps the tensors alive and on the
// right device.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "attention_cuda.h"

namespace py = pybind11;

namespace slimrt::bindings {
namespace {

template <class T>
T* ptr(uintptr_t address) {
  return reinterpret_cast<T*>(address);
}

}  // namespace

void bind_attention(py::module_& m) {
  m.def(
      "paged_decode_attention_plan",
      [](int64_t num_seqs, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t page_size,
         int64_t max_context, int32_t force_splits) {
        const PagedDecodePlan plan = paged_decode_attention_plan(
            {num_seqs, heads, kv_heads, head_dim, page_size}, max_context, force_splits);
        py::dict d;
        d["splits"] = plan.splits;
        d["chunk_tokens"] = plan.chunk_tokens;
        d["workspace_bytes"] = plan.workspace_bytes;
        return d;
      },
      py::arg("num_seqs"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"),
      py::arg("page_size"), py::arg("max_context"), py::arg("force_splits") = 0,
      "The split the CUDA decode attention would use on the current device: a dict of splits, "
      "chunk_tokens and workspace_bytes.");

  m.def(
      "paged_decode_attention_workspace_bytes",
      [](int64_t num_seqs, int64_t heads, int64_t kv_heads, int64_t head_dim, int64_t page_size,
         int64_t max_context, int32_t force_splits) {
        return paged_decode_attention_plan({num_seqs, heads, kv_heads, head_dim, page_size},
                                           max_context, force_splits)
            .workspace_bytes;
      },
      py::arg("num_seqs"), py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"),
      py::arg("page_size"), py::arg("max_context"), py::arg("force_splits") = 0,
      "Device bytes paged_decode_attention_cuda needs as workspace for these sizes (may be 0).");

  m.def(
      "paged_decode_attention_cuda",
      [](uintptr_t q, uintptr_t k_pages, uintptr_t v_pages, uintptr_t page_indptr,
         uintptr_t page_indices, uintptr_t context_lens, uintptr_t out, uintptr_t workspace,
         int64_t workspace_bytes, float scale, int64_t num_seqs, int64_t heads, int64_t kv_heads,
         int64_t head_dim, int64_t page_size, int64_t max_context, int32_t force_splits,
         uintptr_t stream) {
        const PagedDecodePlan plan = paged_decode_attention_plan(
            {num_seqs, heads, kv_heads, head_dim, page_size}, max_context, force_splits);
        PagedDecodeArgs args;
        args.q = ptr<const uint16_t>(q);
        args.k_pages = ptr<const uint16_t>(k_pages);
        args.v_pages = ptr<const uint16_t>(v_pages);
        args.page_indptr = ptr<const int32_t>(page_indptr);
        args.page_indices = ptr<const int32_t>(page_indices);
        args.context_lens = ptr<const int32_t>(context_lens);
        args.out = ptr<uint16_t>(out);
        args.scale = scale;
        paged_decode_attention_cuda(plan, args, ptr<void>(workspace), workspace_bytes,
                                    ptr<void>(stream));
      },
      py::arg("q"), py::arg("k_pages"), py::arg("v_pages"), py::arg("page_indptr"),
      py::arg("page_indices"), py::arg("context_lens"), py::arg("out"), py::arg("workspace"),
      py::arg("workspace_bytes"), py::arg("scale"), py::kw_only(), py::arg("num_seqs"),
      py::arg("heads"), py::arg("kv_heads"), py::arg("head_dim"), py::arg("page_size"),
      py::arg("max_context"), py::arg("force_splits") = 0, py::arg("stream") = 0,
      "Decode attention (one query token per sequence) over a paged BF16 KV cache, launched "
      "asynchronously on `stream` (a cudaStream_t as an int, 0 = default stream). Buffers are "
      "device addresses (tensor.data_ptr()): q and out [num_seqs][heads][head_dim] bfloat16, "
      "k_pages/v_pages [pages][page_size][kv_heads][head_dim] bfloat16, page_indptr "
      "[num_seqs + 1], page_indices and context_lens [num_seqs] int32, workspace of at least "
      "paged_decode_attention_workspace_bytes(...) bytes (0 = none needed). The plan is made on "
      "every call from max_context (>= every context_lens entry).");

  m.def(
      "paged_prefill_attention_cuda",
      [](uintptr_t q, uintptr_t k_pages, uintptr_t v_pages, uintptr_t q_indptr,
         uintptr_t page_indptr, uintptr_t page_indices, uintptr_t context_lens, uintptr_t out,
         float scale, int64_t num_seqs, int64_t heads, int64_t kv_heads, int64_t head_dim,
         int64_t page_size, int64_t max_query_tokens, uintptr_t stream) {
        PagedPrefillArgs args;
        args.q = ptr<const float>(q);
        args.k_pages = ptr<const uint16_t>(k_pages);
        args.v_pages = ptr<const uint16_t>(v_pages);
        args.q_indptr = ptr<const int32_t>(q_indptr);
        args.page_indptr = ptr<const int32_t>(page_indptr);
        args.page_indices = ptr<const int32_t>(page_indices);
        args.context_lens = ptr<const int32_t>(context_lens);
        args.out = ptr<uint16_t>(out);
        args.scale = scale;
        args.num_seqs = num_seqs;
        args.heads = heads;
        args.kv_heads = kv_heads;
        args.head_dim = head_dim;
        args.page_size = page_size;
        args.max_query_tokens = max_query_tokens;
        paged_prefill_attention_cuda(args, ptr<void>(stream));
      },
      py::arg("q"), py::arg("k_pages"), py::arg("v_pages"), py::arg("q_indptr"),
      py::arg("page_indptr"), py::arg("page_indices"), py::arg("context_lens"), py::arg("out"),
      py::arg("scale"), py::kw_only(), py::arg("num_seqs"), py::arg("heads"), py::arg("kv_heads"),
      py::arg("head_dim"), py::arg("page_size"), py::arg("max_query_tokens"), py::arg("stream") = 0,
      "Causal prefill attention (many query tokens per sequence) over a paged BF16 KV cache on "
      "tensor cores, launched asynchronously on `stream` (a cudaStream_t as an int, 0 = default "
      "stream). Buffers are device addresses (tensor.data_ptr()): q [num_tokens][heads][head_dim] "
      "float32, out the same shape bfloat16, k_pages/v_pages [pages][page_size][kv_heads]"
      "[head_dim] bfloat16, q_indptr and page_indptr [num_seqs + 1], page_indices and "
      "context_lens [num_seqs] int32. Sequence s's i-th of n query tokens sits at position "
      "context_lens[s] - n + i and attends to positions [0, that position]; max_query_tokens "
      "(>= every n) sizes the grid.");
}

}  // namespace slimrt::bindings
