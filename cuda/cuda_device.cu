#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>

#include "check.h"
#include "cublas_library.h"
#include "cuda_backend.h"
#include "cuda_check.h"
#include "cuda_device.h"
#include "df11_cuda.h"
#include "slimrt/df11.h"

namespace slimrt {
namespace {

// Kept free for the CUDA context and the kernels' own needs.
constexpr int64_t kReservedDeviceBytes = int64_t{512} << 20;
constexpr int64_t kCublasWorkspaceBytes = int64_t{32} << 20;  // what cuBLAS advises for Hopper
constexpr size_t kMaxGraphs = 256;

}  // namespace

CudaDevice::CudaDevice() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess) cudaGetLastError();
  SLIMRT_CHECK(status == cudaSuccess && count > 0,
               "options: device \"cuda\": no usable CUDA device ("
                   << (status == cudaSuccess ? "none found" : cudaGetErrorString(status))
                   << "); use device \"cpu\"");
  SLIMRT_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  try {
    SLIMRT_CUDA_CHECK(cudaStreamCreateWithFlags(&ahead_, cudaStreamNonBlocking));
    SLIMRT_CUDA_CHECK(cudaEventCreateWithFlags(&fork_, cudaEventDisableTiming));
    SLIMRT_CUDA_CHECK(cudaEventCreateWithFlags(&join_, cudaEventDisableTiming));
    const CublasLibrary& cublas = cublas_library();
    SLIMRT_CUBLAS_CHECK(cublas.create(&cublas_));
    SLIMRT_CUBLAS_CHECK(cublas.set_stream(cublas_, stream_));
    // An explicit workspace: cuBLAS then allocates nothing per call, as graph capture needs.
    SLIMRT_CUDA_CHECK(cudaMalloc(&cublas_workspace_, kCublasWorkspaceBytes));
    SLIMRT_CUBLAS_CHECK(cublas.set_workspace(cublas_, cublas_workspace_, kCublasWorkspaceBytes));
  } catch (...) {
    release();
    throw;
  }
}

CudaDevice::~CudaDevice() {
  // Errors here (typically a context already torn down at exit) cannot be acted upon.
  cudaStreamSynchronize(ahead_);
  cudaStreamSynchronize(stream_);
  release();
}

void* CudaDevice::allocate(int64_t bytes) {
  SLIMRT_CHECK(bytes >= 0, "allocate: negative size " << bytes);
  void* memory = nullptr;
  // cudaMalloc returns 256-byte aligned memory (more than the 64 the arenas need).
  const cudaError_t status = cudaMalloc(&memory, static_cast<size_t>(std::max<int64_t>(bytes, 1)));
  if (status != cudaSuccess) cudaGetLastError();
  SLIMRT_CHECK_AS(
      ErrorCategory::kOutOfMemory, status == cudaSuccess && memory != nullptr,
      "could not allocate " << bytes << " bytes of GPU memory: " << cudaGetErrorString(status));
  allocations_[static_cast<const uint8_t*>(memory)] = std::max<int64_t>(bytes, 1);
  return memory;
}

void CudaDevice::deallocate(void* memory) {
  if (memory == nullptr) return;
  // The freed block may have held `lengths` arrays its tables are keyed by; other blocks (a
  // shared model's weights) keep theirs.
  const auto* begin = static_cast<const uint8_t*>(memory);
  const auto block = allocations_.find(begin);
  if (block != allocations_.end()) {
    const auto first = tables_.lower_bound(begin);
    const auto last = tables_.lower_bound(begin + block->second);
    for (auto it = first; it != last; ++it) cudaFree(it->second.entries);
    tables_.erase(first, last);
    allocations_.erase(block);
  }
  SLIMRT_CUDA_CHECK(cudaFree(memory));  // waits for work in flight
}

int64_t CudaDevice::available_memory() const {
  size_t free_bytes = 0, total_bytes = 0;
  SLIMRT_CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
  return std::max<int64_t>(0, static_cast<int64_t>(free_bytes) - kReservedDeviceBytes);
}

