// Table-lookup quantized matmul: y[M, out] = x[M, in] . W_hat^T for weights of the form
//
//     W_hat[r, c] = table[code[r, c]] * scale[r, g] + offset[r, g]      (g = group of column c)
//
// which covers NF4 / FP4 (table = the 16 codebook values, scale = absmax with double
// quantization resolved at prepare, no offset), HQQ (table = 0..2^b-1, scale s, offset -z*s),
// torchao's tinygemm int4 (table = -8..7, scale s, offset z) and FP8 (table = the 256 values
// of e4m3 / e5m2, scale per tensor / channel / block, no offset).
//
// Layout (prepare_lut, once per weight): like qmatmul.hpp, 32-column blocks with every group
// padded to whole blocks (a group size that is not a multiple of 32 gathers x through col_of);
//   - 16-entry tables: codes as nibbles, block = 16 bytes (4 bits per weight), in one of two
//     orders (nibble_at): integer tables: byte i = columns 2i (low nibble), 2i + 1 (high), so
//     the 8 codes of an 8-column vector are one 32-bit word (broadcast load + variable shift);
//     lookup tables: column j at code position p (p < 16: low nibble of byte p, else high
//     nibble of byte p - 16) with p = 4k + l (l < 4) or 12 + 4k + l (l >= 4), k = j / 8,
//     l = j % 8: the order in which byte-plane vpshufb lookups and in-lane unpacks deliver them;
//   - 256-entry tables: one byte per code, block = 32 bytes.
// Pads hold code 0 against activation 0.
//
// Arithmetic (float activations, float32 FMA accumulation; act="int8" maps to this path):
//   decode (M <= 8): per row, per group, acc_g = sum_k table[c_k] * x_k, then
//       y = sum_g scale_g * acc_g + sum_g offset_g * xsum_g,   xsum_g = sum_{k in g} x_k
//     (the offset term only when the weight has offsets): each weight row is streamed once
//     for all M rows of x;
//   prefill (M > 8): tiles of 64 rows of W_hat dequantized to float32 (table*scale + offset,
//     two roundings) times the float32 GEMM of linear (ops.hpp), as qmatmul's float path.
// Error bound (both paths, any ISA): with A = sum_k (|table[c_k] * scale_g| + |offset_g|) * |x_k|,
//     |y - y_exact| <= gamma(Kp + 4) * A,   gamma(n) = n u / (1 - n u), u = 2^-24,
// y_exact the real-number product of the W_hat above; SIMD and scalar differ only in summation
// order, so they agree within twice that. Kernels: scalar = the definition, AVX2+FMA.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lowbit/common.hpp"
#include "lowbit/cpu_features.hpp"
#include "lowbit/qmatmul.hpp"

namespace lowbit {

// How SIMD kernels turn a code into its table value (found by prepare_lut from the table's
// values; the scalar definition always reads the table): the result is the table entry, bit
// for bit, whichever way it is computed.
enum class LutDecode : int {
  Table = 0,  // a lookup (16 entries: vpshufb on the byte planes; 256: a gather)
  Int = 1,    // table[i] == i: int -> float conversion (HQQ, tinygemm)
  E4M3 = 2,   // the OCP E4M3 ("fn") values: bit arithmetic
  E5M2 = 3,   // the OCP E5M2 values: bit arithmetic
};

struct LutWeights {
  LutDecode decode = LutDecode::Table;
  i64 rows = 0, cols = 0;
  i64 n_blocks = 0, n_groups = 0;
  int table_size = 16;                     // 16: nibble codes, 256: byte codes
  std::vector<float> table;                // [table_size]
  std::vector<std::int32_t> group_block;   // [n_groups + 1] first block of each group
  std::vector<std::int32_t> col_of;        // [n_blocks * 32] source column, -1 = pad; empty: identity
  std::vector<std::uint8_t> codes;         // [rows, row_bytes()]
  std::vector<float> scale;                // [rows, n_groups]
  std::vector<float> offset;               // [rows, n_groups]; empty: no offsets

  bool nibble() const { return table_size == 16; }
  // Where the nibble of column j (0..31) of a block lives: byte index and shift (see above).
  void nibble_at(int j, int* byte, int* shift) const {
    if (decode == LutDecode::Int) {
      *byte = j >> 1;
      *shift = (j & 1) * 4;
    } else {
      const int k = j >> 3, l = j & 7, p = l < 4 ? 4 * k + l : 12 + 4 * k + l;
      *byte = p & 15;
      *shift = (p >> 4) * 4;
    }
  }
  i64 padded_cols() const { return n_blocks * kQBlock; }
  i64 block_bytes() const { return nibble() ? 16 : 32; }
  i64 row_bytes() const { return n_blocks * block_bytes(); }
  const std::uint8_t* row_codes(i64 r) const { return codes.data() + r * row_bytes(); }
  bool has_offset() const { return !offset.empty(); }
  // Bytes a decode step streams: codes + scales + offsets.
  i64 nbytes() const { return static_cast<i64>(codes.size() + 4 * (scale.size() + offset.size())); }
};

// codes uint8 [rows, cols] (one code per byte, < table_size), table float32 [16 or 256],
// scale / offset float32 [rows, ceil(cols / group_size)] (offset may be nullptr: none).
// InvalidArgument for a code out of the table, a bad table size or group size.
std::shared_ptr<LutWeights> prepare_lut(const std::uint8_t* codes, i64 rows, i64 cols, const float* table,
                                        int table_size, const float* scale, const float* offset, i64 group_size);

// The per-ISA inner kernels (kernels/<isa>/lut_qmatmul.cpp).
struct LutKernels {
  // y[m * ldy + (r - r0)] for m < M, r in [r0, r0 + rb): xp float32 [M, padded_cols] (padded
  // order), xsum float32 [M, n_groups] (read only when w.has_offset()).
  void (*gemv)(const LutWeights& w, const float* xp, const float* xsum, i64 M, i64 r0, i64 rb, float* y, i64 ldy);
  // Rows [r0, r0 + rb) of W_hat in padded column order: dst float32 [rb, padded_cols].
  void (*dequantize_rows)(const LutWeights& w, i64 r0, i64 rb, float* dst);
};

const LutKernels& lut_kernels();         // active ISA
const LutKernels& lut_kernels(Isa isa);  // a given one (tests); Unsupported if absent

namespace scalar { extern const LutKernels kLutKernels; }
namespace avx2 { extern const LutKernels kLutKernels; }

// y float32 [M, rows] = x [M, cols] . W_hat^T (x float32 / float16 / bfloat16, row stride ldx).
// Fixed tiles over lowbit::parallel_for: bit-identical for any thread count.
void lut_qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const LutWeights& w, float* y, const LutKernels& k);

}  // namespace lowbit
