// slimrt-bench sparse-attention: decode attention (one query token per sequence) through
// ops::paged_attention, the engine's path, over a paged cache whose pages older than the recent
// window are compressed (docs/FORMAT.md, "Sparse KV pages"), against the same cache all dense,
// for the attention shapes of SmolLM2-135M (9 query / 3 KV heads of 64) and Llama-3.1-8B (32 / 8
// of 128), one layer, on the CPU or a CUDA GPU.
//
// GB/s counts the K/V bytes a step must read (records or dense rows, every position of every
// sequence once); "% of read" compares it with the machine's read bandwidth, measured here as a
// multi-threaded sum over a buffer larger than the caches (a row of its own); on a GPU "% of
// copy" with a device-to-device copy's read + write bandwidth.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <memory>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "bench.h"
#include "bench_cuda.h"
#include "cpu/kernels.h"
#include "device_memory.h"
#include "kv_record.h"
#include "ops/matmul_bf16.h"
#include "ops/paged_attention.h"
#include "thread_pool.h"

namespace slimrt_bench {
namespace {

struct HeadShape {
  const char* name;
  int64_t heads, kv_heads, head_dim;
};

const HeadShape kShapes[] = {{"smollm2", 9, 3, 64}, {"llama8b", 32, 8, 128}};

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Uniform in [-1, 1): the magnitudes of trained K/V differ, but the kernels' cost does not
// depend on the values, only on the kept count.
float uniform(uint64_t& state) {
  return static_cast<float>(static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-52 - 1.0);
}

uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return static_cast<uint16_t>((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

// GB/s of summing `bytes` with every thread of the pool, the best of `reps`.
double read_bandwidth(slimrt::ThreadPool& pool, int64_t bytes, int reps) {
  const int64_t n = bytes / 8;
  std::vector<uint64_t> buffer(n);
  std::iota(buffer.begin(), buffer.end(), uint64_t{0});
  std::vector<uint64_t> sums(pool.size(), 0);
  double best = 0;
  for (int r = 0; r < reps + 1; ++r) {
    const std::vector<double> us = time_host(
        [&] {
          pool.run(pool.size(), [&](int64_t p0, int64_t p1) {
            for (int64_t p = p0; p < p1; ++p) {
              const int64_t begin = n * p / pool.size(), end = n * (p + 1) / pool.size();
              uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
              int64_t i = begin;
              for (; i + 4 <= end; i += 4) {
                s0 += buffer[i];
                s1 += buffer[i + 1];
                s2 += buffer[i + 2];
                s3 += buffer[i + 3];
              }
              for (; i < end; ++i) s0 += buffer[i];
              sums[p] += s0 + s1 + s2 + s3;
            }
          });
        },
        0, 1);
    if (r > 0) best = std::max(best, bytes / (us[0] * 1e-6) / 1e9);  // the first warms up
  }
  // The sums are used, so the compiler keeps the loads.
  volatile uint64_t sink = std::accumulate(sums.begin(), sums.end(), uint64_t{0});
  (void)sink;
  return best;
}

struct Case {
  HeadShape shape;
  int64_t batch, context, page_size, window;
  double sparsity;
};

struct Timings {
  Stats dense_us, sparse_us;
  double dense_bytes = 0, sparse_bytes = 0;
};

// Distinct pages at most (K and V of one layer): past that, block tables reuse the pool's pages
// in turn, so that a GPU's L2 (50 MB on an H200) holds a few percent of it and the bytes a step
// reads still come from memory.
constexpr int64_t kPoolBytes = int64_t{2} << 30;

Timings run_case(const Case& c, slimrt::Device& device, slimrt::ThreadPool& pool, int warmup,
                 int reps) {
  const int64_t H = c.shape.kv_heads, D = c.shape.head_dim, P = c.page_size;
  const int64_t pages_per_seq = (c.context + P - 1) / P;
  const int64_t row = H * D;
  const int64_t table_pages = c.batch * pages_per_seq;
  const int64_t dense_pages =
      std::min(table_pages, std::max<int64_t>(1, kPoolBytes / (P * row * 4)));
  std::vector<uint16_t> k(dense_pages * P * row), v(k.size());
  uint64_t state = 42;
  for (size_t i = 0; i < k.size(); ++i) {
    k[i] = to_bf16(uniform(state));
    v[i] = to_bf16(uniform(state));
  }
  std::vector<float> q(c.batch * c.shape.heads * D);
  for (float& x : q) x = uniform(state);

  // Every pool page is also compressed, as compressed page dense_pages + id.
  const int64_t compressed_per_seq = std::max<int64_t>(0, c.context - c.window) / P;
  const int64_t kept = slimrt::kv_kept_count(D, c.sparsity);
  const int64_t record = slimrt::kv_record_bytes(D, kept);
  std::vector<uint8_t> k_records(dense_pages * P * H * record + slimrt::kKvRecordTailPad);
  std::vector<uint8_t> v_records(k_records.size());
  std::vector<int32_t> src(dense_pages), dst(dense_pages);
  std::iota(src.begin(), src.end(), 0);
  std::iota(dst.begin(), dst.end(), static_cast<int32_t>(dense_pages));
  slimrt::PagedKv host_kv;
  host_kv.k_pages = k.data();
  host_kv.v_pages = v.data();
  host_kv.page_size = P;
  host_kv.kv_heads = H;
  host_kv.head_dim = D;
  host_kv.k_records = k_records.data();
  host_kv.v_records = v_records.data();
  host_kv.dense_pages = dense_pages;
  host_kv.k_kept = host_kv.v_kept = kept;
  slimrt::cpu::kv_compress(host_kv, src.data(), dst.data(), dense_pages, pool);

  std::vector<int32_t> q_indptr(c.batch + 1), page_indptr(c.batch + 1);
  std::vector<int32_t> context_lens(c.batch, static_cast<int32_t>(c.context));
  std::vector<int32_t> dense_indices(table_pages), mixed_indices(table_pages);
  for (int64_t s = 0; s <= c.batch; ++s) {
    q_indptr[s] = static_cast<int32_t>(s);
    page_indptr[s] = static_cast<int32_t>(s * pages_per_seq);
  }
  // Pages in random order (as an engine's pool hands them out): a regular stride between
  // sequences would make concurrent blocks contend for the same memory channels.
  std::vector<int64_t> order(dense_pages);
  std::iota(order.begin(), order.end(), int64_t{0});
  for (int64_t i = dense_pages - 1; i > 0; --i) {
    std::swap(order[i], order[splitmix64(state) % static_cast<uint64_t>(i + 1)]);
  }
  for (int64_t s = 0; s < c.batch; ++s) {
    for (int64_t i = 0; i < pages_per_seq; ++i) {
      const int64_t at = s * pages_per_seq + i;
      const auto id = static_cast<int32_t>(order[at % dense_pages]);
      dense_indices[at] = id;
      mixed_indices[at] = i < compressed_per_seq ? static_cast<int32_t>(dense_pages + id) : id;
    }
  }

  DeviceMemory memory{device, {}};
  slimrt::PagedKv kv = host_kv;
  kv.k_pages = memory.copy(k);
  kv.v_pages = memory.copy(v);
  void* const k_records_device = memory.copy(k_records);
  void* const v_records_device = memory.copy(v_records);
  const float* q_device = memory.copy(q);
  auto* out = static_cast<float*>(memory.allocate(static_cast<int64_t>(q.size()) * 4));
  const int64_t width = c.shape.heads * D;
  void* input_scratch = memory.allocate(slimrt::ops::matmul_input_bytes(device, c.batch, width));
  slimrt::PagedBatch batch;
  batch.q_indptr = memory.copy(q_indptr);
  batch.page_indptr = memory.copy(page_indptr);
  batch.context_lens = memory.copy(context_lens);
  batch.num_seqs = c.batch;
  batch.num_tokens = batch.max_query_tokens = c.batch;
  batch.max_context = c.context;
  const int32_t* dense_table = memory.copy(dense_indices);
  const int32_t* mixed_table = memory.copy(mixed_indices);
  const float scale = 1.0f / std::sqrt(static_cast<float>(D));
  // The engine's scratch plan (made for the dense shape, as an engine makes it at load).
  slimrt::PagedKv shape_kv = kv;
  shape_kv.k_records = shape_kv.v_records = nullptr;
  const slimrt::AttentionScratchPlan plan =
      slimrt::ops::plan_attention_scratch(device, c.batch, c.shape.heads, shape_kv, c.context);
  void* scratch = plan.bytes > 0 ? memory.allocate(plan.bytes) : nullptr;

  const auto attend = [&](const slimrt::PagedKv& cache) {
    slimrt::ops::paged_attention(device, q_device, cache, batch, c.shape.heads, scale, out, plan,
                                 scratch, input_scratch);
  };
  Timings t;
  batch.page_indices = dense_table;
  kv.k_records = kv.v_records = nullptr;
  t.dense_us = Stats::of(time_us(
      device, [&] { attend(kv); }, warmup, reps));
  t.dense_bytes = static_cast<double>(c.batch) * c.context * row * 2 * 2;

  kv.k_records = k_records_device;
  kv.v_records = v_records_device;
  batch.page_indices = mixed_table;
  t.sparse_us = Stats::of(time_us(
      device, [&] { attend(kv); }, warmup, reps));
  const double compressed_tokens = static_cast<double>(compressed_per_seq * P);
  t.sparse_bytes = c.batch * (compressed_tokens * H * 2 * record +
                              (c.context - compressed_tokens) * row * 2 * 2);
  return t;
}

// GB/s of a device-to-device copy of 1 GiB (read and write counted), the median of 5.
double cuda_copy_gbps() {
  const size_t bytes = size_t{1} << 30;
  CudaStream stream;
  CudaBuffer a(bytes), b(bytes);
  std::vector<double> us =
      time_cuda([&](void* st) { cuda_copy(b.data(), a.data(), bytes, st); }, stream, 1, 5);
  std::sort(us.begin(), us.end());
  return 2.0 * static_cast<double>(bytes) / (us[us.size() / 2] * 1e-6) / 1e9;
}

}  // namespace

int bench_sparse_attention(ArgParser& args, const CommonOptions& common, Report& report) {
  std::string heads = "both";
  int64_t batch = 0, context = 0, page_size = 16, window = 32;
  double sparsity = 0.7;
  args.add_choice("heads", &heads, {"both", "smollm2", "llama8b"},
                  "attention shapes: SmolLM2-135M (9q/3kv d64), Llama-3.1-8B (32q/8kv d128)");
  args.add_int("batch", &batch, 0, 1024, "sequences per step, 0 = 1 and 8 (cuda: 1, 8, 32)");
  args.add_int("context", &context, 0, 1 << 20,
               "tokens per sequence, 0 = 4k, 16k and 32k (cuda: 4k, 16k, 64k)");
  args.add_int("page-size", &page_size, 1, 4096, "tokens per page");
  args.add_int("window", &window, 0, 1 << 20, "newest tokens kept dense");
  args.add_double("sparsity", &sparsity, 0.0, 0.999, "share of K and of V values dropped");
  args.set_default_text("reps", "5");
  args.set_default_text("warmup", "1");
  if (!args.parse()) return 0;
  const int reps = common.reps > 0 ? static_cast<int>(common.reps) : 5;
  const int warmup = common.warmup >= 0 ? static_cast<int>(common.warmup) : 1;
  const int threads = common.threads > 0 ? static_cast<int>(common.threads)
                                         : static_cast<int>(std::thread::hardware_concurrency());
  // The host's pool draws and compresses the pages; the device runs the kernels.
  slimrt::ThreadPool pool(threads);
  const std::unique_ptr<slimrt::Device> device = slimrt::make_device(common.device, threads);
  const bool cuda = common.device == "cuda";
  const std::string device_name = cuda ? cuda_device_name() : cpu_device_name();
  const double read_gbps = cuda ? cuda_copy_gbps() : read_bandwidth(pool, int64_t{1} << 30, 3);
  Row read_row = report.new_row(common.device, device_name);
  read_row.add("threads", "threads", static_cast<int64_t>(cuda ? 0 : pool.size()));
  read_row.add("case", "case",
               std::string(cuda ? "device copy (1 GiB, read + write)" : "memory read (1 GiB sum)"));
  read_row.add("gbps", "GB/s", read_gbps, 1);
  report.add(std::move(read_row));

  std::vector<int64_t> batches = batch > 0 ? std::vector<int64_t>{batch}
                                 : cuda    ? std::vector<int64_t>{1, 8, 32}
                                           : std::vector<int64_t>{1, 8};
  std::vector<int64_t> contexts = context > 0 ? std::vector<int64_t>{context}
                                  : cuda      ? std::vector<int64_t>{4096, 16384, 65536}
                                              : std::vector<int64_t>{4096, 16384, 32768};
  for (const HeadShape& shape : kShapes) {
    if (heads != "both" && heads != shape.name) continue;
    for (int64_t b : batches) {
      for (int64_t ctx : contexts) {
        std::cerr << "sparse-attention: " << shape.name << " batch " << b << " context " << ctx
                  << "\n";
        const Case c{shape, b, ctx, page_size, window, sparsity};
        const Timings t = run_case(c, *device, pool, warmup, reps);
        const std::string name = std::string(shape.name) + " " + std::to_string(shape.heads) +
                                 "q/" + std::to_string(shape.kv_heads) + "kv d" +
                                 std::to_string(shape.head_dim) + " b" + std::to_string(b) +
                                 " ctx " + std::to_string(ctx);
        for (bool sparse : {false, true}) {
          const Stats& us = sparse ? t.sparse_us : t.dense_us;
          const double bytes = sparse ? t.sparse_bytes : t.dense_bytes;
          const double gbps = bytes / (us.mean * 1e-6) / 1e9;
          Row row = report.new_row(common.device, device_name);
          row.add("threads", "threads", static_cast<int64_t>(cuda ? 0 : pool.size()));
          row.add("case", "case", name);
          row.add("kv", "KV",
                  sparse ? "sparse " + std::to_string(int(sparsity * 100 + 0.5)) + " %"
                         : std::string("dense"));
          row.add_stats("time_us", "time (us)", us, 1);
          row.add("mib_read", "MiB read", bytes / (1 << 20), 1);
          row.add("gbps", "GB/s", gbps, 1);
          row.add("pct_of_read", cuda ? "% of copy" : "% of read", 100.0 * gbps / read_gbps, 1);
          row.add("speedup", "vs dense", sparse ? t.dense_us.mean / t.sparse_us.mean : 1.0, 2);
          report.add(std::move(row));
        }
      }
    }
  }
  return 0;
}

}  // namespace slimrt_bench
