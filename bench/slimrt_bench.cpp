// slimrt-bench: subcommand dispatch, option parsing and result formatting (see bench.h).
//
//   slimrt-bench df11 --device cuda -o json > df11.json
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <new>
#include <sstream>
#include <utility>

#include "bench.h"
#include "bench_cuda.h"
#include "check.h"
#include "parallel.h"

// The generated header holds the commit read at build time (see bench/CMakeLists.txt); a
// build without it may still pass -DSLIMRT_GIT_COMMIT="...".
#if __has_include("slimrt_bench_commit.h")
#include "slimrt_bench_commit.h"
#endif
#ifndef SLIMRT_GIT_COMMIT
#define SLIMRT_GIT_COMMIT "unknown"
#endif

namespace slimrt_bench {

// ---------------------------------------------------------------------------------------------
// Options

ArgParser::ArgParser(std::string command, std::vector<std::string> args)
    : command_(std::move(command)), args_(std::move(args)) {}

ArgParser::Option& ArgParser::add(const std::string& name, const std::string& help,
                                  std::string default_text) {
  Option option;
  option.name = name;
  option.help = help;
  option.default_text = std::move(default_text);
  options_.push_back(std::move(option));
  return options_.back();
}

ArgParser::Option* ArgParser::find(const std::string& name) {
  for (Option& option : options_) {
    if (option.name == name) return &option;
  }
  return nullptr;
}

void ArgParser::add_int(const std::string& name, int64_t* value, int64_t min, int64_t max,
                        const std::string& help) {
  add(name, help, std::to_string(*value)).set = [name, value, min, max](const std::string& s) {
    errno = 0;
    char* end = nullptr;
    const long long parsed = std::strtoll(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || errno == ERANGE) {
      throw UsageError("--" + name + ": expected an integer, got '" + s + "'");
    }
    if (parsed < min || parsed > max) {
      throw UsageError("--" + name + ": " + s + " is out of range [" + std::to_string(min) + ", " +
                       std::to_string(max) + "]");
    }
    *value = parsed;
  };
}

void ArgParser::add_uint64(const std::string& name, uint64_t* value, const std::string& help) {
  add(name, help, std::to_string(*value)).set = [name, value](const std::string& s) {
    errno = 0;
    char* end = nullptr;
    const unsigned long long parsed = std::strtoull(s.c_str(), &end, 10);
    // strtoull accepts "-1" and wraps it; a seed the user typed negative is a mistake.
    if (s.empty() || s[0] == '-' || *end != '\0' || errno == ERANGE) {
      throw UsageError("--" + name + ": expected a non-negative integer, got '" + s + "'");
    }
    *value = parsed;
  };
}

void ArgParser::add_double(const std::string& name, double* value, double min, double max,
                           const std::string& help) {
  std::ostringstream default_text;
  default_text << *value;
  Option& option = add(name, help, default_text.str());
  option.metavar = "X";
  option.set = [name, value, min, max](const std::string& s) {
    errno = 0;
    char* end = nullptr;
    const double parsed = std::strtod(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(parsed)) {
      throw UsageError("--" + name + ": expected a number, got '" + s + "'");
    }
    if (parsed < min || parsed > max) {
      std::ostringstream message;
      message << "--" << name << ": " << s << " is out of range [" << min << ", " << max << "]";
      throw UsageError(message.str());
    }
    *value = parsed;
  };
}

void ArgParser::add_choice(const std::string& name, std::string* value,
                           std::vector<std::string> choices, const std::string& help) {
  std::string joined;
  for (const std::string& c : choices) joined += (joined.empty() ? "" : "|") + c;
  Option& option = add(name, help, *value);
  option.choices_text = joined;
  option.set = [name, value, choices, joined](const std::string& s) {
    if (std::find(choices.begin(), choices.end(), s) == choices.end()) {
      throw UsageError("--" + name + ": expected one of " + joined + ", got '" + s + "'");
    }
    *value = s;
  };
}

void ArgParser::add_flag(const std::string& name, bool* value, const std::string& help) {
  Option& option = add(name, help, "");
  option.is_flag = true;
  option.set = [value](const std::string&) { *value = true; };
}

void ArgParser::add_string(const std::string& name, std::string* value, const std::string& help) {
  Option& option = add(name, help, *value);
  option.metavar = "PATH";
  option.set = [name, value](const std::string& s) {
    if (s.empty()) throw UsageError("--" + name + ": expected a value, got ''");
    *value = s;
  };
}

void ArgParser::add_int_list(const std::string& name, std::vector<int64_t>* values, int64_t min,
                             int64_t max, const std::string& help) {
  std::string default_text;
  for (int64_t v : *values) default_text += (default_text.empty() ? "" : ",") + std::to_string(v);
  Option& option = add(name, help, default_text);
  option.metavar = "N[,N...]";
  option.set = [name, values, min, max](const std::string& s) {
    std::vector<int64_t> parsed;
    for (size_t at = 0; at <= s.size();) {
      const size_t comma = std::min(s.find(',', at), s.size());
      const std::string item = s.substr(at, comma - at);
      errno = 0;
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || errno == ERANGE) {
        throw UsageError("--" + name + ": expected comma-separated integers, got '" + s + "'");
      }
      if (v < min || v > max) {
        throw UsageError("--" + name + ": " + item + " is out of range [" + std::to_string(min) +
                         ", " + std::to_string(max) + "]");
      }
      parsed.push_back(v);
      at = comma + 1;
    }
    *values = std::move(parsed);
  };
}

