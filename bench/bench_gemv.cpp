// slimrt-bench gemv: the matmuls of a decode step at 1 to 64 input rows, three ways on one
// device: BF16 weights (ops::matmul_bf16), DF11 weights decoded into scratch then multiplied
// (ops::decode_df11 + ops::matmul_bf16, the path for large batches) and DF11 multiplied as it
// decodes (ops::matmul_df11, up to the rows the device's fused kernel takes). The shapes are
// Llama-3.1-8B's or SmolLM2-135M's (--model), or one --k x --n matrix; seeded N(0, 0.02) weights,
// as in slimrt-bench df11.
//
// Bytes moved (bench.h's add_traffic, against the measured bandwidth): 2 per weight for BF16;
// the compressed bytes for DF11 fused (all it reads); for DF11 decoded ahead the compressed
// bytes plus 2 per weight written and 2 read back. A GEMV that streams its weights runs at the
// device's read bandwidth, so "% of BW" is how close a way comes to the memory bound of the
// bytes it has to move. "x BF16" is BF16's time over its own.
#include <algorithm>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "arena.h"
#include "bench.h"
#include "cpu/bf16.h"
#include "device.h"
#include "device_memory.h"
#include "kernel_args.h"
#include "ops/df11_decode.h"
#include "ops/matmul_bf16.h"
#include "ops/matmul_df11.h"
#include "slimrt/df11.h"

