// exp as plain float arithmetic, for loops the compiler vectorises: every lane computes the
// same bits as the scalar tail. Included by the per-ISA kernels (*_impl.hpp); internal linkage,
// since each ISA's copy differs (madd fuses only where that ISA has FMA).
#pragma once

#include <cmath>
#include <cstdint>

#include "lowbit/half.hpp"

namespace lowbit {
namespace {

// a * b + c, fused where this ISA has FMA (std::fma then vectorises; elsewhere it is a call)
inline float madd(float a, float b, float c) {
#ifdef __FMA__
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x) for x <= 0 (attention: a score minus its row's maximum; silu: -|g|), as plain
// arithmetic so that the loop calling it vectorises and every lane computes the same bits as the scalar tail:
// x = n ln2 + r with n = round(x / ln2) and |r| <= ln2/2, exp(r) by its Taylor polynomial of
// degree 7 (truncation < 0.35^8 / 8! < 6e-9 relative, below float32's 6e-8), times 2^n built
// from the exponent bits. Within ~2 ulp of exp. x < -87 (and -inf) gives exactly 0: such a
// weight is below 2^-125 of the row maximum's weight 1, and subnormal weights would slow the
// GEMM down. NaN gives NaN.
inline float exp_nonpositive(float x) {
  constexpr float kLo = -87.0f;                           // exp(-87) = 1.6e-38, a normal float
  constexpr float kLog2e = 1.44269504089f;
  constexpr float kRound = 0x1.8p23f;                     // t + kRound rounds t (|t| < 2^22) to an integer
  constexpr float kLn2Hi = 0.693359375f;                  // 9 significant bits: n * kLn2Hi is exact
  constexpr float kLn2Lo = -2.12194440e-4f;               // ln 2 - kLn2Hi
  // x clamped to kLo (NaN stays NaN); masks, not `?:`: GCC would branch and then not vectorise
  const std::uint32_t low = 0u - static_cast<std::uint32_t>(x < kLo);
  const float xc = bits_float((float_bits(kLo) & low) | (float_bits(x) & ~low));
  const float kn = madd(xc, kLog2e, kRound);              // kRound + n, n in [-126, 0]
  const float n = kn - kRound;
  const float r = madd(-n, kLn2Lo, madd(-n, kLn2Hi, xc));
  float p = 1.0f / 5040.0f;
  p = madd(p, r, 1.0f / 720.0f);
  p = madd(p, r, 1.0f / 120.0f);
  p = madd(p, r, 1.0f / 24.0f);
  p = madd(p, r, 1.0f / 6.0f);
  p = madd(p, r, 0.5f);
  p = madd(p, r, 1.0f);
  p = madd(p, r, 1.0f);
  // 2^n: the low bits of kn hold n (an integer of kRound's binade has ulp 1)
  const float two_n = bits_float((float_bits(kn) - float_bits(kRound) + 127u) << 23);
  return bits_float(float_bits(p * two_n) & ~low);  // 0 below kLo
}

}  // namespace
}  // namespace lowbit
