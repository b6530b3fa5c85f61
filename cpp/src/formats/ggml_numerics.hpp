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

// GGML_FP32_TO_FP16 of a build without F16C: round to nearest even; NaN -> sign | 0x7e00.
inline half fp32_to_half(float f) {
  if (std::isnan(f)) return static_cast<half>(((float_bits(f) >> 16) & 0x8000u) | 0x7e00u);
  return fp32_to_fp16(f);
}
inline float half_to_fp32(half h) { return fp16_to_fp32(h); }

}  // namespace lowbit::ggml
