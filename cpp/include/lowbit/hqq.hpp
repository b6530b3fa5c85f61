// HQQ (half-quadratic quantization, REFERENCE.md §4): a calibration-free affine quantizer
// whose float zero point is fitted by a proximal solver of a sparsity-promoting lp error.
//
// Grouping follows hqq on the row-major flattened weight (numel = rows * cols, G = numel / gs):
//   axis 1: group g holds the gs consecutive elements flat[g*gs .. g*gs + gs)
//           (consecutive input columns, like GPTQ/AWQ groups);
//   axis 0: group g holds the gs elements flat[g + i*G], i = 0 .. gs-1 (strided by G).
// Stored (the "hqq1" ... "hqq8" formats, see formats/hqq_format.cpp):
//   qweight uint8 [rows, ceil(cols*nbits/8)]  codes in W's own (row, col) order, each row an
//                                             LSB-first bit stream (as grouped_int.hpp)
//   scale   float32 [G]   per-group step: hqq's 1/s_inv (shape [G,1] for axis 1, [1,G] for 0)
//   zero    float32 [G]   per-group float zero point
// Dequantization (hqq's): W_hat = (code - zero[g]) * scale[g], in float32.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/common.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

struct HqqParams {
  int nbits = 4;          // 1, 2, 3, 4, 5, 6 or 8
  i64 group_size = 64;    // elements per group; must divide rows * cols
  int axis = 1;           // 1: contiguous groups, 0: groups strided over the flattened tensor
  bool optimize = true;   // run the proximal solver; false = min/max grid only
  bool round_zero = false;  // round the initial zero point (hqq does for 4-bit configs)
  double lp_norm = 0.7;   // p of the lp error, 0 < p <= 1
  double beta = 10.0;     // shrinkage penalty, > 0 (constant: hqq's default solver never grows it)
  int iters = 20;         // maximum solver steps, >= 1
  bool early_stop = true; // stop after the first step whose error does not improve
};

struct HqqShape {
  i64 rows = 0, cols = 0;
  i64 group_size = 0;
  int axis = 1;
  int nbits = 4;

  i64 numel() const { return rows * cols; }
  i64 n_groups() const { return numel() / group_size; }
  i64 row_bytes() const { return (cols * nbits + 7) / 8; }
  int maxq() const { return (1 << nbits) - 1; }
};

// Validated shape for W [rows, cols] and these params (InvalidArgument naming the problem).
HqqShape hqq_shape(i64 rows, i64 cols, const HqqParams& p);

struct HqqStats {
  int steps = 0;               // solver steps run (0 without optimize)
  std::vector<float> errors;   // mean |W - W_hat| seen before each step's zero update
};

// Quantizes W (any dtype/strides; read as float32). Outputs sized by hqq_shape: qweight
// [rows * row_bytes], scale [G], zero [G]. Throws InvalidArgument for non-finite weights or a
// value range beyond float32. Parallel over groups; bit-identical for any thread count.
HqqStats hqq_quantize(const AnyMatrixView& W, const HqqParams& p, std::uint8_t* qweight, float* scale,
                      float* zero);

// out: float32 [rows, cols] row-major. Parallel over rows.
void hqq_dequantize(const HqqShape& s, const std::uint8_t* qweight, const float* scale, const float* zero,
                    float* out);

}  // namespace lowbit
