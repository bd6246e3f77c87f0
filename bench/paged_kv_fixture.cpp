#include "paged_kv_fixture.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "bench.h"
#include "check.h"
#include "cpu/bf16.h"
#include "cpu/kernels.h"
#include "kv_record.h"
#include "ops/matmul_bf16.h"
#include "ops/paged_attention.h"

namespace slimrt_bench {

const AttentionShape kAttentionShapes[2] = {{"smollm2", 9, 3, 64}, {"llama8b", 32, 8, 128}};

std::string PagedCase::name() const {
  return std::string(shape.name) + " " + std::to_string(shape.heads) + "q/" +
         std::to_string(shape.kv_heads) + "kv d" + std::to_string(shape.head_dim) + " b" +
         std::to_string(batch) + " ctx " + std::to_string(context);
}

namespace {

// Distinct pages at most (K and V of one layer): past that, block tables reuse the pool's pages
// in turn, so that a GPU's L2 (50 MB on an H200) holds a few percent of it and the bytes a step
// reads still come from memory.
constexpr int64_t kPoolBytes = int64_t{2} << 30;

}  // namespace

struct PagedKvFixture::State {
  PagedCase c;
  slimrt::Device& device;
  DeviceMemory memory;
  slimrt::PagedKv kv;  // dense pages; records set per call
  void* k_records = nullptr;
  void* v_records = nullptr;
  slimrt::PagedBatch batch;
  const int32_t* dense_table = nullptr;
  const int32_t* mixed_table = nullptr;
  const float* q = nullptr;
  float* out = nullptr;
  void* input_scratch = nullptr;
  slimrt::AttentionScratchPlan plan;
  void* scratch = nullptr;
  double compressed_tokens = 0;  // per sequence
  int64_t record_bytes = 0;

  State(const PagedCase& c_, slimrt::Device& d) : c(c_), device(d), memory{d, {}} {}
};

PagedKvFixture::PagedKvFixture(const PagedCase& c, slimrt::Device& device, slimrt::ThreadPool& pool)
    : state_(std::make_unique<State>(c, device)) {
  SLIMRT_CHECK(c.query_tokens >= 1 && c.query_tokens <= c.context,
               "query_tokens " << c.query_tokens << " must be in [1, context " << c.context << "]");
  State& s = *state_;
  const int64_t H = c.shape.kv_heads, D = c.shape.head_dim, P = c.page_size;
  const int64_t pages_per_seq = (c.context + P - 1) / P;
  const int64_t row = H * D;
  const int64_t table_pages = c.batch * pages_per_seq;
  const int64_t dense_pages =
      std::min(table_pages, std::max<int64_t>(1, kPoolBytes / (P * row * 4)));
  std::vector<uint16_t> k(dense_pages * P * row), v(k.size());
  uint64_t state = 42;
  // Uniform in [-1, 1): the magnitudes of trained K/V differ, but the kernels' cost does not
  // depend on the values, only on the kept count.
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = slimrt::cpu::f32_to_bf16(uniform(state));
    v[i] = slimrt::cpu::f32_to_bf16(uniform(state));
  }
  const int64_t num_tokens = c.batch * c.query_tokens;
  std::vector<float> q(num_tokens * c.shape.heads * D);
  for (float& x : q) x = uniform(state);

  slimrt::PagedKv host_kv;
  host_kv.k_pages = k.data();
  host_kv.v_pages = v.data();
  host_kv.page_size = P;
  host_kv.kv_heads = H;
  host_kv.head_dim = D;
  // Every pool page is also compressed, as compressed page dense_pages + id.
  const int64_t compressed_per_seq =
      c.compress ? std::max<int64_t>(0, c.context - c.window) / P : 0;
  std::vector<uint8_t> k_records, v_records;
  if (c.compress) {
    const int64_t kept = slimrt::kv_kept_count(D, c.sparsity);
    s.record_bytes = slimrt::kv_record_bytes(D, kept);
    k_records.resize(dense_pages * P * H * s.record_bytes + slimrt::kKvRecordTailPad);
    v_records.resize(k_records.size());
    std::vector<int32_t> src(dense_pages), dst(dense_pages);
    std::iota(src.begin(), src.end(), 0);
    std::iota(dst.begin(), dst.end(), static_cast<int32_t>(dense_pages));
    host_kv.k_records = k_records.data();
    host_kv.v_records = v_records.data();
    host_kv.dense_pages = dense_pages;
    host_kv.k_kept = host_kv.v_kept = kept;
    slimrt::cpu::kv_compress(host_kv, src.data(), dst.data(), dense_pages, pool);
  }
  s.compressed_tokens = static_cast<double>(compressed_per_seq * P);

