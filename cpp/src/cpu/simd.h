// The x86 intrinsics, for the AVX2 and AVX-512 kernel variants (see isa.h), and a portable
// prefetch hint.
#pragma once

#include "isa.h"

#if SLIMRT_X86_SIMD
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 warns inside its own AVX-512 headers (the deliberately undefined pass-through operand
// of _mm512_undefined_*, GCC bug 105593) wherever those intrinsics are inlined.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#pragma GCC diagnostic pop
#else
#include <immintrin.h>
#endif
#endif

#if defined(__GNUC__)
#define SLIMRT_PREFETCH(address) __builtin_prefetch(address)
#else
#define SLIMRT_PREFETCH(address) ((void)(address))
#endif
