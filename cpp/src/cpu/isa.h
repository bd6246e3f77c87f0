// Which SIMD instruction set the CPU kernels run. A hot kernel carries an AVX-512 variant, an
// AVX2+FMA variant and portable C++; the choice is made at run time (never -march=native), so
// one binary runs on any x86-64 (and the portable code anywhere).
//
//   switch (cpu::active_isa()) { case Isa::kAvx512: ...; case Isa::kAvx2: ...; default: ... }
//
// SLIMRT_CPU_ISA=scalar|avx2|avx512 in the environment caps the choice (debugging, CI).
#pragma once

namespace slimrt::cpu {

enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

// The best variant this CPU and OS support (AVX-512 needs F, BW, VL and FMA; AVX2 needs FMA).
Isa detected_isa();

// What kernels use: detected_isa(), capped by SLIMRT_CPU_ISA and by set_isa_cap().
Isa active_isa();

// Caps active_isa() (tests run every variant on one machine); returns the previous cap.
Isa set_isa_cap(Isa cap);

const char* isa_name(Isa isa);

// Whether kernels may use AVX-512 VBMI2 (vpexpandw, vpcompressw) on top of kAvx512: the CPU has
// it and active_isa() is kAvx512, unless set_vbmi2_allowed(false) (tests run the AVX-512 kernels
// both ways on one machine). Returns the previous setting.
bool vbmi2_active();
bool set_vbmi2_allowed(bool allowed);

}  // namespace slimrt::cpu

// Function attributes for the variants. Functions a variant calls must be inlined into it to be
// compiled for its ISA: helpers carry the same attribute (or the portable code is pulled in
// with SLIMRT_FLATTEN).
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define SLIMRT_X86_SIMD 1
#define SLIMRT_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define SLIMRT_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define SLIMRT_TARGET_AVX512_VBMI2 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512vbmi2,popcnt,avx2,fma")))
#define SLIMRT_FLATTEN __attribute__((flatten))
#else
#define SLIMRT_X86_SIMD 0
#endif
