// The CUDA kv_compress against cpu::kv_compress on the same pages, byte for byte: rows drawn from
// few distinct magnitudes (many ties), ±0, NaNs, infinities and random bit patterns; head dims
// that are and are not multiples of 8, 16 and 32; K and V at different sparsities; pages of 1,
// 3 and 16 tokens and 1 to 3 KV heads; shuffled source and destination ids. The record regions
// are poisoned first on both sides, so comparing them whole also proves that nothing outside
// the records was written. Then the same through ops::kv_compress, and replayed as a recorded
// graph. Without a CUDA device the comparisons are skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/kernels.h"
#include "cuda_backend.h"
#include "device.h"
#include "kv_record.h"
#include "ops/kv_compress.h"
#include "slimrt/version.h"
#include "thread_pool.h"

namespace slimrt {
namespace {

struct Shape {
  int64_t head_dim = 0;
  int64_t page_size = 0;
  int64_t kv_heads = 0;
  double k_sparsity = 0.0;
  double v_sparsity = 0.0;
};

std::string describe(const Shape& s) {
  return "head_dim " + std::to_string(s.head_dim) + " page_size " + std::to_string(s.page_size) +
         " kv_heads " + std::to_string(s.kv_heads) + " k_sparsity " + std::to_string(s.k_sparsity) +
         " v_sparsity " + std::to_string(s.v_sparsity);
}

// Dense pages in host memory, the pages to compress, and the records cpu::kv_compress makes of
// them in regions poisoned with 0xAB.
struct Pages {
  static constexpr int64_t kDense = 5, kCompressed = 7;
  Shape shape;
  std::vector<uint16_t> k, v;
  std::vector<int32_t> src, dst;
  int64_t k_kept = 0, v_kept = 0;
  std::vector<uint8_t> k_records, v_records;  // poisoned, then cpu::kv_compress's
  std::vector<uint8_t> k_expected, v_expected;

