// ThreadPool: persistent worker threads for the CPU kernels. Dispatch costs microseconds (no
// thread creation, no allocation), so a decode step can split every matmul over the cores.
//
//   slimrt::ThreadPool pool(0);                          // 0 = all hardware threads
//   pool.run(rows, [&](int64_t begin, int64_t end) { ... });  // blocks until done
#pragma once

#include <cstdint>
#include <memory>
#include <type_traits>

namespace slimrt {

class ThreadPool {
 public:
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const;  // threads that run work, the calling thread included

  // Splits [0, n) into at most size() contiguous ranges and calls fn(begin, end) on each, on the
  // calling thread or a worker, whichever claims the range first (so a worker the OS has not
  // scheduled delays nothing); rethrows the first exception once all ranges are done. Calls
  // from several threads are serialised; a run() from inside fn runs fn(0, n) inline.
  template <class Fn>
  void run(int64_t n, Fn&& fn) {
    // Fn is a reference type when fn is an lvalue: call through the referenced type.
    using F = std::remove_reference_t<Fn>;
    run_impl(n, const_cast<void*>(static_cast<const void*>(std::addressof(fn))),
             [](void* f, int64_t b, int64_t e) { (*static_cast<F*>(f))(b, e); });
  }

 private:
  void run_impl(int64_t n, void* context, void (*call)(void*, int64_t, int64_t));
  struct State;
  State* state_;
};

}  // namespace slimrt