namespace slimrt_bench {
namespace {

struct Shape {
  const char* name;
  int64_t k;
  std::vector<int64_t> n;  // one matrix per entry, sharing the input
};

const std::vector<Shape> kLlama8b = {
    {"q|k|v", 4096, {4096, 1024, 1024}}, {"o", 4096, {4096}},
    {"gate|up", 4096, {14336, 14336}},   {"down", 14336, {4096}},
    {"lm_head", 4096, {128256}},
};
const std::vector<Shape> kSmolLm2 = {
    {"q|k|v", 576, {576, 192, 192}}, {"o", 576, {576}},         {"gate|up", 576, {1536, 1536}},
    {"down", 1536, {576}},           {"lm_head", 576, {49152}},
};

// Device memory, freed with the device.
struct Matrix {
  uint16_t* dense = nullptr;
  slimrt::Df11View df11;
  int64_t compressed_bytes = 0;
};

Matrix upload(DeviceMemory& memory, const std::vector<uint16_t>& bits, int threads) {
  const slimrt::Df11Tensor t =
      slimrt::df11_compress(bits.data(), static_cast<int64_t>(bits.size()), {12, threads});
  Matrix m;
  m.dense = memory.copy(bits);
  m.df11.lengths = memory.copy(std::vector<uint8_t>(t.lengths.begin(), t.lengths.end()));
  m.df11.bitstream = memory.copy(t.bitstream);
  m.df11.bitstream_words = static_cast<int64_t>(t.bitstream.size());
  m.df11.index = memory.copy(t.index);
  m.df11.signmant = memory.copy(t.signmant);
  m.df11.numel = t.numel;
  m.compressed_bytes = t.compressed_bytes();
  memory.device.prepare_df11(m.df11);
  return m;
}

}  // namespace

int bench_gemv(ArgParser& args, const CommonOptions& common, Report& report) {
  std::vector<int64_t> row_counts = {1, 2, 4, 8};
  args.add_int_list("rows", &row_counts, 1, 64, "input rows (tokens of a decode step)");
  std::string model = "llama8b";
  args.add_choice("model", &model, {"llama8b", "smollm2", "custom"},
                  "whose matmul shapes: Llama-3.1-8B, SmolLM2-135M, or one --k x --n matrix");
  int64_t k = 4096, n = 4096;
  args.add_int("k", &k, 1, 1 << 20, "input width of the custom matrix");
  args.add_int("n", &n, 1, 1 << 20, "output width of the custom matrix");
  std::string only = "all";
  args.add_choice("shape", &only, {"all", "q|k|v", "o", "gate|up", "down", "lm_head"},
                  "the matmuls to time (of --model llama8b or smollm2)");
  args.set_default_text("reps", "50");
  args.set_default_text("warmup", "5");
  if (!args.parse()) return 0;
  if (model != "custom" && (args.given("k") || args.given("n"))) {
    throw UsageError("--k and --n shape the matrix of --model custom");
  }
  if (model == "custom" && only != "all") {
    throw UsageError("--shape picks a matmul of --model llama8b or smollm2, not custom");
  }
  const int64_t reps = common.reps > 0 ? common.reps : 50;
  const int64_t warmup = common.warmup >= 0 ? common.warmup : 5;
  const std::vector<Shape> shapes = model == "llama8b"   ? kLlama8b
                                    : model == "smollm2" ? kSmolLm2
                                                         : std::vector<Shape>{{"custom", k, {n}}};
  const int threads = static_cast<int>(common.threads);
  const std::unique_ptr<slimrt::Device> device = slimrt::make_device(common.device, threads);
  const std::string name = device_name(common.device);
  const int64_t max_rows = *std::max_element(row_counts.begin(), row_counts.end());
  reference_gbps(common);  // measured before the weights take their memory

  for (const Shape& shape : shapes) {
    if (only != "all" && only != shape.name) continue;
    DeviceMemory memory{*device, {}};
    std::cerr << "gemv " << model << " " << shape.name << ": drawing and compressing the weights\n";
    std::vector<Matrix> matrices;
    int64_t all_n = 0, dense_bytes = 0, compressed_bytes = 0, decoded_elements = 0;
    for (size_t j = 0; j < shape.n.size(); ++j) {
      matrices.push_back(
          upload(memory, make_matrix(shape.n[j] * shape.k, 0.02, j + 1, threads), threads));
      all_n += shape.n[j];
      dense_bytes += shape.n[j] * shape.k * 2;
      compressed_bytes += matrices.back().compressed_bytes;
      decoded_elements += slimrt::align_up(shape.n[j] * shape.k * 2) / 2;  // as the engine's slots
    }
    const std::vector<uint16_t> x_host = make_matrix(max_rows * shape.k, 1.0, 99, threads);
    const uint16_t* x_bf16 = memory.copy(x_host);
    std::vector<float> x_f32(x_host.size());
    std::transform(x_host.begin(), x_host.end(), x_f32.begin(), slimrt::cpu::bf16_to_f32);
    const void* x_data = slimrt::ops::matmul_input_bytes(*device, 1, 1) > 0
                             ? static_cast<const void*>(x_bf16)
                             : static_cast<const void*>(memory.copy(x_f32));
    auto* out = static_cast<float*>(memory.allocate(max_rows * all_n * 4));
    auto* decoded = static_cast<uint16_t*>(memory.allocate(decoded_elements * 2));
    std::vector<slimrt::ops::Df11Product> products;
    for (size_t j = 0, offset = 0; j < shape.n.size(); offset += max_rows * shape.n[j], ++j) {
      products.push_back({matrices[j].df11, shape.n[j], nullptr, out + offset});
    }
    const int count = static_cast<int>(products.size());
    void* scratch = memory.allocate(
        slimrt::ops::matmul_df11_scratch_bytes(*device, products.data(), count, shape.k, max_rows));

    for (const int64_t rows : row_counts) {
      const slimrt::MatmulInput x{x_data, rows, shape.k};
      struct Way {
        const char* name;
        int64_t bytes;
        std::function<void()> body;
      };
      std::vector<Way> ways;
      ways.push_back({"bf16", dense_bytes, [&] {
                        // One GEMM over back-to-back weights costs as much as the separate ones:
                        // time them as the engine runs them, one per matrix.
                        for (size_t j = 0; j < matrices.size(); ++j) {
                          slimrt::ops::matmul_bf16(*device, x, matrices[j].dense, shape.n[j],
                                                   nullptr, products[j].out);
                        }
                      }});
      ways.push_back({"df11 decoded ahead", compressed_bytes + 2 * 2 * (all_n * shape.k), [&] {
                        uint16_t* at = decoded;
                        for (size_t j = 0; j < matrices.size(); ++j) {
                          slimrt::ops::decode_df11(*device, matrices[j].df11, at);
                          at += slimrt::align_up(shape.n[j] * shape.k * 2) / 2;
                        }
                        slimrt::ops::matmul_bf16(*device, x, decoded, all_n, nullptr, out);
                      }});
      if (rows <= slimrt::ops::matmul_df11_max_rows(*device, shape.k, count)) {
        ways.push_back({"df11 fused", compressed_bytes, [&] {
                          slimrt::ops::matmul_df11(*device, x, products.data(), count, scratch);
                        }});
      }
      double bf16_us = 0;
      for (const Way& way : ways) {
        const std::vector<double> us = time_us(*device, way.body, warmup, reps);
        const Stats time = Stats::of(us);
        if (bf16_us == 0) bf16_us = time.median;  // the first way
        Row row = report.new_row(common.device, name);
        row.add("model", "model", model);
        row.add("shape", "matmul", std::string(shape.name));
        row.add("k", "k", shape.k);
        row.add("n", "n", all_n);
        row.add("rows", "rows", rows);
        row.add("way", "weights", std::string(way.name));
        row.add_stats("time_us", "time (us)", time, 1);
        add_traffic(row, static_cast<double>(way.bytes), us, common);
        row.add("speed_vs_bf16", "x BF16", bf16_us / time.median, 2);
        row.add_json("compressed_bytes", compressed_bytes);
        report.add(std::move(row));
      }
    }
  }
  return 0;
}

}  // namespace slimrt_bench
