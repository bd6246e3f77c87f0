#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace slimrt::cpu {
namespace {

Isa detect() {
#if SLIMRT_X86_SIMD
  // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0).
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma")) {
    return Isa::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::kAvx2;
#endif
  return Isa::kScalar;
}

Isa env_cap() {
  const char* v = std::getenv("SLIMRT_CPU_ISA");
  if (v == nullptr) return Isa::kAvx512;
  if (std::strcmp(v, "scalar") == 0) return Isa::kScalar;
  if (std::strcmp(v, "avx2") == 0) return Isa::kAvx2;
  return Isa::kAvx512;
}

std::atomic<int> g_cap{static_cast<int>(Isa::kAvx512)};
std::atomic<bool> g_vbmi2_allowed{true};

bool detect_vbmi2() {
#if SLIMRT_X86_SIMD
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vbmi2");
#else
  return false;
#endif
}

}  // namespace

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}

Isa active_isa() {
  static const Isa base = [] {
    const Isa d = detected_isa();
    const Isa e = env_cap();
    return static_cast<int>(e) < static_cast<int>(d) ? e : d;
  }();
  const int cap = g_cap.load(std::memory_order_relaxed);
  return cap < static_cast<int>(base) ? static_cast<Isa>(cap) : base;
}

Isa set_isa_cap(Isa cap) {
  return static_cast<Isa>(g_cap.exchange(static_cast<int>(cap), std::memory_order_relaxed));
}

bool vbmi2_active() {
  static const bool detected = detect_vbmi2();
  return detected && active_isa() == Isa::kAvx512 &&
         g_vbmi2_allowed.load(std::memory_order_relaxed);
}

bool set_vbmi2_allowed(bool allowed) {
  return g_vbmi2_allowed.exchange(allowed, std::memory_order_relaxed);
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "scalar";
  }
}

}  // namespace slimrt::cpu