void ArgParser::add_double_list(const std::string& name, std::vector<double>* values, double min,
                                double max, const std::string& help) {
  std::ostringstream default_text;
  for (size_t i = 0; i < values->size(); ++i) default_text << (i ? "," : "") << (*values)[i];
  Option& option = add(name, help, default_text.str());
  option.metavar = "X[,X...]";
  option.set = [name, values, min, max](const std::string& s) {
    std::vector<double> parsed;
    for (size_t at = 0; at <= s.size();) {
      const size_t comma = std::min(s.find(',', at), s.size());
      const std::string item = s.substr(at, comma - at);
      errno = 0;
      char* end = nullptr;
      const double v = std::strtod(item.c_str(), &end);
      if (item.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) {
        throw UsageError("--" + name + ": expected comma-separated numbers, got '" + s + "'");
      }
      if (v < min || v > max) {
        std::ostringstream message;
        message << "--" << name << ": " << item << " is out of range [" << min << ", " << max
                << "]";
        throw UsageError(message.str());
      }
      parsed.push_back(v);
      at = comma + 1;
    }
    *values = std::move(parsed);
  };
}

void ArgParser::add_alias(char letter, const std::string& name) {
  Option* option = find(name);
  SLIMRT_CHECK(option != nullptr, "add_alias: no option --" << name);
  option->alias = letter;
}

bool ArgParser::parse() {
  for (size_t i = 0; i < args_.size(); ++i) {
    std::string arg = args_[i];
    if (arg == "-h" || arg == "--help") {
      std::cout << usage();
      return false;
    }
    if (arg.size() == 2 && arg[0] == '-' && arg[1] != '-') {
      const Option* aliased = nullptr;
      for (const Option& option : options_) {
        if (option.alias == arg[1]) aliased = &option;
      }
      if (aliased == nullptr) throw UsageError("unknown option " + arg);
      arg = "--" + aliased->name;
    }
    if (arg.rfind("--", 0) != 0) throw UsageError("unexpected argument '" + arg + "'");
    const size_t eq = arg.find('=');
    const std::string name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    Option* option = find(name);
    if (option == nullptr) throw UsageError("unknown option --" + name);
    if (option->given) throw UsageError("--" + name + " given twice");
    option->given = true;
    if (option->is_flag) {
      if (eq != std::string::npos) throw UsageError("--" + name + " takes no value");
      option->set("");
      continue;
    }
    if (eq != std::string::npos) {
      option->set(arg.substr(eq + 1));
    } else if (i + 1 < args_.size()) {
      option->set(args_[++i]);
    } else {
      throw UsageError("--" + name + " needs a value");
    }
  }
  return true;
}

