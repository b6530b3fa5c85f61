// exp as plain float / double arithmetic, for loops the compiler vectorises: every lane computes the
// same bits as the scalar tail. Included by the per-ISA kernels (*_impl.hpp); internal linkage,
// since each ISA's copy differs (madd fuses only where that ISA has FMA).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "lowbit/half.hpp"

namespace lowbit {
namespace {

// a * b + c (float or double), fused where this ISA has FMA (std::fma then vectorises;
// elsewhere it is a call)
template <class T>
inline T madd(T a, T b, T c) {
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

inline std::uint64_t double_bits(double d) {
  std::uint64_t u;
  std::memcpy(&u, &d, sizeof u);
  return u;
}

inline double bits_double(std::uint64_t u) {
  double d;
  std::memcpy(&d, &u, sizeof d);
  return d;
}

// exp(x) for x <= 0 in double (the row sums of log-softmax and KL divergence), the same scheme:
// x = n ln2 + r, |r| <= ln2/2, Taylor polynomial of degree 13 (truncation < 0.35^14 / 14! <
// 5e-18 relative, below double's 1.1e-16), 2^n from the exponent bits. Within a few ulp of exp.
// x < -708 (and -inf) gives exactly 0 (exp(-708) = 3e-308 is still a normal double); NaN gives
// NaN.
inline double exp_nonpositive(double x) {
  constexpr double kLo = -708.0;
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kRound = 0x1.8p52;                      // t + kRound rounds t (|t| < 2^51) to an integer
  constexpr double kLn2Hi = 0.693147180369123816490;       // ln 2 with its low 32 bits zero: n * kLn2Hi exact
  constexpr double kLn2Lo = 1.90821492927058770002e-10;    // ln 2 - kLn2Hi
  const std::uint64_t low = 0ull - static_cast<std::uint64_t>(x < kLo);
  const double xc = bits_double((double_bits(kLo) & low) | (double_bits(x) & ~low));
  const double kn = madd(xc, kLog2e, kRound);              // kRound + n, n in [-1022, 0]
  const double n = kn - kRound;
  const double r = madd(-n, kLn2Lo, madd(-n, kLn2Hi, xc));
  double p = 1.0 / 6227020800.0;                           // 1/13!
  p = madd(p, r, 1.0 / 479001600.0);
  p = madd(p, r, 1.0 / 39916800.0);
  p = madd(p, r, 1.0 / 3628800.0);
  p = madd(p, r, 1.0 / 362880.0);
  p = madd(p, r, 1.0 / 40320.0);
  p = madd(p, r, 1.0 / 5040.0);
  p = madd(p, r, 1.0 / 720.0);
  p = madd(p, r, 1.0 / 120.0);
  p = madd(p, r, 1.0 / 24.0);
  p = madd(p, r, 1.0 / 6.0);
  p = madd(p, r, 0.5);
  p = madd(p, r, 1.0);
  p = madd(p, r, 1.0);
  const double two_n = bits_double((double_bits(kn) - double_bits(kRound) + 1023ull) << 52);
  return bits_double(double_bits(p * two_n) & ~low);
}

}  // namespace
}  // namespace lowbit