  PagedKv kv(void* k_pages, void* v_pages, void* k_rec, void* v_rec) const {
    PagedKv out;
    out.k_pages = k_pages;
    out.v_pages = v_pages;
    out.page_size = shape.page_size;
    out.kv_heads = shape.kv_heads;
    out.head_dim = shape.head_dim;
    out.k_records = k_rec;
    out.v_records = v_rec;
    out.dense_pages = kDense;
    out.k_kept = k_kept;
    out.v_kept = v_kept;
    return out;
  }
};

// BF16 bits with many equal magnitudes: a few levels (±0 among them), NaNs and infinities of
// both signs, and now and then any 16 bits at all (NaN payloads included).
uint16_t draw(std::mt19937_64& rng) {
  static const uint16_t kLevels[] = {0x0000, 0x8000, 0x3E80, 0xBE80, 0x3F80, 0xBF80, 0x3FC0,
                                     0xC040, 0x7FC0, 0xFFC0, 0x7F80, 0xFF80, 0x7F81, 0x0001};
  const uint64_t r = rng();
  if (r % 7 == 0) return static_cast<uint16_t>(r >> 16);
  return kLevels[(r >> 8) % (sizeof(kLevels) / sizeof(kLevels[0]))];
}

Pages make_pages(uint64_t seed, const Shape& shape) {
  std::mt19937_64 rng(seed);
  Pages p;
  p.shape = shape;
  const int64_t elements = Pages::kDense * shape.page_size * shape.kv_heads * shape.head_dim;
  p.k.resize(elements);
  p.v.resize(elements);
  for (int64_t i = 0; i < elements; ++i) {
    p.k[i] = draw(rng);
    p.v[i] = draw(rng);
  }
  // Four of the dense pages into four of the compressed ones, both in shuffled order.
  std::vector<int32_t> dense(Pages::kDense), compressed(Pages::kCompressed);
  std::iota(dense.begin(), dense.end(), 0);
  std::iota(compressed.begin(), compressed.end(), static_cast<int32_t>(Pages::kDense));
  std::shuffle(dense.begin(), dense.end(), rng);
  std::shuffle(compressed.begin(), compressed.end(), rng);
  p.src.assign(dense.begin(), dense.begin() + 4);
  p.dst.assign(compressed.begin(), compressed.begin() + 4);
  p.k_kept = kv_kept_count(shape.head_dim, shape.k_sparsity);
  p.v_kept = kv_kept_count(shape.head_dim, shape.v_sparsity);
  const int64_t records = Pages::kCompressed * shape.page_size * shape.kv_heads;
  p.k_records.assign(records * kv_record_bytes(shape.head_dim, p.k_kept) + kKvRecordTailPad, 0xAB);
  p.v_records.assign(records * kv_record_bytes(shape.head_dim, p.v_kept) + kKvRecordTailPad, 0xAB);
  p.k_expected = p.k_records;
  p.v_expected = p.v_records;
  ThreadPool pool(2);
  cpu::kv_compress(p.kv(p.k.data(), p.v.data(), p.k_expected.data(), p.v_expected.data()),
                   p.src.data(), p.dst.data(), static_cast<int64_t>(p.src.size()), pool);
  return p;
}

// The shapes of the brief: every head dim at every K sparsity, V at another, over the page
// sizes and head counts in turn.
std::vector<Shape> shapes() {
  std::vector<Shape> out;
  int turn = 0;
  for (int64_t head_dim : {1, 7, 12, 64, 100, 128, 256}) {
    for (double ks : {0.0, 0.3, 0.5, 0.7}) {
      for (int64_t page_size : {1, 3, 16}) {
        const double vs = std::vector<double>{0.7, 0.0, 0.5, 0.3}[turn % 4];
        out.push_back({head_dim, page_size, 1 + turn / 3 % 3, ks, vs});
        ++turn;
      }
    }
  }
  return out;
}

// Device memory from a Device, freed with it.
class Buffer {
 public:
  Buffer(Device& device, int64_t bytes) : device_(device), bytes_(bytes) {
    memory_ = device.allocate(std::max<int64_t>(bytes, 1));
  }
  template <class T>
  Buffer(Device& device, const std::vector<T>& host)
      : Buffer(device, static_cast<int64_t>(host.size() * sizeof(T))) {
    upload(host);
  }
  ~Buffer() { device_.deallocate(memory_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  template <class T>
  void upload(const std::vector<T>& host) {
    device_.copy_to_device(memory_, host.data(), bytes_);
  }
  template <class T>
  std::vector<T> download() const {
    std::vector<T> host(bytes_ / sizeof(T));
    device_.copy_to_host(host.data(), memory_, bytes_);
    return host;
  }
  void* get() const { return memory_; }
  const int32_t* ids() const { return static_cast<const int32_t*>(memory_); }

 private:
  Device& device_;
  int64_t bytes_;
  void* memory_;
};

// Pages on a device: the dense pages, poisoned record regions and the ids.
struct DevicePages {
  Buffer k, v, k_records, v_records, src, dst;
  PagedKv kv;

  DevicePages(Device& device, const Pages& p)
      : k(device, p.k),
        v(device, p.v),
        k_records(device, p.k_records),
        v_records(device, p.v_records),
        src(device, p.src),
        dst(device, p.dst),
        kv(p.kv(k.get(), v.get(), k_records.get(), v_records.get())) {}

  void poison(const Pages& p) {
    k_records.upload(p.k_records);
    v_records.upload(p.v_records);
  }
  void expect_records_of(const Pages& p) const {
    EXPECT_EQ(k_records.download<uint8_t>(), p.k_expected) << "K records";
    EXPECT_EQ(v_records.download<uint8_t>(), p.v_expected) << "V records";
    EXPECT_EQ(k.download<uint16_t>(), p.k) << "dense K pages changed";
    EXPECT_EQ(v.download<uint16_t>(), p.v) << "dense V pages changed";
  }
};

#define SKIP_WITHOUT_CUDA() \
  if (!cuda_available()) GTEST_SKIP() << cuda_unavailable_reason()

TEST(KvCompressCuda, RecordsEqualTheCpuRecordsByteForByteAndNothingElseIsWritten) {
  SKIP_WITHOUT_CUDA();
#ifdef SLIMRT_WITH_CUDA
  const std::unique_ptr<Device> device = make_device("cuda", 0);
  uint64_t seed = 0;
  for (const Shape& shape : shapes()) {
    SCOPED_TRACE(describe(shape));
    const Pages p = make_pages(++seed, shape);
    DevicePages d(*device, p);
    cuda::kv_compress(cuda_device(*device), d.kv, d.src.ids(), d.dst.ids(),
                      static_cast<int64_t>(p.src.size()));
    d.expect_records_of(p);
  }
#endif
}

// Every row a tie: all magnitudes equal (a constant row, a row of ±0 and a row of NaNs), so the
// kept values are the lowest indices.
TEST(KvCompressCuda, RowsOfOneMagnitudeKeepTheLowestIndices) {
  SKIP_WITHOUT_CUDA();
#ifdef SLIMRT_WITH_CUDA
  const std::unique_ptr<Device> device = make_device("cuda", 0);
  for (uint16_t bits : {uint16_t{0x3F80}, uint16_t{0x8000}, uint16_t{0x7FC1}}) {
    for (int64_t head_dim : {33, 128, 256}) {
      const Shape shape{head_dim, 16, 2, 0.7, 0.3};
      SCOPED_TRACE(describe(shape) + " bits " + std::to_string(bits));
      Pages p = make_pages(bits + head_dim, shape);
      std::fill(p.k.begin(), p.k.end(), bits);
      std::fill(p.v.begin(), p.v.end(), static_cast<uint16_t>(bits ^ 0x8000));
      p.k_expected = p.k_records;
      p.v_expected = p.v_records;
      ThreadPool pool(1);
      cpu::kv_compress(p.kv(p.k.data(), p.v.data(), p.k_expected.data(), p.v_expected.data()),
                       p.src.data(), p.dst.data(), static_cast<int64_t>(p.src.size()), pool);
      // The first record's bitmap: exactly the first k_kept bits.
      const int64_t at = ((p.dst[0] - Pages::kDense) * shape.kv_heads) * shape.page_size *
                         kv_record_bytes(head_dim, p.k_kept);
      for (int64_t i = 0; i < head_dim; ++i) {
        ASSERT_EQ(p.k_expected[at + i / 8] >> (i % 8) & 1, i < p.k_kept ? 1 : 0) << i;
      }
      DevicePages d(*device, p);
      cuda::kv_compress(cuda_device(*device), d.kv, d.src.ids(), d.dst.ids(),
                        static_cast<int64_t>(p.src.size()));
      d.expect_records_of(p);
    }
  }
#endif
}

// ops::kv_compress on a CUDA device: checks on the host ids, the kernel on the device ids; a
// launch of no pages writes nothing.
TEST(KvCompressCuda, TheOpReadsTheDeviceIdsAndChecksTheHostOnes) {
  SKIP_WITHOUT_CUDA();
  const std::unique_ptr<Device> device = make_device("cuda", 0);
  const Pages p = make_pages(7, {100, 16, 2, 0.7, 0.5});
  DevicePages d(*device, p);
  const int64_t num_pages = Pages::kDense + Pages::kCompressed;
  const ops::KvCompressIds none{p.src.data(), p.dst.data(), d.src.ids(), d.dst.ids(), 0};
  ops::kv_compress(*device, d.kv, none, num_pages);
  EXPECT_EQ(d.k_records.download<uint8_t>(), p.k_records);
  const ops::KvCompressIds ids{p.src.data(), p.dst.data(), d.src.ids(), d.dst.ids(),
                               static_cast<int64_t>(p.src.size())};
  ops::kv_compress(*device, d.kv, ids, num_pages);
  d.expect_records_of(p);

  d.poison(p);
  std::vector<int32_t> wrong = p.dst;
  wrong[2] = p.src[0];
  const ops::KvCompressIds bad{p.src.data(), wrong.data(), d.src.ids(), d.dst.ids(),
                               static_cast<int64_t>(p.src.size())};
  try {
    ops::kv_compress(*device, d.kv, bad, num_pages);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.message(), "kv_compress: destination page " + std::to_string(p.src[0]) +
                               " is not a compressed page");
  }
  EXPECT_EQ(d.k_records.download<uint8_t>(), p.k_records) << "written before the check";
}

// What the engine does each step: the ids uploaded once, then every layer's launch, which a
// device may record as a graph (the launch allocates and waits for nothing) and replay.
TEST(KvCompressCuda, RecordedLaunchesReplayTheSameRecords) {
  SKIP_WITHOUT_CUDA();
  const std::unique_ptr<Device> device = make_device("cuda", 0);
  const Pages p = make_pages(11, {128, 16, 4, 0.7, 0.5});
  DevicePages d(*device, p);
  const ops::KvCompressIds ids{p.src.data(), p.dst.data(), d.src.ids(), d.dst.ids(),
                               static_cast<int64_t>(p.src.size())};
  for (int run = 0; run < 3; ++run) {  // run, record and launch, launch the recording
    SCOPED_TRACE("run " + std::to_string(run));
    d.poison(p);
    device->run_graph(&d, 1, [&] { ops::kv_compress(*device, d.kv, ids, 12); });
    d.expect_records_of(p);
  }
  device->forget_graphs(&d);
}

}  // namespace
}  // namespace slimrt