void CudaDevice::copy_to_device(void* dst, const void* host_src, int64_t bytes) {
  if (bytes <= 0) return;
  SLIMRT_CUDA_CHECK(
      cudaMemcpyAsync(dst, host_src, static_cast<size_t>(bytes), cudaMemcpyHostToDevice, stream_));
  // The caller may reuse host_src at once (the executor rewrites its staging every step).
  SLIMRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaDevice::copy_to_host(void* host_dst, const void* src, int64_t bytes) {
  if (bytes <= 0) return;
  SLIMRT_CUDA_CHECK(
      cudaMemcpyAsync(host_dst, src, static_cast<size_t>(bytes), cudaMemcpyDeviceToHost, stream_));
  SLIMRT_CUDA_CHECK(cudaStreamSynchronize(stream_));
}

void CudaDevice::prepare_df11(const Df11View& view) { table_for(view.lengths); }

void CudaDevice::fork_ahead() {
  SLIMRT_CUDA_CHECK(cudaEventRecord(fork_, stream_));
  SLIMRT_CUDA_CHECK(cudaStreamWaitEvent(ahead_, fork_, 0));
}

void CudaDevice::join_ahead() {
  SLIMRT_CUDA_CHECK(cudaEventRecord(join_, ahead_));
  SLIMRT_CUDA_CHECK(cudaStreamWaitEvent(stream_, join_, 0));
}

void CudaDevice::forget_graphs(const void* owner) {
  for (auto it = graphs_.lower_bound({owner, 0});
       it != graphs_.end() && it->first.first == owner;) {
    if (it->second != nullptr) cudaGraphExecDestroy(it->second);
    it = graphs_.erase(it);
  }
}

void CudaDevice::run_graph(const void* owner, uint64_t key, const std::function<void()>& body) {
  const auto found = graphs_.find({owner, key});
  if (found != graphs_.end() && found->second != nullptr) {
    SLIMRT_CUDA_CHECK(cudaGraphLaunch(found->second, stream_));
    return;
  }
  if (found == graphs_.end()) {
    if (graphs_.size() >= kMaxGraphs) drop_graphs();
    graphs_.emplace(std::make_pair(owner, key), nullptr);
    body();
    return;
  }
  SLIMRT_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
  cudaGraph_t graph = nullptr;
  try {
    body();
  } catch (...) {
    cudaStreamEndCapture(stream_, &graph);  // ends the capture; the error is body's
    if (graph != nullptr) cudaGraphDestroy(graph);
    throw;
  }
  SLIMRT_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
  cudaGraphExec_t exec = nullptr;
  const cudaError_t status = cudaGraphInstantiate(&exec, graph, 0);
  cudaGraphDestroy(graph);
  SLIMRT_CUDA_CHECK(status);
  found->second = exec;
  SLIMRT_CUDA_CHECK(cudaGraphLaunch(exec, stream_));
}

double CudaDevice::time_ms(const std::function<void()>& body) {
  cudaEvent_t start = nullptr, stop = nullptr;
  SLIMRT_CUDA_CHECK(cudaEventCreate(&start));
  const cudaError_t made = cudaEventCreate(&stop);
  if (made != cudaSuccess) cudaEventDestroy(start);
  SLIMRT_CUDA_CHECK(made);
  float ms = 0;
  try {
    SLIMRT_CUDA_CHECK(cudaEventRecord(start, stream_));
    body();
    SLIMRT_CUDA_CHECK(cudaEventRecord(stop, stream_));
    SLIMRT_CUDA_CHECK(cudaEventSynchronize(stop));
    SLIMRT_CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
  } catch (...) {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
    throw;
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms;
}

Df11DeviceView CudaDevice::df11_view(const Df11View& view) {
  const DeviceTable& table = table_for(view.lengths);
  Df11DeviceView d;
  d.bitstream = view.bitstream;
  d.index = view.index;
  d.signmant = view.signmant;
  d.table = table.entries;
  d.table_bits = table.bits;
  d.numel = view.numel;
  return d;
}

void CudaDevice::drop_graphs() {
  for (auto& [key, exec] : graphs_) {
    if (exec != nullptr) cudaGraphExecDestroy(exec);
  }
  graphs_.clear();
}

// The decoding table of the DF11 tensor whose (device) lengths array is `lengths`, built and
// uploaded on first use.
const CudaDevice::DeviceTable& CudaDevice::table_for(const uint8_t* lengths) {
  const auto found = tables_.find(lengths);
  if (found != tables_.end()) return found->second;
  uint8_t host_lengths[df11::kSymbols];
  copy_to_host(host_lengths, lengths, df11::kSymbols);
  const Df11Table table = df11_build_table(host_lengths);
  SLIMRT_CHECK(table.table_bits >= 1 && table.table_bits <= df11::kMaxCodeLength &&
                   table.entries.size() == (size_t{1} << table.table_bits),
               "df11_build_table returned " << table.entries.size() << " entries for table_bits "
                                            << table.table_bits);
  const size_t bytes = table.entries.size() * sizeof(uint16_t);
  DeviceTable entry;
  SLIMRT_CUDA_CHECK(cudaMalloc(&entry.entries, bytes));
  entry.bits = table.table_bits;
  // On this device's stream, waited for: a plain cudaMemcpy from pageable memory may return
  // before its DMA lands, and the legacy stream it uses does not order this device's
  // non-blocking streams, so a decode could read the table half written.
  try {
    copy_to_device(entry.entries, table.entries.data(), static_cast<int64_t>(bytes));
  } catch (...) {
    cudaFree(entry.entries);
    throw;
  }
  return tables_.emplace(lengths, entry).first->second;
}

void CudaDevice::drop_tables() {
  for (auto& [key, table] : tables_) cudaFree(table.entries);
  tables_.clear();
}

void CudaDevice::release() {
  drop_graphs();
  drop_tables();
  if (cublas_ != nullptr) cublas_library().destroy(cublas_);
  cublas_ = nullptr;
  if (cublas_workspace_ != nullptr) cudaFree(cublas_workspace_);
  cublas_workspace_ = nullptr;
  if (join_ != nullptr) cudaEventDestroy(join_);
  if (fork_ != nullptr) cudaEventDestroy(fork_);
  if (ahead_ != nullptr) cudaStreamDestroy(ahead_);
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  join_ = fork_ = nullptr;
  ahead_ = stream_ = nullptr;
}

std::unique_ptr<Device> make_cuda_device() { return std::make_unique<CudaDevice>(); }

CudaDevice& cuda_device(Device& device) { return static_cast<CudaDevice&>(device); }

}  // namespace slimrt
