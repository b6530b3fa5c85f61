// torchao's int4 weight-only format with a FLOAT zero point ("tinygemm", REFERENCE.md §9.3).
//
// A weight W [rows = out, cols = in] with groups of `group_size` consecutive input columns
// (group_size divides cols, as torchao requires) is stored as
//   qweight     uint8 [rows, ceil(cols / 2)]  4-bit codes q in [0, 15], LSB-first (as int4)
//   scales_bf16 uint16 [rows, n_groups]       bfloat16 bits of each group's scale
//   zeros_bf16  uint16 [rows, n_groups]       bfloat16 bits of each group's float zero point
// with W_hat = (q - 8) * scale + zero (torchao's dequantize in the float zero-point domain).
//
// The quantizer is torchao's _choose_qparams_affine_tinygemm + _quantize_affine_tinygemm for a
// float32 weight with bfloat16 scale/zero dtypes (uint4, quant range 0..15, mid point 8):
//   scale = max((max - min) / 15, FLT_MIN);  zero = min + scale * 8   (float32, then to bf16)
//   min_val = bf16(zero_b - scale_b * 8)     (torch computes this in the params' dtype)
//   q = clamp(rne((w - min_val) / scale_b), 0, 15)                     (float32)
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

struct TinygemmShape {
  i64 rows = 0, cols = 0, group_size = 128;
  i64 n_groups() const { return cols / group_size; }
  i64 row_bytes() const { return (cols + 1) / 2; }
};

// Validates: non-empty, group_size >= 1 dividing cols.
TinygemmShape tinygemm_output_shape(i64 rows, i64 cols, i64 group_size);

// Quantizes W into qweight [rows, row_bytes], scales/zeros (bf16 bits) [rows, n_groups].
// Throws InvalidArgument naming the first non-finite weight. Bit-identical for any thread count.
void tinygemm_quantize(const AnyMatrixView& W, i64 group_size, std::uint8_t* qweight, std::uint16_t* scales_bf16,
                       std::uint16_t* zeros_bf16);

// out [rows, cols] float32 = (q - 8) * scale + zero. Scales and zeros must be finite.
void tinygemm_dequantize(const TinygemmShape& s, const std::uint8_t* qweight, const std::uint16_t* scales_bf16,
                         const std::uint16_t* zeros_bf16, float* out);

// One row of codes (packed, 4 bits LSB-first) for groups with float32 scales and grid origins
// (the value of code 0, zero - 8 * scale): q = clamp(rne((x - origin) / scale), 0, 15). A last
// partial group is allowed here (the format table's reference rows).
void tinygemm_quantize_row(const float* x, i64 n, i64 group_size, const float* scales, const float* origins,
                           std::uint8_t* dst);
void tinygemm_dequantize_row(const std::uint8_t* src, i64 n, i64 group_size, const float* scales,
                             const float* zeros, float* y);

}  // namespace lowbit