  std::vector<int32_t> q_indptr(c.batch + 1), page_indptr(c.batch + 1);
  std::vector<int32_t> context_lens(c.batch, static_cast<int32_t>(c.context));
  std::vector<int32_t> dense_indices(table_pages), mixed_indices(table_pages);
  for (int64_t seq = 0; seq <= c.batch; ++seq) {
    q_indptr[seq] = static_cast<int32_t>(seq * c.query_tokens);
    page_indptr[seq] = static_cast<int32_t>(seq * pages_per_seq);
  }
  // Pages in random order (as an engine's pool hands them out): a regular stride between
  // sequences would make concurrent blocks contend for the same memory channels.
  std::vector<int64_t> order(dense_pages);
  std::iota(order.begin(), order.end(), int64_t{0});
  for (int64_t i = dense_pages - 1; i > 0; --i) {
    std::swap(order[i], order[splitmix64(state) % static_cast<uint64_t>(i + 1)]);
  }
  for (int64_t seq = 0; seq < c.batch; ++seq) {
    for (int64_t i = 0; i < pages_per_seq; ++i) {
      const int64_t at = seq * pages_per_seq + i;
      const auto id = static_cast<int32_t>(order[at % dense_pages]);
      dense_indices[at] = id;
      mixed_indices[at] = i < compressed_per_seq ? static_cast<int32_t>(dense_pages + id) : id;
    }
  }

  s.kv = host_kv;
  s.kv.k_pages = s.memory.copy(k);
  s.kv.v_pages = s.memory.copy(v);
  s.kv.k_records = s.kv.v_records = nullptr;
  if (c.compress) {
    s.k_records = s.memory.copy(k_records);
    s.v_records = s.memory.copy(v_records);
  }
  s.q = s.memory.copy(q);
  s.out = static_cast<float*>(s.memory.allocate(static_cast<int64_t>(q.size()) * 4));
  s.input_scratch =
      s.memory.allocate(slimrt::ops::matmul_input_bytes(device, num_tokens, c.shape.heads * D));
  s.batch.q_indptr = s.memory.copy(q_indptr);
  s.batch.page_indptr = s.memory.copy(page_indptr);
  s.batch.context_lens = s.memory.copy(context_lens);
  s.batch.num_seqs = c.batch;
  s.batch.num_tokens = num_tokens;
  s.batch.max_query_tokens = c.query_tokens;
  s.batch.max_context = c.context;
  s.dense_table = s.memory.copy(dense_indices);
  s.mixed_table = s.memory.copy(mixed_indices);
  // The engine's scratch plan (made for the dense shape, as an engine makes it at load).
  s.plan = slimrt::ops::plan_attention_scratch(device, c.batch, c.shape.heads, s.kv, c.context);
  s.scratch = s.plan.bytes > 0 ? s.memory.allocate(s.plan.bytes) : nullptr;
}

PagedKvFixture::~PagedKvFixture() = default;

void PagedKvFixture::attend(bool compressed) {
  State& s = *state_;
  SLIMRT_CHECK(!compressed || s.c.compress, "this case has no compressed pages");
  slimrt::PagedKv kv = s.kv;
  if (compressed) {
    kv.k_records = s.k_records;
    kv.v_records = s.v_records;
  }
  s.batch.page_indices = compressed ? s.mixed_table : s.dense_table;
  const float scale = 1.0f / std::sqrt(static_cast<float>(s.c.shape.head_dim));
  slimrt::ops::paged_attention(s.device, s.q, kv, s.batch, s.c.shape.heads, scale, s.out, s.plan,
                               s.scratch, s.input_scratch);
}

double PagedKvFixture::kv_bytes(bool compressed) const {
  const State& s = *state_;
  const double row = static_cast<double>(s.c.shape.kv_heads * s.c.shape.head_dim);
  const double dense_tokens =
      static_cast<double>(s.c.context) - (compressed ? s.compressed_tokens : 0.0);
  const double record_tokens = compressed ? s.compressed_tokens : 0.0;
  // K and V: 2 bytes a value dense, one record per KV head compressed.
  return static_cast<double>(s.c.batch) *
         (record_tokens * s.c.shape.kv_heads * 2 * s.record_bytes + dense_tokens * row * 2 * 2);
}

double PagedKvFixture::attended_pairs() const {
  const PagedCase& c = state_->c;
  const double n = static_cast<double>(c.query_tokens);
  const double past = static_cast<double>(c.context) - n;
  return static_cast<double>(c.batch) * (n * past + n * (n + 1) / 2);
}

}  // namespace slimrt_bench
