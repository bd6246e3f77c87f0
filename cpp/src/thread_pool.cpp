#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "check.h"

namespace slimrt {
namespace {

// A waiting thread spins this long before it sleeps: long enough to bridge the gap between two
// kernels of a step (a futex wake costs tens of microseconds), short enough not to burn a core
// while the application does something else between steps.
constexpr std::chrono::microseconds kSpinTime(200);

// Ranges are claimed through one 64-bit ticket: [generation:32][parts:16][next part:16].
constexpr int kMaxThreads = 0xFFFF;

uint64_t make_ticket(uint64_t generation, uint64_t parts, uint64_t next) {
  return generation << 32 | parts << 16 | next;
}
uint32_t generation_of(uint64_t ticket) { return static_cast<uint32_t>(ticket >> 32); }
int64_t parts_of(uint64_t ticket) { return static_cast<int64_t>(ticket >> 16 & 0xFFFF); }
int64_t next_of(uint64_t ticket) { return static_cast<int64_t>(ticket & 0xFFFF); }

// Set while a thread runs a task, so a run() from inside a task executes inline instead of
// waiting for workers that are busy running the outer task (a deadlock).
thread_local bool t_inside_task = false;

class InsideTask {
 public:
  InsideTask() : previous_(t_inside_task) { t_inside_task = true; }
  ~InsideTask() { t_inside_task = previous_; }

 private:
  bool previous_;
};

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls done() until it holds or kSpinTime has passed; returns done(). After a short busy spin
// it yields between polls: when there are more runnable threads than cores (a loaded machine,
// or a pool larger than the CPU share), the thread it waits for may need this very core.
template <class Done>
bool spin_until(Done done) {
  constexpr uint32_t kBusyPolls = 1024;
  for (uint32_t polls = 0; polls < kBusyPolls; ++polls) {
    if (done()) return true;
    cpu_relax();
  }
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    if (done()) return true;
    std::this_thread::yield();
    if (std::chrono::steady_clock::now() - start > kSpinTime) return done();
  }
}

}  // namespace

// A run publishes its job and a ticket; the caller and the workers then claim ranges from the
// ticket until none is left. Whoever is awake does the work: a worker that the OS has not
// scheduled yet (a loaded machine) delays nothing, because the caller claims its range too, and
// the caller waits only for ranges that were claimed.
struct ThreadPool::State {
  // Separate cache lines: workers poll `ticket` while finishing threads bump `finished`.
  alignas(64) std::atomic<uint64_t> ticket{0};
  alignas(64) std::atomic<int64_t> finished{0};  // ranges of the current job that are done
  alignas(64) std::atomic<int> sleepers{0};
  std::atomic<bool> caller_sleeping{false};

  // The current job. Written before the ticket that announces it (release); read only by a
  // thread that has claimed one of its ranges (acquire), and the caller does not start another
  // job until every claimed range is finished, so the fields are stable while anyone reads them.
  int64_t n = 0;
  void* context = nullptr;
  void (*call)(void*, int64_t, int64_t) = nullptr;
  std::atomic<bool> stop{false};

  std::atomic<bool> failed{false};
  std::exception_ptr error;  // written only by the thread that set `failed`

  std::mutex mutex;  // guards sleeping, not the job
  std::condition_variable wake;
  std::condition_variable done;
  std::mutex dispatch;  // serialises run() callers
  std::vector<std::thread> workers;

