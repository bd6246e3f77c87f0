// The device's memory bandwidth, measured: the reference every memory-bound row of slimrt-bench
// is reported against (bench.h's reference_gbps and add_traffic), and `slimrt-bench bandwidth`.
//
//   const BandwidthSamples b = measure_bandwidth("cpu", threads, kBandwidthBytes, 1, 5);
//   Stats read = per_second(b.read_us, b.bytes, 1e9);
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace slimrt_bench {

// Microseconds per rep of reading `bytes` (summing them), writing them (a fill) and copying
// them (reading `bytes` and writing as many: count both when turning it into GB/s). On the
// CPU every kernel is split over `threads`; on CUDA the times are CUDA events'.
struct BandwidthSamples {
  int64_t bytes = 0;
  std::vector<double> read_us, write_us, copy_us;
};

BandwidthSamples measure_bandwidth(const std::string& device, int threads, int64_t bytes,
                                   int warmup, int reps);

// The buffer the reference is measured on: larger than any cache of the devices slimrt runs on
// (an H200's L2 is 50 MB; this development VM's L3 is 260 MiB).
constexpr int64_t kBandwidthBytes = int64_t{1} << 30;

}  // namespace slimrt_bench