void ArgParser::set_default_text(const std::string& name, const std::string& text) {
  if (Option* option = find(name)) option->default_text = text;
}

bool ArgParser::given(const std::string& name) const {
  for (const Option& option : options_) {
    if (option.name == name) return option.given;
  }
  return false;
}

std::string ArgParser::usage() const {
  std::ostringstream out;
  out << "usage: slimrt-bench " << command_ << " [options]\n\noptions:\n";
  for (const Option& option : options_) {
    std::string left = option.alias != 0 ? std::string("  -") + option.alias + ", --" + option.name
                                         : "      --" + option.name;
    if (!option.is_flag) {
      left += " " + (option.choices_text.empty() ? option.metavar : option.choices_text);
    }
    out << std::left << std::setw(30) << left << " " << option.help;
    if (!option.is_flag && !option.default_text.empty()) {
      out << " (default: " << option.default_text << ")";
    }
    out << "\n";
  }
  out << std::left << std::setw(30) << "  -h, --help"
      << " "
      << "show this help\n";
  return out.str();
}

// ---------------------------------------------------------------------------------------------
// Statistics and rows

Stats Stats::of(std::vector<double> samples) {
  Stats s;
  s.samples = std::move(samples);
  const size_t n = s.samples.size();
  if (n == 0) return s;
  std::vector<double> sorted = s.samples;
  std::sort(sorted.begin(), sorted.end());
  s.min = sorted.front();
  s.max = sorted.back();
  s.median = n % 2 == 1 ? sorted[n / 2] : 0.5 * (sorted[n / 2 - 1] + sorted[n / 2]);
  double sum = 0;
  for (double x : sorted) sum += x;
  s.mean = sum / static_cast<double>(n);
  double squares = 0;
  for (double x : sorted) squares += (x - s.mean) * (x - s.mean);
  s.stddev = n > 1 ? std::sqrt(squares / static_cast<double>(n - 1)) : 0.0;
  return s;
}

Row& Row::add(const std::string& key, const std::string& label, std::string value) {
  fields_.push_back({key, label, std::move(value), 0, false});
  return *this;
}

Row& Row::add(const std::string& key, const std::string& label, int64_t value) {
  fields_.push_back({key, label, value, 0, false});
  return *this;
}

Row& Row::add(const std::string& key, const std::string& label, double value, int precision) {
  fields_.push_back({key, label, value, precision, false});
  return *this;
}

Row& Row::add_stats(const std::string& key, const std::string& label, Stats value, int precision) {
  fields_.push_back({key, label, std::move(value), precision, false});
  return *this;
}

Row& Row::add_json(const std::string& key, Value value) {
  fields_.push_back({key, key, std::move(value), 0, true});
  return *this;
}

namespace {

std::string iso_time_utc() {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return text;
}

std::string fixed(double x, int precision) {
  std::ostringstream out;
  out << std::fixed << std::setprecision(precision) << x;
  return out.str();
}

std::string table_cell(const Row::Field& field) {
  if (const auto* s = std::get_if<std::string>(&field.value)) return *s;
  if (const auto* i = std::get_if<int64_t>(&field.value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&field.value)) return fixed(*d, field.precision);
  const Stats& s = std::get<Stats>(field.value);
  return fixed(s.mean, field.precision) + " ± " + fixed(s.stddev, field.precision);
}

// Display width: "±" is two bytes in UTF-8 but one column.
size_t display_width(const std::string& s) {
  size_t width = 0;
  for (unsigned char c : s) width += (c & 0xC0) != 0x80;
  return width;
}

std::string json_string(const std::string& s) {
  std::ostringstream out;
  out << '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out << "\\\"";
        break;
      case '\\':
        out << "\\\\";
        break;
      case '\n':
        out << "\\n";
        break;
      case '\t':
        out << "\\t";
        break;
      case '\r':
        out << "\\r";
        break;
      default:
        if (c < 0x20) {
          char escaped[8];
          std::snprintf(escaped, sizeof(escaped), "\\u%04x", c);
          out << escaped;
        } else {
          out << c;
        }
    }
  }
  out << '"';
  return out.str();
}