  // Claims and runs ranges of the job announced by `ticket` until none is left.
  void run_claimed_parts() {
    uint64_t t = ticket.load(std::memory_order_acquire);
    for (;;) {
      const int64_t parts = parts_of(t);
      const int64_t part = next_of(t);
      if (part >= parts) return;
      if (!ticket.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel,
                                        std::memory_order_acquire)) {
        continue;  // t now holds the current ticket
      }
      run_part(part, parts);
      if (finished.fetch_add(1, std::memory_order_seq_cst) + 1 == parts &&
          caller_sleeping.load(std::memory_order_seq_cst)) {
        { std::lock_guard<std::mutex> lock(mutex); }
        done.notify_one();
      }
      t = ticket.load(std::memory_order_acquire);
    }
  }

  void run_part(int64_t part, int64_t parts) {
    // Balanced split: the first n % parts ranges are one longer.
    const int64_t base = n / parts;
    const int64_t extra = n % parts;
    const int64_t begin = part * base + std::min(part, extra);
    const int64_t end = begin + base + (part < extra ? 1 : 0);
    try {
      InsideTask inside;
      call(context, begin, end);
    } catch (...) {
      if (!failed.exchange(true)) error = std::current_exception();
    }
  }

  uint32_t wait_for_job(uint32_t seen) {
    auto changed = [&] { return generation_of(ticket.load(std::memory_order_acquire)) != seen; };
    if (!spin_until(changed)) {
      std::unique_lock<std::mutex> lock(mutex);
      // seq_cst on both sides (sleepers here, the ticket in the caller) guarantees that either
      // this thread sees the new ticket or the caller sees it sleeping and wakes it.
      sleepers.fetch_add(1, std::memory_order_seq_cst);
      while (generation_of(ticket.load(std::memory_order_seq_cst)) == seen) wake.wait(lock);
      sleepers.fetch_sub(1, std::memory_order_relaxed);
    }
    return generation_of(ticket.load(std::memory_order_acquire));
  }

  void worker_loop() {
    uint32_t seen = 0;
    for (;;) {
      seen = wait_for_job(seen);
      if (stop.load(std::memory_order_acquire)) return;
      run_claimed_parts();
    }
  }

  void publish(uint64_t new_ticket) {
    ticket.store(new_ticket, std::memory_order_seq_cst);
    if (sleepers.load(std::memory_order_seq_cst) > 0) {
      // Taking the mutex orders this notify after a worker that counted itself as a sleeper has
      // entered wait(), so the notification cannot be lost.
      { std::lock_guard<std::mutex> lock(mutex); }
      wake.notify_all();
    }
  }

  void wait_for_parts(int64_t parts) {
    auto all_done = [&] { return finished.load(std::memory_order_acquire) == parts; };
    if (spin_until(all_done)) return;
    std::unique_lock<std::mutex> lock(mutex);
    caller_sleeping.store(true, std::memory_order_seq_cst);
    while (finished.load(std::memory_order_seq_cst) != parts) done.wait(lock);
    caller_sleeping.store(false, std::memory_order_relaxed);
  }

  void shut_down() {
    stop.store(true, std::memory_order_release);
    publish(make_ticket(generation_of(ticket.load()) + 1, 0, 0));
    for (auto& w : workers) w.join();
    workers.clear();
  }
};

ThreadPool::ThreadPool(int num_threads) : state_(new State) {
  if (num_threads < 0 || num_threads > kMaxThreads) {
    delete state_;
    SLIMRT_CHECK(false, "ThreadPool: num_threads must be in [0, "
                            << kMaxThreads << "] (0 = all hardware threads), got " << num_threads);
  }
  const int threads = num_threads > 0
                          ? num_threads
                          : std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  try {
    state_->workers.reserve(threads - 1);
    for (int i = 1; i < threads; ++i) {
      state_->workers.emplace_back([s = state_] { s->worker_loop(); });
    }
  } catch (const std::exception& e) {
    state_->shut_down();
    delete state_;
    SLIMRT_CHECK(false, "ThreadPool: cannot start " << threads << " threads: " << e.what());
  }
}

ThreadPool::~ThreadPool() {
  state_->shut_down();
  delete state_;
}

int ThreadPool::size() const { return static_cast<int>(state_->workers.size()) + 1; }

void ThreadPool::run_impl(int64_t n, void* context, void (*call)(void*, int64_t, int64_t)) {
  if (n <= 0) return;
  const int64_t parts = std::min<int64_t>(n, size());
  if (parts == 1 || t_inside_task) {
    InsideTask inside;
    call(context, 0, n);
    return;
  }
  State& s = *state_;
  std::lock_guard<std::mutex> serial(s.dispatch);
  s.n = n;
  s.context = context;
  s.call = call;
  s.finished.store(0, std::memory_order_relaxed);
  s.publish(make_ticket(generation_of(s.ticket.load(std::memory_order_relaxed)) + 1, parts, 0));
  s.run_claimed_parts();
  s.wait_for_parts(parts);
  if (s.failed.load(std::memory_order_acquire)) {
    std::exception_ptr error = s.error;
    s.error = nullptr;
    s.failed.store(false, std::memory_order_relaxed);
    std::rethrow_exception(error);
  }
}

}  // namespace slimrt
