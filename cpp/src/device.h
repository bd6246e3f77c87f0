// Device: what a backend owns: memory for the arenas, copies across the host boundary, a second
// lane of work for decoding ahead, recorded launches, and the DF11 decoding tables of the tensors
// in its memory. Two backends implement it (CpuDevice, CudaDevice); the kernels are ops (ops/),
// which pick their backend's kernel by backend(). Nothing above cpp/src knows which one runs.
//
//   std::unique_ptr<Device> device = make_device("cpu", /*num_threads=*/0);
//   void* memory = device->allocate(bytes);          // load time only
//   MatmulInput in = ops::add_rms_norm_input(*device, x, nullptr, norm, rows, k, eps, h, scratch);
//   ops::matmul_bf16(*device, in, w, n, bias, out);
//
// Pointers passed to ops are device memory (the arenas), except where a comment says host.
// Ops are enqueued in call order; copy_to_host returns once the data is there.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "kernel_args.h"
#include "slimrt/df11.h"

namespace slimrt {

// Which kernels run on a device's memory: the ops switch on it.
enum class Backend { kCpu, kCuda };

class Device {
 public:
  virtual ~Device() = default;
  virtual std::string name() const = 0;
  virtual Backend backend() const = 0;

  // Memory. allocate() returns 64-byte aligned memory or throws; called at load only.
  // deallocate() drops the DF11 tables of the tensors that lived in the freed block only: the
  // other blocks (a shared model's weights) keep theirs.
  virtual void* allocate(int64_t bytes) = 0;
  virtual void deallocate(void* memory) = 0;
  virtual int64_t available_memory() const = 0;  // bytes an engine could still reserve
  virtual void copy_to_device(void* dst, const void* host_src, int64_t bytes) = 0;
  virtual void copy_to_host(void* host_dst, const void* src, int64_t bytes) = 0;

  // Builds what decoding `view` (in this device's memory) needs, once, at load: the steps that
  // decode it then allocate nothing. Views of part of a tensor (df11_groups) share its table.
  virtual void prepare_df11(const Df11View& view) = 0;

  // Decoding ahead of use, on a second lane of work (CUDA: a second stream) that overlaps the
  // ops enqueued meanwhile: ops::decode_df11_ahead() runs after everything enqueued before the
  // last fork_ahead(); join_ahead() makes everything enqueued later wait for the ahead lane's
  // work so far. Every fork needs a join before the results are read or a run_graph body ends.
  // A backend without a second lane (overlaps_decode() false) decodes at once and ignores both.
  virtual bool overlaps_decode() const { return false; }
  virtual void fork_ahead() {}
  virtual void join_ahead() {}

  // Runs `body`: ops on this device that read no host memory and wait for nothing, whose
  // launches depend only on (`owner`, `key`) (and on the contents of device memory). A backend may
  // record the body once that pair repeats and replay the recording instead (CUDA graphs): the
  // same results, without the per-launch cost. Each executor sharing the device is an owner.
  virtual void run_graph(const void* owner, uint64_t key, const std::function<void()>& body) {
    (void)owner;
    (void)key;
    body();
  }
  // Drops what run_graph recorded for `owner` (an executor going away: its buffers go with it).
  virtual void forget_graphs(const void* owner) { (void)owner; }
  // Milliseconds the device spends on the ops `body` enqueues, waited for: what a choice between
  // two ways of doing the same work measures at load (ops::tune_matmul_df11).
  virtual double time_ms(const std::function<void()>& body);
};

// "cpu", or an error naming what is supported ("cuda" comes with the CUDA backend).
std::unique_ptr<Device> make_device(const std::string& name, int num_threads);

// Throws make_device's error for a name this build has no device for (whether a GPU is
// usable is make_device's to find out): options are checked before anything is read.
void check_device_name(const std::string& name);

}  // namespace slimrt
