// slimrt-bench decode-step: one full model step (embedding, every layer, lm_head, sampling)
// through slimrt::Engine, the way a server runs it: `batch` sequences, each with `context`
// tokens already cached, get one new token each. The model is built in memory at the given
// shapes with random weights (random_model.h; SmolLM2-135M's by default) or loaded from -m PATH.
//
// Timing is the host's clock around Engine::step, which returns the sampled ids to the host:
// a step's whole latency on either device. Each timed step adds a token, so the context grows
// by warmup + reps over a row (the JSON gives both ends). Bytes moved: the weights a step reads
// (random_model.h's weight_bytes_per_step) plus the K/V it reads, every cached position of
// every sequence in every layer; against the measured bandwidth (bench.h's add_traffic).
#include <algorithm>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "engine_driver.h"
#include "random_model.h"
#include "slimrt/engine.h"
#include "slimrt/model.h"

namespace slimrt_bench {

int bench_decode_step(ArgParser& args, const CommonOptions& common, Report& report) {
  std::string path;
  args.add_string("model", &path, "a model file or directory to load instead of random shapes");
  args.add_alias('m', "model");
  RandomModelShape shape;
  args.add_int("vocab", &shape.vocab, 1, 1 << 24, "random model: vocabulary");
  args.add_int("hidden", &shape.hidden, 1, 1 << 16, "random model: hidden size");
  args.add_int("intermediate", &shape.intermediate, 1, 1 << 18, "random model: MLP width");
  args.add_int("layers", &shape.layers, 1, 1024, "random model: layers");
  args.add_int("heads", &shape.heads, 1, 1024, "random model: query heads");
  args.add_int("kv-heads", &shape.kv_heads, 1, 1024, "random model: KV heads");
  args.add_int("head-dim", &shape.head_dim, 1, 256, "random model: head dimension");
  bool untied = false;
  args.add_flag("untied", &untied, "random model: an lm_head of its own (default: tied)");
  std::string weights = "bf16";
  args.add_choice("weights", &weights, {"bf16", "df11"}, "matrices as BF16 or DF11 in memory");
  std::vector<int64_t> batches = {1, 4}, contexts = {512};
  args.add_int_list("batch", &batches, 1, 4096, "sequences in the step");
  args.add_alias('b', "batch");
  args.add_int_list("context", &contexts, 1, 1 << 20, "tokens cached per sequence before it");
  args.add_alias('c', "context");
  args.set_default_text("reps", "10");
  args.set_default_text("warmup", "2");
  if (!args.parse()) return 0;
  for (const char* flag :
       {"vocab", "hidden", "intermediate", "layers", "heads", "kv-heads", "head-dim", "untied"}) {
    if (!path.empty() && args.given(flag)) {
      throw UsageError(std::string("--") + flag + " shapes a random model; -m loads one");
    }
  }
  const int reps = common.reps > 0 ? static_cast<int>(common.reps) : 10;
  const int warmup = common.warmup >= 0 ? static_cast<int>(common.warmup) : 2;
  shape.tied = !untied;
  const int64_t max_context = *std::max_element(contexts.begin(), contexts.end());
  shape.max_position = std::max<int64_t>(8192, max_context + warmup + reps + 1);

  slimrt::ModelOptions options;
  options.device = common.device;
  options.weights = weights;
  options.num_threads = static_cast<int>(common.threads);
  std::shared_ptr<const slimrt::Model> model;
  std::string model_name;
  if (path.empty()) {
    const slimrt::ModelConfig config = random_model_config(shape);
    std::cerr << "decode-step: making a random model of hidden " << shape.hidden << ", "
              << shape.layers << " layers\n";
    model = make_random_model(config, options, 1);
    model_name = "random h" + std::to_string(shape.hidden) + " i" +
                 std::to_string(shape.intermediate) + " L" + std::to_string(shape.layers) + " " +
                 std::to_string(shape.heads) + "q/" + std::to_string(shape.kv_heads) + "kv d" +
                 std::to_string(shape.head_dim) + " v" + std::to_string(shape.vocab);
  } else {
    require_model_path(path);
    std::cerr << "decode-step: loading " << path << "\n";
    model = slimrt::Model::load(path, options);
    model_name = model_file_name(path);
  }
  const slimrt::ModelConfig& config = model->config();
  const int64_t weight_bytes = weight_bytes_per_step(*model);
  const std::string name = device_name(common.device);
  reference_gbps(common);

  for (int64_t batch : batches) {
    for (int64_t context : contexts) {
      if (context + warmup + reps + 1 > config.max_context()) {
        throw UsageError("--context " + std::to_string(context) + " and the steps after it pass " +
                         "the model's longest sequence, " + std::to_string(config.max_context()));
      }
      std::cerr << "decode-step: batch " << batch << ", context " << context << "\n";
      slimrt::EngineOptions engine_options;
      engine_options.max_batch = batch;
      // Pages are per sequence: each needs its own rounded up.
      const int64_t page = engine_options.page_size;
      engine_options.kv_tokens = batch * ((context + warmup + reps + page) / page) * page;
      slimrt::Engine engine(model, engine_options);
      std::vector<int64_t> seqs;
      std::vector<int32_t> tokens;
      for (int64_t b = 0; b < batch; ++b) {
        seqs.push_back(engine.add_sequence());
        const std::vector<int32_t> prompt = random_tokens(context, config.vocab_size, 7 + b);
        tokens.push_back(prefill(engine, seqs.back(), prompt, engine_options.max_step_tokens));
      }
      const std::vector<double> us =
          time_host([&] { decode_step(engine, seqs, tokens); }, warmup, reps);
      // Per layer, K and V of every cached position (the middle of the timed steps' range).
      const double kv_value_bytes = engine_options.kv_dtype == "f32" ? 4.0 : 2.0;
      const double mean_context = context + warmup + 0.5 * (reps + 1);
      const double kv_bytes = static_cast<double>(batch) * mean_context *
                              static_cast<double>(config.num_layers * config.kv_width()) * 2 *
                              kv_value_bytes;
      Row row = report.new_row(common.device, name);
      row.add("model", "model", model_name);
      row.add("weights", "weights", weights);
      row.add("batch", "batch", batch);
      row.add("context", "context", context);
      std::vector<double> ms(us.size());
      std::transform(us.begin(), us.end(), ms.begin(), [](double x) { return x / 1000.0; });
      row.add_stats("time_ms", "step (ms)", Stats::of(ms), 2);
      row.add_stats("tokens_per_s", "tokens/s", per_second(us, static_cast<double>(batch), 1.0), 1);
      add_traffic(row, static_cast<double>(weight_bytes) + kv_bytes, us, common);
      row.add_json("context_end", context + warmup + reps);
      row.add_json("weight_bytes_per_step", weight_bytes);
      row.add_json("kv_bytes_per_step", kv_bytes);
      row.add_json("warmup", int64_t{warmup});
      row.add_json("reps", int64_t{reps});
      report.add(std::move(row));
    }
  }
  return 0;
}

}  // namespace slimrt_bench
