// FP8 (OCP 8-bit floating point) <-> float32 conversions, and the scaled FP8 weight quantizer.
//
// Encodings (REFERENCE.md §9.1):
//   E4M3 ("fn"): 1-4-3, bias 7, no infinities; NaN = S.1111.111 only; max 448 (S.1111.110);
//                smallest normal 2^-6, smallest subnormal 2^-9.
//   E5M2:        1-5-2, bias 15, IEEE-like inf/NaN; max 57344; smallest subnormal 2^-16.
// float32 -> FP8 rounds to nearest, ties to even, and SATURATES: finite values beyond the
// largest finite code and +-inf become +-max. NaN stays NaN (sign kept: E4M3 0x7f, E5M2 0x7e,
// the bytes ml_dtypes writes). For every input the result equals
// ml_dtypes.float8_e4m3fn / float8_e5m2 applied to clip(x, -max, max).
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"
#include "lowbit/half.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

enum class Fp8Kind : std::uint8_t { E4M3 = 0, E5M2 = 1 };

struct Fp8Spec {
  int mant_bits;             // 3 or 2
  int bias;                  // 7 or 15
  std::uint8_t max_code;     // magnitude bits of the largest finite value
  std::uint8_t nan_code;     // magnitude bits written for NaN
  bool has_inf;              // E5M2: exponent all ones, mantissa 0 = inf
  float max_value;           // 448 or 57344
};

constexpr Fp8Spec fp8_spec(Fp8Kind k) {
  return k == Fp8Kind::E4M3 ? Fp8Spec{3, 7, 0x7e, 0x7f, false, 448.0f}
                            : Fp8Spec{2, 15, 0x7b, 0x7e, true, 57344.0f};
}

// Round-to-nearest-even, saturating float32 -> FP8 byte.
template <Fp8Kind K>
inline std::uint8_t fp32_to_fp8(float f) {
  constexpr Fp8Spec s = fp8_spec(K);
  constexpr int M = s.mant_bits;
  constexpr int emin = 1 - s.bias;  // exponent of the smallest normal
  const std::uint32_t x = float_bits(f);
  const auto sign = static_cast<std::uint8_t>((x >> 24) & 0x80u);
  const std::uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<std::uint8_t>(sign | s.nan_code);
  if (a >= 0x7f800000u) return static_cast<std::uint8_t>(sign | s.max_code);  // inf saturates
  const int e = static_cast<int>(a >> 23) - 127;
  if (e >= emin) {
    // normal in FP8: keep M mantissa bits, round the 23 - M dropped ones to nearest even
    // (a carry into the exponent is the correct next binade)
    constexpr int drop = 23 - M;
    std::uint32_t r = a + ((1u << (drop - 1)) - 1u) + ((a >> drop) & 1u);
    r >>= drop;                                          // float32 exponent | M mantissa bits
    const std::uint32_t rebias = static_cast<std::uint32_t>(127 - s.bias) << M;
    const std::uint32_t code = r - rebias;
    if (code > s.max_code) return static_cast<std::uint8_t>(sign | s.max_code);  // saturate
    return static_cast<std::uint8_t>(sign | code);
  }
  // subnormal (or zero) in FP8: the code is |x| / 2^(emin - M) rounded to an integer, half to
  // even; |x| < 2^emin so the scaling by a power of two is exact and the code is <= 2^M (which
  // is the smallest normal's code, exponent field 1, mantissa 0)
  const float q = bits_float(a) * static_cast<float>(1u << (M - emin));
  auto t = static_cast<std::uint32_t>(q);
  const float frac = q - static_cast<float>(t);
  if (frac > 0.5f || (frac == 0.5f && (t & 1u))) ++t;
  return static_cast<std::uint8_t>(sign | t);
}