// JSON has no NaN or infinity.
std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char text[32];
  std::snprintf(text, sizeof(text), "%.10g", x);
  return text;
}

std::string json_value(const Row::Value& value) {
  if (const auto* s = std::get_if<std::string>(&value)) return json_string(*s);
  if (const auto* i = std::get_if<int64_t>(&value)) return std::to_string(*i);
  if (const auto* d = std::get_if<double>(&value)) return json_number(*d);
  const Stats& s = std::get<Stats>(value);
  std::string samples;
  for (double x : s.samples) samples += (samples.empty() ? "" : ", ") + json_number(x);
  return "{\"mean\": " + json_number(s.mean) + ", \"stddev\": " + json_number(s.stddev) +
         ", \"median\": " + json_number(s.median) + ", \"min\": " + json_number(s.min) +
         ", \"max\": " + json_number(s.max) + ", \"samples\": [" + samples + "]}";
}

}  // namespace

Row Report::new_row(const std::string& backend, const std::string& device) const {
  Row row;
  row.add("commit", "commit", build_commit());
  row.add("device", "device", device);
  row.add("backend", "backend", backend);
  // Resolved as the kernels resolve them, so that the row says what ran.
  row.add("threads", "threads",
          int64_t{slimrt::resolve_threads(static_cast<int>(common_.threads), INT64_MAX)});
  row.add_json("test_time", iso_time_utc());
  return row;
}

void Report::print_markdown(std::ostream& out) const {
  struct Column {
    std::string label;
    bool numeric = false;
    size_t width = 0;
  };
  std::vector<Column> columns;
  auto column_of = [&columns](const std::string& label) -> size_t {
    for (size_t c = 0; c < columns.size(); ++c) {
      if (columns[c].label == label) return c;
    }
    columns.push_back({label, false, display_width(label)});
    return columns.size() - 1;
  };
  std::vector<std::vector<std::string>> cells(rows_.size());
  for (size_t r = 0; r < rows_.size(); ++r) {
    for (const Row::Field& field : rows_[r].fields()) {
      if (field.json_only) continue;
      const size_t c = column_of(field.label);
      if (cells[r].size() <= c) cells[r].resize(c + 1);
      // A '|' in a cell ("q|k|v") would end it: markdown's escape keeps it one cell.
      for (char ch : table_cell(field)) {
        cells[r][c] += ch == '|' ? std::string("\\|") : std::string(1, ch);
      }
      columns[c].numeric = columns[c].numeric || !std::holds_alternative<std::string>(field.value);
      columns[c].width = std::max(columns[c].width, display_width(cells[r][c]));
    }
  }
  auto pad = [](const std::string& s, size_t width, bool right) {
    const std::string fill(width - display_width(s), ' ');
    return right ? fill + s : s + fill;
  };
  out << "|";
  for (const Column& c : columns) out << " " << pad(c.label, c.width, c.numeric) << " |";
  out << "\n|";
  for (const Column& c : columns) {
    out << " " << std::string(c.width - (c.numeric ? 1 : 0), '-') << (c.numeric ? ":" : "") << " |";
  }
  out << "\n";
  for (auto& row : cells) {
    row.resize(columns.size());
    out << "|";
    for (size_t c = 0; c < columns.size(); ++c) {
      out << " " << pad(row[c], columns[c].width, columns[c].numeric) << " |";
    }
    out << "\n";
  }
}

void Report::print_json(std::ostream& out) const {
  out << "[\n";
  for (size_t r = 0; r < rows_.size(); ++r) {
    out << "  {";
    const auto& fields = rows_[r].fields();
    for (size_t f = 0; f < fields.size(); ++f) {
      out << (f == 0 ? "" : ", ") << json_string(fields[f].key) << ": "
          << json_value(fields[f].value);
    }
    out << "}" << (r + 1 < rows_.size() ? "," : "") << "\n";
  }
  out << "]\n";
}

