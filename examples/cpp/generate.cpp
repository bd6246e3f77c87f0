// slimrt-generate: a C++ program that loads a model and generates token ids, without Python.
//
//   slimrt-generate MODEL --ids 1,2,3 [--max-tokens 32] [--temperature 0.7 --seed 1]
//                   [--top-k K] [--top-p P] [--weights bf16|df11] [--device cpu|cuda|auto]
//
// MODEL is a Hugging Face or slimrt directory or a .gguf file. The prompt is given as token ids
// (tokenization is the application's business). The generated ids stream to stdout as they
// are made, separated by spaces; load time and tokens/s go to stderr. Exit code 0 on success,
// 2 on bad input (one line on stderr naming the problem and its category).
#include <slimrt/engine.h>
#include <slimrt/error.h>
#include <slimrt/log.h>
#include <slimrt/model.h>
#include <slimrt/version.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

struct Args {
  std::string model;
  std::vector<int32_t> ids;
  int64_t max_tokens = 32;
  slimrt::SamplingParams sampling;
  slimrt::ModelOptions model_options;
};

[[noreturn]] void usage(const std::string& problem) {
  std::fprintf(stderr,
               "slimrt-generate: %s\nusage: slimrt-generate MODEL --ids 1,2,3 [--max-tokens N] "
               "[--temperature T] [--top-k K] [--top-p P] [--min-p P] [--seed S] "
               "[--weights bf16|df11|stored] [--device cpu|cuda|auto] [--threads N]\n",
               problem.c_str());
  std::exit(2);
}

std::vector<int32_t> parse_ids(const std::string& text) {
  std::vector<int32_t> ids;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    try {
      size_t used = 0;
      const long long id = std::stoll(item, &used);
      if (used != item.size() || id < 0 || id > INT32_MAX) throw std::invalid_argument(item);
      ids.push_back(static_cast<int32_t>(id));
    } catch (const std::exception&) {
      usage("--ids: '" + item + "' is not a token id");
    }
  }
  if (ids.empty()) usage("--ids: no token ids given");
  return ids;
}

double number(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    const double value = std::stod(text, &used);
    if (used == text.size()) return value;
  } catch (const std::exception&) {
  }
  usage(flag + ": '" + text + "' is not a number");
}

Args parse(int argc, char** argv) {
  Args a;
  a.sampling.temperature = 0.0f;  // greedy unless asked
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--ids") {
      a.ids = parse_ids(value());
    } else if (arg == "--max-tokens") {
      a.max_tokens = static_cast<int64_t>(number(arg, value()));
    } else if (arg == "--temperature") {
      a.sampling.temperature = static_cast<float>(number(arg, value()));
    } else if (arg == "--top-k") {
      a.sampling.top_k = static_cast<int32_t>(number(arg, value()));
    } else if (arg == "--top-p") {
      a.sampling.top_p = static_cast<float>(number(arg, value()));
    } else if (arg == "--min-p") {
      a.sampling.min_p = static_cast<float>(number(arg, value()));
    } else if (arg == "--seed") {
      a.sampling.seed = std::strtoull(value().c_str(), nullptr, 10);
    } else if (arg == "--weights") {
      a.model_options.weights = value();
    } else if (arg == "--device") {
      a.model_options.device = value();
    } else if (arg == "--threads") {
      a.model_options.num_threads = static_cast<int>(number(arg, value()));
    } else if (arg.rfind("--", 0) == 0) {
      usage("unknown option " + arg);
    } else if (a.model.empty()) {
      a.model = arg;
    } else {
      usage("more than one MODEL given");
    }
  }
  if (a.model.empty()) usage("no MODEL given");
  if (a.ids.empty()) usage("no prompt: pass --ids");
  if (a.max_tokens < 1) usage("--max-tokens must be >= 1");
  return a;
}

// Prefills `prompt` in chunks the engine accepts, then decodes one token per step until
// max_tokens; every sampled id goes to on_token as soon as it exists.
void generate(slimrt::Engine& engine, const std::vector<int32_t>& prompt,
              const slimrt::SamplingParams& sampling, int64_t max_tokens, int64_t chunk_tokens,
              const std::function<void(int32_t)>& on_token) {
  const int64_t seq = engine.add_sequence();
  int32_t next = 0;
  for (size_t fed = 0; fed < prompt.size();) {
    const int32_t count = static_cast<int32_t>(
        std::min<size_t>(prompt.size() - fed, static_cast<size_t>(chunk_tokens)));
    slimrt::StepInput in;
    in.seq_ids = &seq;
    in.counts = &count;
    in.batch = 1;
    in.tokens = prompt.data() + fed;
    in.num_tokens = count;
    engine.step(in, &sampling, &next);
    fed += static_cast<size_t>(count);
  }
  for (int64_t made = 0; made < max_tokens; ++made) {
    on_token(next);
    if (made + 1 == max_tokens) break;
    const int32_t one = 1;
    const int32_t token = next;
    slimrt::StepInput in;
    in.seq_ids = &seq;
    in.counts = &one;
    in.batch = 1;
    in.tokens = &token;
    in.num_tokens = 1;
    engine.step(in, &sampling, &next);
  }
  engine.release_sequence(seq);
}

}  // namespace

int main(int argc, char** argv) {
  const Args args = parse(argc, argv);
  // The library's warnings go to our stderr, with our prefix.
  slimrt::set_log_callback(
      [](slimrt::LogLevel level, const char* text, void*) {
        if (level >= slimrt::LogLevel::kWarning) std::fprintf(stderr, "slimrt: %s\n", text);
      },
      nullptr);
  using Clock = std::chrono::steady_clock;
  try {
    const auto start = Clock::now();
    const std::shared_ptr<const slimrt::Model> model =
        slimrt::Model::load(args.model, args.model_options);
    const auto loaded = Clock::now();
    slimrt::EngineOptions options;
    options.max_batch = 1;
    options.kv_tokens = static_cast<int64_t>(args.ids.size()) + args.max_tokens;
    slimrt::Engine engine(model, options);

    int64_t made = 0;
    Clock::time_point first;
    generate(engine, args.ids, args.sampling, args.max_tokens, options.max_step_tokens,
             [&](int32_t id) {
               if (made++ == 0) first = Clock::now();
               std::printf(made == 1 ? "%d" : " %d", id);
               std::fflush(stdout);
             });
    std::printf("\n");
    const auto done = Clock::now();
    const double load_s = std::chrono::duration<double>(loaded - start).count();
    const double prefill_s = std::chrono::duration<double>(first - loaded).count();
    const double decode_s = std::chrono::duration<double>(done - first).count();
    std::fprintf(stderr,
                 "slimrt %s: %s on %s; load %.3f s, prefill %zu tokens %.3f s, decode %lld "
                 "tokens %.1f tokens/s\n",
                 slimrt::version(), model->summary().c_str(), model->device().c_str(), load_s,
                 args.ids.size(), prefill_s, static_cast<long long>(made - 1),
                 decode_s > 0 ? static_cast<double>(made - 1) / decode_s : 0.0);
    return 0;
  } catch (const slimrt::Error& e) {
    std::fprintf(stderr, "slimrt-generate: error (%s): %s\n",
                 slimrt::error_category_name(e.category()), e.message().c_str());
    return 2;
  }
}
