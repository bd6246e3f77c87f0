// slimrt-bench df11: how fast DF11 encodes and decodes a seeded Gaussian BF16 matrix, how small
// it gets against the entropy bound, and how close decoding comes to the memory system's copy
// bandwidth. Rows: encode (always on the CPU), decode and copy (on --device).
//
// GB/s counts, per test: encode, BF16 input bytes; decode, BF16 output bytes; copy, bytes read
// plus bytes written (a copy of the decoded size). "% of copy" is decode GB/s over copy GB/s.
// Decoding reads r = compressed_bytes / n bytes and writes 2 bytes per element, so at copy
// bandwidth it would output copy * 2 / (2 + r) GB/s: "% of bound" is decode GB/s over that.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "bench.h"
#include "bench_cuda.h"
#include "cpu/bf16.h"
#include "crc32.h"
#include "df11_cuda.h"
#include "parallel.h"
#include "slimrt/df11.h"

namespace slimrt_bench {

// splitmix64 and our own Box-Muller keep the matrix identical on every platform, which
// std::normal_distribution (its algorithm is left to each standard library) would not.
// Chunks draw from streams seeded by (seed, chunk), so the matrix does not depend on --threads.
std::vector<uint16_t> make_matrix(int64_t n, double std, uint64_t seed, int threads) {
  constexpr int64_t kChunk = int64_t{1} << 16;
  constexpr double kTwoPi = 6.283185307179586476925;
  std::vector<uint16_t> bits(n);
  slimrt::parallel_for((n + kChunk - 1) / kChunk, threads, [&](int64_t begin, int64_t end) {
    for (int64_t chunk = begin; chunk < end; ++chunk) {
      uint64_t state = seed ^ (static_cast<uint64_t>(chunk) * 0xD1B54A32D192ED03ull);
      splitmix64(state);
      const int64_t lo = chunk * kChunk, hi = std::min(n, lo + kChunk);
      for (int64_t i = lo; i < hi; i += 2) {
        // u1 in (0, 1] keeps log() finite; 53 bits is all a double holds.
        const double u1 = static_cast<double>((splitmix64(state) >> 11) + 1) * 0x1.0p-53;
        const double u2 = static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53;
        const double radius = std * std::sqrt(-2.0 * std::log(u1));
        bits[i] = slimrt::cpu::f32_to_bf16(static_cast<float>(radius * std::cos(kTwoPi * u2)));
        if (i + 1 < hi) {
          bits[i + 1] =
              slimrt::cpu::f32_to_bf16(static_cast<float>(radius * std::sin(kTwoPi * u2)));
        }
      }
    }
  });
  return bits;
}

namespace {

struct Df11Options {
  int64_t rows = 8192;
  int64_t cols = 4096;
  double std = 0.02;
  uint64_t seed = 0;
  int64_t encode_reps = 0;  // 0 until given: the default depends on --device
};

// ---------------------------------------------------------------------------------------------
// The matrix

// Shannon entropy of the exponent bytes: no code for them can average fewer bits, and the
// 8 sign+mantissa bits are stored raw.
double exponent_entropy_bits(const std::vector<uint16_t>& bits) {
  uint64_t counts[256] = {};
  for (uint16_t x : bits) ++counts[(x >> 7) & 0xFF];
  double entropy = 0;
  const double n = static_cast<double>(bits.size());
  for (uint64_t c : counts) {
    if (c == 0) continue;
    const double p = static_cast<double>(c) / n;
    entropy -= p * std::log2(p);
  }
  return entropy;
}

// ---------------------------------------------------------------------------------------------
// Checks and timing

void check_round_trip(const std::vector<uint16_t>& expected, const std::vector<uint16_t>& got,
                      const std::string& where) {
  if (std::memcmp(expected.data(), got.data(), expected.size() * sizeof(uint16_t)) == 0) return;
  int64_t first = 0, mismatches = 0;
  for (size_t i = expected.size(); i-- > 0;) {
    if (expected[i] != got[i]) {
      first = static_cast<int64_t>(i);
      ++mismatches;
    }
  }
  std::ostringstream message;
  message << where << " round trip is not bit-exact: " << mismatches << " of " << expected.size()
          << " values differ, the first at element " << first << " (expected 0x" << std::hex
          << expected[first] << ", got 0x" << got[first] << ")";
  throw CheckFailure(message.str());
}

// ---------------------------------------------------------------------------------------------
// Rows

struct Matrix {
  int64_t rows, cols, n;
  double std;
  uint64_t seed;
};

struct CodeFacts {
  int64_t compressed_bytes;
  double ratio;
  double bits_per_element;
  double entropy_bits;
  int max_code_length;
};

Row make_row(const Report& report, const std::string& backend, const std::string& device,
             const Matrix& m, const CodeFacts& code, const std::string& test) {
  Row row = report.new_row(backend, device);
  row.add("shape", "shape", std::to_string(m.rows) + "x" + std::to_string(m.cols));
  row.add("ratio", "ratio", code.ratio, 4);
  row.add("bits_per_element", "bits/elem", code.bits_per_element, 3);
  row.add("entropy_bound", "H bound", (code.entropy_bits + 8.0) / 16.0, 4);
  row.add("test", "test", test);
  return row;
}

void add_json_facts(Row& row, const Matrix& m, const CodeFacts& code, int warmup, int reps,
                    const char* gbps_counts) {
  row.add_json("rows", m.rows);
  row.add_json("cols", m.cols);
  row.add_json("numel", m.n);
  row.add_json("std", m.std);
  row.add_json("seed", std::to_string(m.seed));  // a string: JSON readers lose 64-bit integers
  row.add_json("compressed_bytes", code.compressed_bytes);
  row.add_json("exponent_entropy_bits", code.entropy_bits);
  row.add_json("max_code_length", int64_t{code.max_code_length});
  row.add_json("warmup", int64_t{warmup});
  row.add_json("reps", int64_t{reps});
  row.add_json("gbps_counts", std::string(gbps_counts));
}

void add_timing(Row& row, const std::vector<double>& us, int64_t n, double bytes) {
  row.add_stats("time_us", "time (us)", Stats::of(us), 1);
  row.add_stats("gelem_per_s", "Gelem/s", per_second(us, static_cast<double>(n), 1e9), 2);
  row.add_stats("gbps", "GB/s", per_second(us, bytes, 1e9), 2);
}

void add_bandwidth_share(Row& decode_row, const std::vector<double>& decode_us,
                         const std::vector<double>& copy_us, const Matrix& m,
                         const CodeFacts& code) {
  const double out_bytes = 2.0 * static_cast<double>(m.n);
  const double decode_gbps = per_second(decode_us, out_bytes, 1e9).mean;
  const double copy_gbps = per_second(copy_us, 2.0 * out_bytes, 1e9).mean;
  const double read_per_element =
      static_cast<double>(code.compressed_bytes) / static_cast<double>(m.n);
  const double bound_gbps = copy_gbps * 2.0 / (2.0 + read_per_element);
  decode_row.add("pct_of_copy", "% of copy", 100.0 * decode_gbps / copy_gbps, 1);
  decode_row.add("pct_of_bound", "% of bound", 100.0 * decode_gbps / bound_gbps, 1);
  decode_row.add_json("copy_gbps", copy_gbps);
  decode_row.add_json("bound_gbps", bound_gbps);
}

}  // namespace

int bench_df11(ArgParser& args, const CommonOptions& common, Report& report) {
  Df11Options options;
  args.add_int("rows", &options.rows, 1, int64_t{1} << 31, "matrix rows");
  args.add_int("cols", &options.cols, 1, int64_t{1} << 31, "matrix columns");
  args.add_double("std", &options.std, 0.0, 1e30, "standard deviation of the N(0, std) values");
  args.add_uint64("seed", &options.seed, "random seed");
  args.add_int("encode-reps", &options.encode_reps, 1, 1000000,
               "timed encodes (encoding always runs on the CPU)");
  args.set_default_text("reps", "5 on cpu, 200 on cuda");
  args.set_default_text("warmup", "1 on cpu, 20 on cuda");
  args.set_default_text("encode-reps", "--reps on cpu, 5 on cuda");
  if (!args.parse()) return 0;

  const bool cuda = common.device == "cuda";
  const int reps = static_cast<int>(args.given("reps") ? common.reps : cuda ? 200 : 5);
  const int warmup = static_cast<int>(args.given("warmup") ? common.warmup : cuda ? 20 : 1);
  const int encode_reps = static_cast<int>(args.given("encode-reps") ? options.encode_reps
                                           : cuda                    ? 5
                                                                     : reps);
  const int threads = slimrt::resolve_threads(static_cast<int>(common.threads), INT64_MAX);
  if (options.rows > (int64_t{1} << 36) / options.cols) {
    throw UsageError("--rows x --cols must be at most 2^36 elements");
  }
  const Matrix m{options.rows, options.cols, options.rows * options.cols, options.std,
                 options.seed};
  const double bf16_bytes = 2.0 * static_cast<double>(m.n);
  // Asked first, so that a machine without a usable GPU fails before minutes of encoding.
  const std::string gpu = cuda ? cuda_device_name() : std::string();

  std::cerr << "df11: " << m.rows << "x" << m.cols << " N(0, " << m.std << ") BF16, seed " << m.seed
            << ", " << threads << " CPU threads\n";
  const std::vector<uint16_t> bits = make_matrix(m.n, m.std, m.seed, threads);

  // The first encode is the warm-up and gives the tensor the decoders read.
  slimrt::Df11CompressOptions compress_options;
  compress_options.num_threads = threads;
  const slimrt::Df11Tensor tensor = slimrt::df11_compress(bits.data(), m.n, compress_options);
  const uint32_t crc = slimrt::crc32(bits.data(), bits.size() * sizeof(uint16_t), threads);
  if (tensor.crc32 != crc) {
    std::ostringstream message;
    message << "df11_compress recorded crc32 " << tensor.crc32 << ", the input's is " << crc;
    throw CheckFailure(message.str());
  }
  const slimrt::Df11View view = tensor.view();
  slimrt::df11_validate(view);

  CodeFacts code{};
  code.compressed_bytes = tensor.compressed_bytes();
  code.ratio = static_cast<double>(code.compressed_bytes) / bf16_bytes;
  code.bits_per_element =
      8.0 * static_cast<double>(code.compressed_bytes) / static_cast<double>(m.n);
  code.entropy_bits = exponent_entropy_bits(bits);
  code.max_code_length = slimrt::df11_build_table(view.lengths).table_bits;

  std::cerr << "df11: encode x" << encode_reps << "\n";
  const std::vector<double> encode_us =
      time_host([&] { slimrt::df11_compress(bits.data(), m.n, compress_options); }, 0, encode_reps);
  const std::string cpu = cpu_device_name();
  Row encode_row = make_row(report, "cpu", cpu, m, code, "encode");
  add_timing(encode_row, encode_us, m.n, bf16_bytes);
  add_json_facts(encode_row, m, code, 1, encode_reps, "bf16 input bytes");
  report.add(std::move(encode_row));

  std::vector<uint16_t> decoded(m.n);
  std::vector<double> decode_us, copy_us;
  std::string device = cpu;
  if (!cuda) {
    slimrt::df11_decode_cpu(view, decoded.data(), threads);
    check_round_trip(bits, decoded, "CPU decode");
    std::cerr << "df11: round trip bit-exact; decode x" << reps << " on the CPU\n";
    decode_us =
        time_host([&] { slimrt::df11_decode_cpu(view, decoded.data(), threads); }, warmup, reps);
    copy_us = time_host(
        [&] {
          slimrt::parallel_for(m.n, threads, [&](int64_t begin, int64_t end) {
            std::memcpy(decoded.data() + begin, bits.data() + begin,
                        static_cast<size_t>(end - begin) * sizeof(uint16_t));
          });
        },
        warmup, reps);
  } else {
    device = gpu;
    CudaStream stream;
    const slimrt::Df11DeviceTensor device_tensor(view);
    CudaBuffer out(bits.size() * sizeof(uint16_t));
    auto* out_bits = static_cast<uint16_t*>(out.data());
    device_tensor.decode_into(out_bits, stream.handle());
    stream.synchronize();
    out.download(decoded.data());
    check_round_trip(bits, decoded, "CUDA decode");
    std::cerr << "df11: round trip bit-exact; decode x" << reps << " on " << device << "\n";
    decode_us =
        time_cuda([&](void* s) { device_tensor.decode_into(out_bits, s); }, stream, warmup, reps);
    CudaBuffer source(out.bytes());
    source.upload(bits.data());
    copy_us = time_cuda([&](void* s) { cuda_copy(out.data(), source.data(), out.bytes(), s); },
                        stream, warmup, reps);
  }
  Row decode_row = make_row(report, common.device, device, m, code, "decode");
  add_timing(decode_row, decode_us, m.n, bf16_bytes);
  add_bandwidth_share(decode_row, decode_us, copy_us, m, code);
  add_json_facts(decode_row, m, code, warmup, reps, "bf16 output bytes");
  report.add(std::move(decode_row));

  Row copy_row = make_row(report, common.device, device, m, code, "copy");
  add_timing(copy_row, copy_us, m.n, 2.0 * bf16_bytes);
  add_json_facts(copy_row, m, code, warmup, reps, "bytes read + written");
  report.add(std::move(copy_row));
  return 0;
}

}  // namespace slimrt_bench
