// What every slimrt-bench subcommand shares: its options, the statistics of repeated timings,
// and the rows it reports (printed as a markdown table, or with -o json|csv as JSON or CSV with
// every raw sample). This is the one output and statistics module: subcommands only fill rows.
//
//   int bench_foo(ArgParser& args, const CommonOptions& common, Report& report) {
//     int64_t size = 1024;
//     args.add_int("size", &size, 1, 1 << 30, "elements");
//     if (!args.parse()) return 0;                        // --help was printed
//     Row row = report.new_row("cpu", cpu_device_name());  // carries commit, device, threads
//     row.add_stats("time_us", "time (us)", Stats::of(samples), 1);
//     add_traffic(row, bytes, samples, common);           // memory-bound: GB/s, % of bandwidth
//     report.add(std::move(row));
//     return 0;
//   }
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace slimrt_bench {

// A command line the user got wrong: main prints the message and the usage, and exits 2.
class UsageError : public std::runtime_error {
 public:
  explicit UsageError(const std::string& message) : std::runtime_error(message) {}
};

// A benchmark whose result is wrong (a round trip that is not bit-exact): exit 1.
class CheckFailure : public std::runtime_error {
 public:
  explicit CheckFailure(const std::string& message) : std::runtime_error(message) {}
};

// Options of the form --name VALUE or --name=VALUE, flags of the form --name, and one-letter
// aliases (-r 5) as llama-bench spells its options.
class ArgParser {
 public:
  ArgParser(std::string command, std::vector<std::string> args);

  void add_int(const std::string& name, int64_t* value, int64_t min, int64_t max,
               const std::string& help);
  void add_uint64(const std::string& name, uint64_t* value, const std::string& help);
  void add_double(const std::string& name, double* value, double min, double max,
                  const std::string& help);
  void add_choice(const std::string& name, std::string* value, std::vector<std::string> choices,
                  const std::string& help);
  void add_flag(const std::string& name, bool* value, const std::string& help);
  void add_string(const std::string& name, std::string* value, const std::string& help);
  // A comma-separated list ("1,2,4"), each element in [min, max]; replaces the default list.
  void add_int_list(const std::string& name, std::vector<int64_t>* values, int64_t min, int64_t max,
                    const std::string& help);
  void add_double_list(const std::string& name, std::vector<double>* values, double min, double max,
                       const std::string& help);
  // -letter as another spelling of --name (registered after the option).
  void add_alias(char letter, const std::string& name);

  // Throws UsageError on an unknown option or a bad value. Returns false when --help was
  // asked for (the usage is then printed on stdout).
  bool parse();
  bool given(const std::string& name) const;
  // For defaults that depend on other options ("5 on cpu, 200 on cuda").
  void set_default_text(const std::string& name, const std::string& text);
  std::string usage() const;

 private:
  struct Option {
    std::string name;
    std::string help;
    std::string default_text;
    char alias = 0;
    std::string metavar = "N";  // what the usage shows for the value
    bool is_flag = false;
    bool given = false;
    std::string choices_text;
    std::function<void(const std::string&)> set;
  };
  Option& add(const std::string& name, const std::string& help, std::string default_text);
  Option* find(const std::string& name);

  std::string command_;
  std::vector<std::string> args_;
  std::vector<Option> options_;
};

// Options every subcommand takes; main registers them before the subcommand adds its own.
// reps and warmup are 0 / -1 until given, so each subcommand picks its own defaults.
struct CommonOptions {
  std::string device = "cpu";
  int64_t threads = 0;  // 0 = all hardware threads
  int64_t reps = 0;
  int64_t warmup = -1;
  std::string output = "md";  // md, json or csv
  double bandwidth_gbs = 0;   // the reference of memory-bound rows; 0 = measure it once
};

// Repeated measurements of one quantity.
struct Stats {
  double mean = 0, stddev = 0, median = 0, min = 0, max = 0;
  std::vector<double> samples;
  static Stats of(std::vector<double> samples);  // sample standard deviation (n - 1)
};

// One reported row: named fields in column order. A field's key names it in JSON, its label
// heads its column in the table; json_only fields stay out of the table.
class Row {
 public:
  using Value = std::variant<std::string, int64_t, double, Stats>;
  struct Field {
    std::string key;
    std::string label;
    Value value;
    int precision = 2;
    bool json_only = false;
  };

  Row& add(const std::string& key, const std::string& label, std::string value);
  Row& add(const std::string& key, const std::string& label, int64_t value);
  Row& add(const std::string& key, const std::string& label, double value, int precision);
  Row& add_stats(const std::string& key, const std::string& label, Stats value, int precision);
  Row& add_json(const std::string& key, Value value);
  const std::vector<Field>& fields() const { return fields_; }

 private:
  std::vector<Field> fields_;
};

class Report {
 public:
  // Rows read the options once the subcommand has parsed them.
  explicit Report(const CommonOptions& common) : common_(common) {}
  // A row that already carries the build commit, the backend, the device's name and the CPU
  // threads, as every row must for results to be comparable across machines and builds.
  Row new_row(const std::string& backend, const std::string& device) const;
  void add(Row row) { rows_.push_back(std::move(row)); }
  void print_markdown(std::ostream& out) const;  // columns: union of labels, first-seen order
  void print_json(std::ostream& out) const;      // an array of objects, one per row
  // One column per key (union, first-seen order); a Stats field becomes KEY_mean, KEY_stddev,
  // KEY_median, KEY_min, KEY_max and KEY_samples (the samples joined by ';').
  void print_csv(std::ostream& out) const;
  void print(std::ostream& out, const std::string& format) const;  // md, json or csv
  bool empty() const { return rows_.empty(); }

 private:
  const CommonOptions& common_;
  std::vector<Row> rows_;
};

// Microseconds of each of `reps` runs of body, after `warmup` untimed ones.
std::vector<double> time_host(const std::function<void()>& body, int warmup, int reps);
// Per-rep rates (amount / time / unit), so that their spread is the spread of the rate itself.
Stats per_second(const std::vector<double>& us, double amount, double unit);

std::string build_commit();
std::string cpu_device_name();  // the CPU model, from /proc/cpuinfo where there is one
// cuda_device_name() on cuda, cpu_device_name() on cpu.
std::string device_name(const std::string& device);

// The GB/s memory-bound rows are compared with: --bandwidth-gbs, or else the device's read
// bandwidth, measured once per run (bandwidth.cpp) the first time a row asks.
double reference_gbps(const CommonOptions& common);
// The columns of a memory-bound row that moves `bytes` per rep: MiB moved, GB/s (per-rep
// spread) and % of reference_gbps(); the JSON also names the reference and where it came from.
void add_traffic(Row& row, double bytes, const std::vector<double>& us,
                 const CommonOptions& common);

// A portable random stream (std's distributions differ between standard libraries).
uint64_t splitmix64(uint64_t& state);
float uniform(uint64_t& state);  // in [-1, 1)

// n BF16 bit patterns drawn from N(0, std^2), the same for a seed on every platform and for any
// number of threads (bench_df11.cpp).
std::vector<uint16_t> make_matrix(int64_t n, double std, uint64_t seed, int threads);

// Subcommands.
int bench_bandwidth(ArgParser& args, const CommonOptions& common, Report& report);
int bench_df11(ArgParser& args, const CommonOptions& common, Report& report);
int bench_gemv(ArgParser& args, const CommonOptions& common, Report& report);
int bench_attention(ArgParser& args, const CommonOptions& common, Report& report);
int bench_sparse_attention(ArgParser& args, const CommonOptions& common, Report& report);
int bench_decode_step(ArgParser& args, const CommonOptions& common, Report& report);
int bench_e2e(ArgParser& args, const CommonOptions& common, Report& report);

}  // namespace slimrt_bench
