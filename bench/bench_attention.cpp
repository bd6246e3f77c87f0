// slimrt-bench attention: paged attention over dense BF16 pages through ops::paged_attention,
// the engine's path, one layer, for the attention shapes of SmolLM2-135M and Llama-3.1-8B
// (paged_kv_fixture.h): decode (one new token per sequence) and prefill (a chunk of new tokens
// per sequence, causal over the cache and itself), on the CPU or a CUDA GPU.
//
// Decode is memory-bound: its rows report the K/V bytes read (every cached position of every
// sequence once) against the measured bandwidth (bench.h's add_traffic). Prefill reads the
// same bytes but scores query_tokens times as many pairs: its rows report new tokens per
// second and GFLOP/s (4 * heads * head_dim per query-key pair: q.k and p.v, a multiply-add each).
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "device_memory.h"
#include "paged_kv_fixture.h"
#include "thread_pool.h"

namespace slimrt_bench {

int bench_attention(ArgParser& args, const CommonOptions& common, Report& report) {
  std::string heads = "both";
  std::vector<int64_t> batches, contexts, queries = {1, 256};
  int64_t page_size = 16;
  args.add_choice("heads", &heads, {"both", "smollm2", "llama8b"},
                  "attention shapes: SmolLM2-135M (9q/3kv d64), Llama-3.1-8B (32q/8kv d128)");
  args.add_int_list("batch", &batches, 1, 1024, "sequences per step");
  args.add_alias('b', "batch");
  args.add_int_list("context", &contexts, 1, 1 << 20,
                    "tokens cached per sequence, the new ones included");
  args.add_alias('c', "context");
  args.add_int_list("query", &queries, 1, 1 << 16,
                    "new tokens per sequence: 1 is a decode step, more a prefill chunk");
  args.add_int("page-size", &page_size, 1, 4096, "tokens per page");
  args.set_default_text("batch", "1,4 on cpu, 1,8,32 on cuda");
  args.set_default_text("context", "1024,4096 on cpu, 4096,16384,65536 on cuda");
  args.set_default_text("reps", "5 on cpu, 20 on cuda");
  args.set_default_text("warmup", "1 on cpu, 3 on cuda");
  if (!args.parse()) return 0;
  const bool cuda = common.device == "cuda";
  const int reps = static_cast<int>(common.reps > 0 ? common.reps : cuda ? 20 : 5);
  const int warmup = static_cast<int>(common.warmup >= 0 ? common.warmup : cuda ? 3 : 1);
  if (batches.empty()) batches = cuda ? std::vector<int64_t>{1, 8, 32} : std::vector<int64_t>{1, 4};
  if (contexts.empty()) {
    contexts = cuda ? std::vector<int64_t>{4096, 16384, 65536} : std::vector<int64_t>{1024, 4096};
  }
  const int64_t max_query = *std::max_element(queries.begin(), queries.end());
  const int64_t min_context = *std::min_element(contexts.begin(), contexts.end());
  if (max_query > min_context) {
    throw UsageError("--query " + std::to_string(max_query) + " is more than --context " +
                     std::to_string(min_context) + ": the new tokens are part of the context");
  }
  slimrt::ThreadPool pool(static_cast<int>(common.threads));
  const std::unique_ptr<slimrt::Device> device =
      slimrt::make_device(common.device, static_cast<int>(common.threads));
  const std::string name = device_name(common.device);
  reference_gbps(common);  // measured before the fixtures take their memory

  for (const AttentionShape& shape : kAttentionShapes) {
    if (heads != "both" && heads != shape.name) continue;
    for (int64_t b : batches) {
      for (int64_t ctx : contexts) {
        for (int64_t query : queries) {
          PagedCase c;
          c.shape = shape;
          c.batch = b;
          c.context = ctx;
          c.query_tokens = query;
          c.page_size = page_size;
          std::cerr << "attention: " << c.name() << " query " << query << "\n";
          PagedKvFixture fixture(c, *device, pool);
          const std::vector<double> us = time_us(
              *device, [&] { fixture.attend(false); }, warmup, reps);
          Row row = report.new_row(common.device, name);
          row.add("case", "case", c.name());
          row.add("phase", "phase",
                  query == 1 ? std::string("decode") : "prefill " + std::to_string(query));
          row.add_stats("time_us", "time (us)", Stats::of(us), 1);
          if (query == 1) {
            add_traffic(row, fixture.kv_bytes(false), us, common);
          } else {
            row.add_stats("tokens_per_s", "new tokens/s",
                          per_second(us, static_cast<double>(b * query), 1.0), 0);
            const double flops =
                4.0 * static_cast<double>(shape.heads * shape.head_dim) * fixture.attended_pairs();
            row.add_stats("gflops", "GFLOP/s", per_second(us, flops, 1e9), 1);
            row.add_json("bytes_read", static_cast<int64_t>(fixture.kv_bytes(false)));
          }
          row.add_json("batch", b);
          row.add_json("context", ctx);
          row.add_json("query_tokens", query);
          row.add_json("page_size", page_size);
          report.add(std::move(row));
        }
      }
    }
  }
  return 0;
}

}  // namespace slimrt_bench
