// slimrt-bench bandwidth, and the measured reference of memory-bound rows (bandwidth.h).
//
// CPU: each thread sums (read), fills (write) or memcpy's (copy) its contiguous share of a
// buffer, so the figures are what all cores together get from memory; the buffer is written
// once before timing so its pages exist. CUDA: a kernel of 16-byte loads reduced per thread
// (read), a kernel of 16-byte stores (write) and cudaMemcpyAsync device to device (copy).
#include "bandwidth.h"

#include <algorithm>
#include <cstring>
#include <iostream>
#include <map>
#include <numeric>

#include "bench.h"
#include "bench_cuda.h"
#include "thread_pool.h"

namespace slimrt_bench {
namespace {

BandwidthSamples measure_cpu(int threads, int64_t bytes, int warmup, int reps) {
  slimrt::ThreadPool pool(threads);
  const int64_t words = bytes / 8;
  std::vector<uint64_t> a(words), b(words);
  std::iota(a.begin(), a.end(), uint64_t{0});
  std::fill(b.begin(), b.end(), uint64_t{1});
  const int parts = pool.size();
  const auto share = [&](int64_t p) {
    return std::pair<int64_t, int64_t>{words * p / parts, words * (p + 1) / parts};
  };
  std::vector<uint64_t> sums(parts, 0);
  BandwidthSamples s;
  s.bytes = words * 8;
  s.read_us = time_host(
      [&] {
        pool.run(parts, [&](int64_t p0, int64_t p1) {
          for (int64_t p = p0; p < p1; ++p) {
            const auto [begin, end] = share(p);
            // Four accumulators: one would serialise the adds and measure latency instead.
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            int64_t i = begin;
            for (; i + 4 <= end; i += 4) {
              s0 += a[i];
              s1 += a[i + 1];
              s2 += a[i + 2];
              s3 += a[i + 3];
            }
            for (; i < end; ++i) s0 += a[i];
            sums[p] += s0 + s1 + s2 + s3;
          }
        });
      },
      warmup, reps);
  uint64_t fill = 0;
  s.write_us = time_host(
      [&] {
        ++fill;  // a new value each rep, so no rep can be skipped as a repeat
        pool.run(parts, [&](int64_t p0, int64_t p1) {
          for (int64_t p = p0; p < p1; ++p) {
            const auto [begin, end] = share(p);
            std::fill(b.begin() + begin, b.begin() + end, fill);
          }
        });
      },
      warmup, reps);
  s.copy_us = time_host(
      [&] {
        pool.run(parts, [&](int64_t p0, int64_t p1) {
          for (int64_t p = p0; p < p1; ++p) {
            const auto [begin, end] = share(p);
            std::memcpy(b.data() + begin, a.data() + begin,
                        static_cast<size_t>(end - begin) * sizeof(uint64_t));
          }
        });
      },
      warmup, reps);
  // The sums are used, so the compiler keeps the loads.
  volatile uint64_t sink = std::accumulate(sums.begin(), sums.end(), b[words / 2]);
  (void)sink;
  return s;
}

BandwidthSamples measure_cuda(int64_t bytes, int warmup, int reps) {
  CudaStream stream;
  const size_t n = static_cast<size_t>(bytes / 16 * 16);
  CudaBuffer a(n), b(n), sink(64);
  BandwidthSamples s;
  s.bytes = static_cast<int64_t>(n);
  s.read_us =
      time_cuda([&](void* st) { cuda_read(a.data(), n, sink.data(), st); }, stream, warmup, reps);
  s.write_us = time_cuda([&](void* st) { cuda_write(b.data(), n, st); }, stream, warmup, reps);
  s.copy_us =
      time_cuda([&](void* st) { cuda_copy(b.data(), a.data(), n, st); }, stream, warmup, reps);
  return s;
}

}  // namespace

BandwidthSamples measure_bandwidth(const std::string& device, int threads, int64_t bytes,
                                   int warmup, int reps) {
  return device == "cuda" ? measure_cuda(bytes, warmup, reps)
                          : measure_cpu(threads, bytes, warmup, reps);
}

double reference_gbps(const CommonOptions& common) {
  if (common.bandwidth_gbs > 0) return common.bandwidth_gbs;
  static std::map<std::string, double> measured;  // once per run and device
  auto it = measured.find(common.device);
  if (it == measured.end()) {
    std::cerr << "measuring the " << common.device
              << " read bandwidth once (--bandwidth-gbs gives it instead)\n";
    const BandwidthSamples s =
        measure_bandwidth(common.device, static_cast<int>(common.threads), kBandwidthBytes, 1, 5);
    it = measured.emplace(common.device, per_second(s.read_us, s.bytes, 1e9).median).first;
  }
  return it->second;
}

void add_traffic(Row& row, double bytes, const std::vector<double>& us,
                 const CommonOptions& common) {
  const Stats gbps = per_second(us, bytes, 1e9);
  const double reference = reference_gbps(common);
  row.add("mib_moved", "MiB moved", bytes / (1 << 20), 1);
  row.add_stats("gbps", "GB/s", gbps, 1);
  row.add("pct_of_bandwidth", "% of BW", 100.0 * gbps.mean / reference, 1);
  row.add_json("bytes_moved", static_cast<int64_t>(bytes));
  row.add_json("bandwidth_gbs", reference);
  row.add_json("bandwidth_source",
               std::string(common.bandwidth_gbs > 0 ? "--bandwidth-gbs"
                                                    : "measured read bandwidth, median of 5"));
}

int bench_bandwidth(ArgParser& args, const CommonOptions& common, Report& report) {
  int64_t size_mib = kBandwidthBytes >> 20;
  args.add_int("size-mib", &size_mib, 1, int64_t{1} << 20, "buffer size in MiB");
  args.set_default_text("reps", "10");
  args.set_default_text("warmup", "1");
  if (!args.parse()) return 0;
  const int reps = common.reps > 0 ? static_cast<int>(common.reps) : 10;
  const int warmup = common.warmup >= 0 ? static_cast<int>(common.warmup) : 1;
  const std::string device = device_name(common.device);
  std::cerr << "bandwidth: " << size_mib << " MiB on " << device << "\n";
  const BandwidthSamples s = measure_bandwidth(common.device, static_cast<int>(common.threads),
                                               size_mib << 20, warmup, reps);
  struct Test {
    const char* name;
    const std::vector<double>& us;
    double bytes;
    const char* counts;
  };
  const double b = static_cast<double>(s.bytes);
  for (const Test& t :
       {Test{"read", s.read_us, b, "bytes read"}, Test{"write", s.write_us, b, "bytes written"},
        Test{"copy", s.copy_us, 2 * b, "bytes read + bytes written"}}) {
    Row row = report.new_row(common.device, device);
    row.add("test", "test", std::string(t.name));
    row.add("mib", "buffer MiB", s.bytes >> 20);
    row.add_stats("time_us", "time (us)", Stats::of(t.us), 1);
    row.add_stats("gbps", "GB/s", per_second(t.us, t.bytes, 1e9), 1);
    row.add_json("gbps_counts", std::string(t.counts));
    row.add_json("warmup", int64_t{warmup});
    row.add_json("reps", int64_t{reps});
    report.add(std::move(row));
  }
  return 0;
}

}  // namespace slimrt_bench