namespace {

std::string csv_cell(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string quoted = "\"";
  for (char c : s) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

std::string csv_number(double x) { return std::isfinite(x) ? json_number(x) : std::string(); }

// A field's CSV columns, as (key, cell) pairs.
std::vector<std::pair<std::string, std::string>> csv_columns(const Row::Field& field) {
  if (const auto* s = std::get_if<std::string>(&field.value)) return {{field.key, csv_cell(*s)}};
  if (const auto* i = std::get_if<int64_t>(&field.value)) {
    return {{field.key, std::to_string(*i)}};
  }
  if (const auto* d = std::get_if<double>(&field.value)) return {{field.key, csv_number(*d)}};
  const Stats& s = std::get<Stats>(field.value);
  std::string samples;
  for (double x : s.samples) samples += (samples.empty() ? "" : ";") + csv_number(x);
  return {
      {field.key + "_mean", csv_number(s.mean)},     {field.key + "_stddev", csv_number(s.stddev)},
      {field.key + "_median", csv_number(s.median)}, {field.key + "_min", csv_number(s.min)},
      {field.key + "_max", csv_number(s.max)},       {field.key + "_samples", samples}};
}

}  // namespace

void Report::print_csv(std::ostream& out) const {
  std::vector<std::string> keys;
  std::vector<std::vector<std::pair<std::string, std::string>>> rows;
  for (const Row& row : rows_) {
    rows.emplace_back();
    for (const Row::Field& field : row.fields()) {
      for (auto& column : csv_columns(field)) {
        if (std::find(keys.begin(), keys.end(), column.first) == keys.end()) {
          keys.push_back(column.first);
        }
        rows.back().push_back(std::move(column));
      }
    }
  }
  for (size_t k = 0; k < keys.size(); ++k) out << (k == 0 ? "" : ",") << keys[k];
  out << "\n";
  for (const auto& row : rows) {
    for (size_t k = 0; k < keys.size(); ++k) {
      if (k > 0) out << ",";
      for (const auto& column : row) {
        if (column.first == keys[k]) out << column.second;
      }
    }
    out << "\n";
  }
}

void Report::print(std::ostream& out, const std::string& format) const {
  if (format == "json") {
    print_json(out);
  } else if (format == "csv") {
    print_csv(out);
  } else {
    print_markdown(out);
  }
}

// ---------------------------------------------------------------------------------------------
// Machine and build

std::vector<double> time_host(const std::function<void()>& body, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) body();
  std::vector<double> us(reps);
  for (int i = 0; i < reps; ++i) {
    const auto start = std::chrono::steady_clock::now();
    body();
    const auto stop = std::chrono::steady_clock::now();
    us[i] = std::chrono::duration<double, std::micro>(stop - start).count();
  }
  return us;
}

Stats per_second(const std::vector<double>& us, double amount, double unit) {
  std::vector<double> rates(us.size());
  for (size_t i = 0; i < us.size(); ++i) rates[i] = amount / (us[i] * 1e-6) / unit;
  return Stats::of(std::move(rates));
}

std::string build_commit() { return SLIMRT_GIT_COMMIT; }

std::string device_name(const std::string& device) {
  return device == "cuda" ? cuda_device_name() : cpu_device_name();
}

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float uniform(uint64_t& state) {
  return static_cast<float>(static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-52 - 1.0);
}

std::string cpu_device_name() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  // x86 names its CPU "model name"; some ARM kernels only give "Hardware" or "Model".
  for (const char* key : {"model name", "Hardware", "Model"}) {
    cpuinfo.clear();
    cpuinfo.seekg(0);
    while (std::getline(cpuinfo, line)) {
      if (line.rfind(key, 0) != 0) continue;
      const size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(colon + 1);
      name.erase(0, name.find_first_not_of(" \t"));
      name.erase(name.find_last_not_of(" \t") + 1);
      if (!name.empty()) return name;
    }
  }
  return "unknown CPU";
}

}  // namespace slimrt_bench

// ---------------------------------------------------------------------------------------------
// Dispatch

