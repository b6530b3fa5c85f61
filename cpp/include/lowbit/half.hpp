// IEEE binary16 and bfloat16 <-> float32 conversions, round-to-nearest-even.
//
// fp16: bit-exact with NumPy's float16 casts (npy_floatbits_to_halfbits): subnormals,
//   overflow to +-inf, NaN keeps its sign and top 10 payload bits (a payload that would
//   vanish becomes 0x7c01 rather than turning into inf).
// bf16: the standard rounding (as ml_dtypes / PyTorch): RNE on the top 16 bits; NaN
//   becomes a quiet NaN with its sign (0x7fc0 | sign).
#pragma once

#include <cstdint>
#include <cstring>

namespace lowbit {

inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint16_t fp32_to_fp16(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
  const std::uint32_t exp = x & 0x7f800000u;
  std::uint32_t sig = x & 0x007fffffu;

  if (exp == 0x7f800000u) {  // inf or NaN
    if (sig == 0) return static_cast<std::uint16_t>(sign | 0x7c00u);
    std::uint16_t h = static_cast<std::uint16_t>(0x7c00u + (sig >> 13));
    if (h == 0x7c00u) h = 0x7c01u;  // keep it a NaN when the payload is in the low bits
    return static_cast<std::uint16_t>(sign | h);
  }
  if (exp >= 0x47800000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // overflow
  if (exp <= 0x38000000u) {  // result is subnormal or zero in fp16
    if (exp < 0x33000000u) return sign;  // below half the smallest subnormal: +-0
    const std::uint32_t e = exp >> 23;
    sig |= 0x00800000u;
    const std::uint32_t shift = 113u - e + 13u;  // 126 - e bits to drop
    std::uint32_t h = sig >> shift;
    const std::uint32_t rem = sig & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  // normal: rebias exponent, round mantissa from 23 to 10 bits (carry may bump exponent)
  std::uint32_t h = ((exp - 0x38000000u) >> 13) | (sig >> 13);
  const std::uint32_t rem = sig & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into inf: correct
  return static_cast<std::uint16_t>(sign | h);
}

inline float fp16_to_fp32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t sig = h & 0x3ffu;
  if (exp == 0x1fu) return bits_float(sign | 0x7f800000u | (sig << 13));
  if (exp == 0) {
    if (sig == 0) return bits_float(sign);
    // subnormal: normalise
    int e = -1;
    do {
      ++e;
      sig <<= 1;
    } while ((sig & 0x400u) == 0);
    return bits_float(sign | (static_cast<std::uint32_t>(112 - e) << 23) | ((sig & 0x3ffu) << 13));
  }
  return bits_float(sign | ((exp + 112u) << 23) | (sig << 13));
}

inline std::uint16_t fp32_to_bf16(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u)  // NaN
    return static_cast<std::uint16_t>(((x >> 16) & 0x8000u) | 0x7fc0u);
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}

inline float bf16_to_fp32(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

}  // namespace lowbit
