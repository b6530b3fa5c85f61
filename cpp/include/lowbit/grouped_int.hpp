// lowbit's canonical layout for grouped integer formats (INT2 ... INT8).
//
// A weight W of shape [rows = out_features, cols = in_features] becomes:
//   qweight  uint8 [rows, row_bytes]   codes of each row as an LSB-first bit stream:
//                                       code c occupies bits [c*bits, c*bits + bits) of
//                                       the row's bytes (byte k holds bits 8k..8k+7);
//                                       row_bytes = ceil(cols * bits / 8), pad bits are 0.
//   scales   float32 [srows, n_groups] srows = rows, or 1 for a per-tensor scale.
//   zeros    uint8 [srows, n_groups]   integer zero point z in [0, 2^bits - 1]
//                                       (symmetric: z = 2^(bits-1)).
//   g_idx    int32 [cols] (optional)   group of each input column; absent means
//                                       contiguous groups: g = c / group_size.
// Dequantization: W[r, c] = scales[r', g] * (code[r, c] - zeros[r', g]), g = group of c,
// r' = r (or 0 when per-tensor). Groups span group_size consecutive input columns; the
// last group may be partial (cols need not be a multiple of group_size).
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"

namespace lowbit {

struct GroupedIntShape {
  int bits = 4;
  i64 rows = 0, cols = 0;
  i64 group_size = 0;       // effective (> 0): per-channel / per-tensor use cols
  bool per_tensor = false;  // one scale/zero for the whole matrix

  i64 n_groups() const { return (cols + group_size - 1) / group_size; }
  i64 scale_rows() const { return per_tensor ? 1 : rows; }
  i64 row_bytes() const { return (cols * bits + 7) / 8; }
  int maxq() const { return (1 << bits) - 1; }
};

// Validate and resolve a user group_size: -1 = per output channel, 0 = per tensor,
// g > 0 = groups of g columns (g > cols is clamped to cols).
GroupedIntShape make_grouped_shape(int bits, i64 rows, i64 cols, i64 group_size);

struct GroupedIntConstView {
  GroupedIntShape shape;
  const std::uint8_t* qweight = nullptr;
  const float* scales = nullptr;
  const std::uint8_t* zeros = nullptr;
  const std::int32_t* g_idx = nullptr;  // nullable
};

struct GroupedIntMutView {
  GroupedIntShape shape;
  std::uint8_t* qweight = nullptr;
  float* scales = nullptr;
  std::uint8_t* zeros = nullptr;
};

// Bit-stream (un)packing of `n` codes of `bits` bits (LSB first). pack writes
// ceil(n*bits/8) bytes, zeroing the pad bits.
void pack_codes(const std::uint8_t* codes, i64 n, int bits, std::uint8_t* dst);
void unpack_codes(const std::uint8_t* src, i64 n, int bits, std::uint8_t* codes);

// Checks the codes/zeros fit in `bits`, g_idx entries lie in [0, n_groups) and scales
// are finite; throws InvalidArgument naming the first offender.
void validate_grouped(const GroupedIntConstView& q);

// out: float32 [rows, cols] row-major. Parallel over rows; bit-identical for any threads.
void dequantize_grouped(const GroupedIntConstView& q, float* out);

}  // namespace lowbit
