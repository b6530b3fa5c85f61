// bitsandbytes' weight formats: NF4 / FP4 blockwise absmax 4-bit codes (with optional double
// quantization of the absmax values) and LLM.int8() row-wise int8 with outlier decomposition.
//
// Definitions (REFERENCE.md §3, matching bitsandbytes' reference "default" backend):
//  * 4-bit: the tensor is flattened row-major and cut into blocks of `blocksize` elements (blocks
//    cross row boundaries; the last block may be partial). absmax_b = max|x| over the block.
//    Full blocks are scaled by x * (1/max(absmax_b, 1e-38)), the partial tail block by
//    x / max(absmax_t, 1e-38) and its stored absmax is that clamped value (bnb does exactly
//    this). Scaled values are clamped to [-1, 1] and mapped to the nearest code: with the codes
//    sorted ascending (ties kept in index order), code k is chosen when
//    bounds[k-1] < s <= bounds[k], bounds[k] = (c[k] + c[k+1]) / 2 in float32; a value exactly
//    on a midpoint takes the lower code. Two codes per byte, the FIRST element in the HIGH
//    nibble; an odd count pads a zero low nibble. Dequantize: code[q] * absmax (float32).
//  * 8-bit blockwise (the double quantization of the absmax): the same rule over the 256-entry
//    signed dynamic map (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)),
//    one uint8 code per value, default blocksize 256. bnb subtracts offset = mean(absmax)
//    first; dequantize: absmax = code8[q] * absmax2[block] + offset.
//  * LLM.int8(): CB = round_half_even(W * ((1/rowmax) * 127)), SCB = rowmax (float32) per row.
//    A forward pass finds the input features where any |x| >= threshold (outlier columns),
//    quantizes the activations per row the same way with outlier entries zeroed (and the outlier
//    columns set to 0 in the int8 copy), multiplies in int32, rescales by
//    acc * (rowstat_x * SCB) * 6.200124e-05 and adds the outlier columns in float16 precision:
//    fp16(x[:, c]) times fp16(CB[:, c] * SCB / 127), accumulated in float32.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/common.hpp"

namespace lowbit::bnb {

enum class Code4 { NF4, FP4 };

// The 16 code values in index order, float32, normalized to [-1, 1]. FP4 is bnb's own table
// ({0, 0.0625, 8, 12, 4, 6, 2, 3} with a sign bit, divided by 12), not OCP E2M1.
const float* code4(Code4 type);
// bnb's 8-bit signed dynamic map: 256 ascending float32 values in [-1, 1] (0 and 1 included).
const std::vector<float>& dynamic_map();

// Blocksizes bnb accepts for 4-bit: powers of two 32..4096. Throws InvalidArgument otherwise.
void check_blocksize4(i64 blocksize);

// Index of the nearest entry of `sorted` (n ascending values) by the midpoint rule above.
// `bounds` holds the n-1 float32 midpoints (see midpoints()).
std::vector<float> midpoints(const float* sorted, int n);

// 4-bit blockwise quantization of x[0..n) (flattened). packed: ceil(n/2) bytes, absmax:
// ceil(n/blocksize) floats. Throws InvalidArgument for n <= 0, a bad blocksize or a non-finite x.
void quantize4(const float* x, i64 n, Code4 type, i64 blocksize, std::uint8_t* packed, float* absmax);
// Inverse: y[0..n) = code[q] * absmax[block].
void dequantize4(const std::uint8_t* packed, const float* absmax, i64 n, Code4 type, i64 blocksize, float* y);

// 8-bit blockwise quantization over `code` (256 ascending values, e.g. dynamic_map()).
// q: n bytes; absmax: ceil(n/blocksize) floats. blocksize > 0. Throws for non-finite x.
void quantize_blockwise8(const float* x, i64 n, const float* code, i64 blocksize, std::uint8_t* q, float* absmax);
// y = code[q] * absmax[block] + offset (offset 0 for plain blockwise data).
void dequantize_blockwise8(const std::uint8_t* q, const float* absmax, const float* code, i64 n, i64 blocksize,
                           float offset, float* y);

// Double quantization of the 4-bit absmax values (float32 [n]): offset = mean (accumulated in
// double, rounded to float32), then blockwise 8-bit over dynamic_map() of absmax - offset.
// qabsmax: n bytes, absmax2: ceil(n/blocksize2) floats. Returns the offset.
float double_quantize(const float* absmax, i64 n, i64 blocksize2, std::uint8_t* qabsmax, float* absmax2);

// ---- LLM.int8() ----
// Row-wise absmax int8 of W [rows, cols] (row-major, contiguous): CB [rows, cols], SCB [rows].
// An all-zero row gets SCB = 0 and codes 0. Throws for non-finite W.
void int8_rowwise_quantize(const float* W, i64 rows, i64 cols, std::int8_t* CB, float* SCB);
// W_hat[r, c] = CB[r, c] * SCB[r] * (1/127) in float32, as bnb's int8_vectorwise_dequant.
void int8_rowwise_dequantize(const std::int8_t* CB, const float* SCB, i64 rows, i64 cols, float* W);

struct Int8LinearStats {
  i64 outlier_columns = 0;  // input features that ran in float16
};

// y [m, n] = LLM.int8() product of X [m, k] with the int8 weight (CB [n, k], SCB [n]) plus
// bias [n] (may be null). threshold <= 0: no decomposition (every column in int8).
// Throws for non-finite X.
Int8LinearStats int8_linear(const float* X, i64 m, i64 k, const std::int8_t* CB, const float* SCB, i64 n,
                            float threshold, const float* bias, float* y);

}  // namespace lowbit::bnb
