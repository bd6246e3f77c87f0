// slimrt-bench sparse-attention: decode attention (one query token per sequence) through
// ops::paged_attention, the engine's path, over a paged cache whose pages older than the recent
// window are compressed at each of --sparsity (docs/FORMAT.md, "Sparse KV pages"), against the
// same cache all dense,
// for the attention shapes of SmolLM2-135M and Llama-3.1-8B (paged_kv_fixture.h), one layer, on
// the CPU or a CUDA GPU.
//
// GB/s counts the K/V bytes a step must read (records or dense rows, every position of every
// sequence once); "% of BW" compares it with the device's measured read bandwidth (bench.h's
// add_traffic).
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "device_memory.h"
#include "paged_kv_fixture.h"
#include "thread_pool.h"

namespace slimrt_bench {

int bench_sparse_attention(ArgParser& args, const CommonOptions& common, Report& report) {
  std::string heads = "both";
  std::vector<int64_t> batches, contexts;
  int64_t page_size = 16, window = 32;
  std::vector<double> sparsities = {0.7};
  args.add_choice("heads", &heads, {"both", "smollm2", "llama8b"},
                  "attention shapes: SmolLM2-135M (9q/3kv d64), Llama-3.1-8B (32q/8kv d128)");
  args.add_int_list("batch", &batches, 1, 1024, "sequences per step");
  args.add_alias('b', "batch");
  args.add_int_list("context", &contexts, 1, 1 << 20, "tokens per sequence");
  args.add_alias('c', "context");
  args.add_int("page-size", &page_size, 1, 4096, "tokens per page");
  args.add_int("window", &window, 0, 1 << 20, "newest tokens kept dense");
  args.add_double_list("sparsity", &sparsities, 0.0, 0.999,
                       "shares of K and of V values dropped, one row each");
  args.set_default_text("batch", "1,8 on cpu, 1,8,32 on cuda");
  args.set_default_text("context", "4096,16384,32768 on cpu, 4096,16384,65536 on cuda");
  args.set_default_text("reps", "5");
  args.set_default_text("warmup", "1");
  if (!args.parse()) return 0;
  const int reps = common.reps > 0 ? static_cast<int>(common.reps) : 5;
  const int warmup = common.warmup >= 0 ? static_cast<int>(common.warmup) : 1;
  const bool cuda = common.device == "cuda";
  if (batches.empty()) batches = cuda ? std::vector<int64_t>{1, 8, 32} : std::vector<int64_t>{1, 8};
  if (contexts.empty()) {
    contexts =
        cuda ? std::vector<int64_t>{4096, 16384, 65536} : std::vector<int64_t>{4096, 16384, 32768};
  }
  // The host's pool draws and compresses the pages; the device runs the kernels.
  slimrt::ThreadPool pool(static_cast<int>(common.threads));
  const std::unique_ptr<slimrt::Device> device =
      slimrt::make_device(common.device, static_cast<int>(common.threads));
  const std::string name = device_name(common.device);
  reference_gbps(common);  // measured before the fixtures take their memory

  for (const AttentionShape& shape : kAttentionShapes) {
    if (heads != "both" && heads != shape.name) continue;
    for (int64_t b : batches) {
      for (int64_t ctx : contexts) {
        PagedCase c;
        c.shape = shape;
        c.batch = b;
        c.context = ctx;
        c.page_size = page_size;
        c.compress = true;
        c.window = window;
        double dense_mean = 0;
        for (size_t i = 0; i < sparsities.size(); ++i) {
          c.sparsity = sparsities[i];
          std::cerr << "sparse-attention: " << c.name() << " sparsity " << c.sparsity << "\n";
          PagedKvFixture fixture(c, *device, pool);
          // The dense pages are the same for every sparsity: timed once, with the first.
          for (bool sparse : {false, true}) {
            if (!sparse && i > 0) continue;
            const std::vector<double> us = time_us(
                *device, [&] { fixture.attend(sparse); }, warmup, reps);
            const Stats time = Stats::of(us);
            if (!sparse) dense_mean = time.mean;
            Row row = report.new_row(common.device, name);
            row.add("case", "case", c.name());
            row.add("kv", "KV",
                    sparse ? "sparse " + std::to_string(int(c.sparsity * 100 + 0.5)) + " %"
                           : std::string("dense"));
            row.add_stats("time_us", "time (us)", time, 1);
            add_traffic(row, fixture.kv_bytes(sparse), us, common);
            row.add("speedup", "vs dense", dense_mean / time.mean, 2);
            row.add_json("batch", b);
            row.add_json("context", ctx);
            row.add_json("page_size", page_size);
            row.add_json("window", window);
            row.add_json("sparsity", sparse ? c.sparsity : 0.0);
            report.add(std::move(row));
          }
        }
      }
    }
  }
  return 0;
}

}  // namespace slimrt_bench