namespace {

using slimrt_bench::ArgParser;
using slimrt_bench::CommonOptions;
using slimrt_bench::Report;

struct Subcommand {
  const char* name;
  const char* summary;
  int (*run)(ArgParser&, const CommonOptions&, Report&);
};

const Subcommand kSubcommands[] = {
    {"bandwidth", "the device's read, write and copy bandwidth (the memory-bound reference)",
     slimrt_bench::bench_bandwidth},
    {"df11", "DF11 encode/decode throughput, compression ratio, bit-exact round trip",
     slimrt_bench::bench_df11},
    {"gemv", "decode-step matmuls at 1-64 rows: BF16, DF11 decoded ahead, DF11 fused",
     slimrt_bench::bench_gemv},
    {"attention", "paged attention over dense pages: decode and prefill",
     slimrt_bench::bench_attention},
    {"sparse-attention", "decode attention over compressed KV pages against dense pages",
     slimrt_bench::bench_sparse_attention},
    {"decode-step", "one full model step at a batch and context (random or loaded model)",
     slimrt_bench::bench_decode_step},
    {"e2e", "a model file loaded in C++: prompt processing (ppN) and generation (tgN)",
     slimrt_bench::bench_e2e},
};

void print_usage(std::ostream& out) {
  out << "usage: slimrt-bench COMMAND [options]   (slimrt-bench COMMAND --help for options)\n\n"
         "commands:\n";
  for (const Subcommand& s : kSubcommands) {
    out << "  " << std::left << std::setw(18) << s.name << s.summary << "\n";
  }
  out << "\nResults go to stdout as a markdown table (-o json|csv for every raw sample); "
         "progress to stderr.\nExit codes: 0 done, 1 a failed check or error, 2 a bad command line."
         "\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    print_usage(std::cerr);
    return 2;
  }
  const std::string command = args[0];
  if (command == "-h" || command == "--help" || command == "help") {
    print_usage(std::cout);
    return 0;
  }
  const Subcommand* subcommand = nullptr;
  for (const Subcommand& s : kSubcommands) {
    if (command == s.name) subcommand = &s;
  }
  if (subcommand == nullptr) {
    std::cerr << "slimrt-bench: unknown command '" << command << "'\n\n";
    print_usage(std::cerr);
    return 2;
  }

  ArgParser parser(command, std::vector<std::string>(args.begin() + 1, args.end()));
  CommonOptions common;
  parser.add_choice("device", &common.device, {"cpu", "cuda"}, "where to run");
  parser.add_int("threads", &common.threads, 0, 4096, "CPU threads, 0 = all hardware threads");
  parser.add_alias('t', "threads");
  parser.add_int("reps", &common.reps, 1, 1000000, "timed repetitions");
  parser.add_alias('r', "reps");
  parser.add_int("warmup", &common.warmup, 0, 1000000, "untimed repetitions before them");
  parser.add_choice("output", &common.output, {"md", "json", "csv"},
                    "markdown table, or JSON / CSV with every sample");
  parser.add_alias('o', "output");
  parser.add_double("bandwidth-gbs", &common.bandwidth_gbs, 0, 1e6,
                    "GB/s that memory-bound rows are compared with, 0 = measure the read "
                    "bandwidth once");

  try {
    Report report(common);
    const int rc = subcommand->run(parser, common, report);
    if (rc != 0 || report.empty()) return rc;  // empty: --help was printed
    report.print(std::cout, common.output);
    return 0;
  } catch (const slimrt_bench::UsageError& e) {
    std::cerr << "slimrt-bench " << command << ": " << e.what() << "\n"
              << "run 'slimrt-bench " << command << " --help' for the options\n";
    return 2;
  } catch (const slimrt_bench::CheckFailure& e) {
    std::cerr << "slimrt-bench " << command << ": FAILED: " << e.what() << "\n";
    return 1;
  } catch (const slimrt::Error& e) {
    std::cerr << "slimrt-bench " << command << ": slimrt error: " << e.what() << "\n";
    return 1;
  } catch (const std::bad_alloc&) {
    std::cerr << "slimrt-bench " << command << ": out of host memory\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "slimrt-bench " << command << ": error: " << e.what() << "\n";
    return 1;
  }
}
