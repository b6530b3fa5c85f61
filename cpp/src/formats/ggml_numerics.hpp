// Numeric primitives of ggml's reference quantizers, reproduced bit for bit (internal header).
//
// llama.cpp mixes three rounding rules (REFERENCE.md §5.1): nearest_int (round half to even
// through the 1.5*2^23 trick), roundf (half away from zero) and truncating float->int
// conversions after adding 0.5 / 8.5 / 16.5 (half up). The truncating conversions are
// implementation-defined for out-of-range values in C; on x86 they compile to cvttss2si,
// whose "integer indefinite" result (INT32_MIN) we reproduce so NaN/inf inputs give the same
// bytes as llama.cpp.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "lowbit/ggml_blocks.hpp"
#include "lowbit/half.hpp"

namespace lowbit::ggml {

constexpr float GROUP_MAX_EPS = 1e-15f;

// ggml's nearest_int: exact for |f| <= 4194303; out of range it returns the same garbage.
inline int nearest_int(float f) {
  const float v = f + 12582912.f;
  std::int32_t i;
  std::memcpy(&i, &v, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// float -> int32 as x86 cvttss2si: truncation, INT32_MIN for NaN and out-of-range values.
inline std::int32_t cvtt_i32(float f) {
  if (!(f > -2147483904.0f && f < 2147483648.0f)) return INT32_MIN;
  return static_cast<std::int32_t>(f);
}
// C's (int8_t)f / (uint8_t)f on x86: cvttss2si, then keep the low byte.
inline std::int8_t cvtt_i8(float f) { return static_cast<std::int8_t>(static_cast<std::uint8_t>(cvtt_i32(f) & 0xff)); }
inline std::uint8_t cvtt_u8(float f) { return static_cast<std::uint8_t>(cvtt_i32(f) & 0xff); }

// GGML_FP32_TO_FP16 of a build without F16C: round to nearest even, NaN -> sign | 0x7e00.
// Branch-free: scaling by 2^112 then 2^-110 rounds the mantissa to fp16 precision in the FPU
// (the classic float-arithmetic conversion); same bits as lowbit's fp32_to_fp16 on non-NaN.
inline half fp32_to_half(float f) {
  const float scale_to_inf = 5.192296858534828e+33f;   // 2^112
  const float scale_to_zero = 7.703719777548943e-34f;  // 2^-110
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const std::uint32_t w = float_bits(f);
  const std::uint32_t shl1_w = w + w;
  const std::uint32_t sign = w & 0x80000000u;
  std::uint32_t bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = bits_float((bias >> 1) + 0x07800000u) + base;
  const std::uint32_t bits = float_bits(base);
  const std::uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
  const std::uint32_t mantissa_bits = bits & 0x00000FFFu;
  const std::uint32_t nonsign = exp_bits + mantissa_bits;
  return static_cast<half>((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}
inline float half_to_fp32(half h) { return fp16_to_fp32(h); }

}  // namespace lowbit::ggml