// FP8 byte -> float32 (exact).
template <Fp8Kind K>
inline float fp8_to_fp32(std::uint8_t b) {
  constexpr Fp8Spec s = fp8_spec(K);
  constexpr int M = s.mant_bits;
  constexpr int emin = 1 - s.bias;
  const std::uint32_t sign = static_cast<std::uint32_t>(b & 0x80u) << 24;
  const std::uint32_t mag = b & 0x7fu;
  const std::uint32_t exp = mag >> M;
  const std::uint32_t man = mag & ((1u << M) - 1u);
  constexpr std::uint32_t exp_all_ones = (1u << (7 - M)) - 1u;
  if (s.has_inf ? exp == exp_all_ones : mag == 0x7fu) {
    if (s.has_inf && man == 0) return bits_float(sign | 0x7f800000u);
    return bits_float(sign | 0x7fc00000u);
  }
  if (exp == 0) {
    const float v = static_cast<float>(man) / static_cast<float>(1u << (M - emin));
    return bits_float(sign | float_bits(v));
  }
  return bits_float(sign | ((exp + static_cast<std::uint32_t>(127 - s.bias)) << 23) | (man << (23 - M)));
}

inline std::uint8_t fp32_to_fp8(Fp8Kind k, float f) {
  return k == Fp8Kind::E4M3 ? fp32_to_fp8<Fp8Kind::E4M3>(f) : fp32_to_fp8<Fp8Kind::E5M2>(f);
}
inline float fp8_to_fp32(Fp8Kind k, std::uint8_t b) {
  return k == Fp8Kind::E4M3 ? fp8_to_fp32<Fp8Kind::E4M3>(b) : fp8_to_fp32<Fp8Kind::E5M2>(b);
}

// ---- scaled FP8 weights ----------------------------------------------------------------
//
// W [rows = out, cols = in] is stored as
//   codes  uint8 [rows, cols]      FP8 bytes of W / scale
//   scales float32 [srows, scols]  one scale per tile of block_rows x block_cols weights
// with W_hat[r, c] = scales[r / block_rows, c / block_cols] * fp8(codes[r, c]).
// Strategies: tensor (one tile: the whole matrix), channel (1 x cols tiles: one per output
// row), block (block_rows x block_cols tiles, e.g. 128 x 128; the last tiles along each axis
// may be partial, as DeepSeek-V3 / transformers' FP8Linear allow: scales has
// ceil(rows/block_rows) x ceil(cols/block_cols) entries).
// scale = amax(tile) / max_value (448 or 57344); codes = fp8(W / scale) (saturating);
// an all-zero tile gets scale 0 and zero codes.
enum class Fp8Strategy : std::uint8_t { Tensor = 0, Channel = 1, Block = 2 };

struct Fp8Params {
  Fp8Kind kind = Fp8Kind::E4M3;
  Fp8Strategy strategy = Fp8Strategy::Channel;
  i64 block_rows = 128, block_cols = 128;  // Block only, >= 1
};

struct Fp8Shape {
  i64 rows = 0, cols = 0;
  i64 block_rows = 1, block_cols = 1;  // effective tile (tensor: rows x cols; channel: 1 x cols)
  i64 scale_rows() const { return (rows + block_rows - 1) / block_rows; }
  i64 scale_cols() const { return (cols + block_cols - 1) / block_cols; }
};

// Validates the params against a rows x cols weight and resolves the tile.
Fp8Shape fp8_output_shape(i64 rows, i64 cols, const Fp8Params& p);

// Quantizes W into codes [rows, cols] and scales [scale_rows, scale_cols] (row-major).
// Throws InvalidArgument naming the first non-finite weight. Bit-identical for any thread count.
void fp8_quantize(const AnyMatrixView& W, const Fp8Params& p, std::uint8_t* codes, float* scales);

// out [rows, cols] = scales (per tile) * fp8(codes). Scales must be finite and >= 0.
void fp8_dequantize(const Fp8Shape& s, Fp8Kind kind, const std::uint8_t* codes, const float* scales, float* out);

}  // namespace lowbit
