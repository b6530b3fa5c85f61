// Interleaved ("repacked") kernel layouts of GGUF weights, made once at prepare_ggml.
//
// q4_0x8: the rows are cut into groups of 8 (the last group padded with zero rows: d = 0,
// codes 0); group g is stored contiguously as cols/32 blocks of 144 bytes, block i being
//   [8 x fp16 d of rows 8g..8g+7, block i]  [4 chunks x 32 bytes]
// where chunk c byte 4r+t = row (8g+r)'s qs[4c+t] (native block_q4_0 byte order). The low
// nibbles of chunk c are then elements 4c..4c+3 of the 8 rows and its high nibbles elements
// 16+4c..16+4c+3, 4 bytes per row: one maddubs of the unsigned nibbles against the 4 matching
// activation bytes broadcast gives per 32-bit lane r a partial dot of row r, so a block's 8
// row dots end up in the 8 lanes with no horizontal reduction, and one pass streams memory.
// The -8 of q4_0 is folded through the activation block's code sum (precomputed per call):
//   sum_j (q_j - 8) a_j = sum_j q_j a_j - 8 sum_j a_j   (exact in int32).
// The fp16 scales stay fp16 (decode is bandwidth-bound: 2 bytes, converted 8 at a time).
//
// The kernels compute each output as the scalar vec_dot_q4_0 does, in the same order:
//   sumf += (d_w * d_a) * float(sumi), block after block,
// so with -ffp-contract=off they are bit-identical to the definition.
//
// iq4_nl blocks have q4_0's bytes (fp16 d, 16 nibble bytes): iq4_nlx8 is the q4_0x8 layout.
//
// q4_Kx8: groups of 8 rows likewise (last padded: d = dmin = 0); per super-block i of group g
// 1184 bytes (native: 8 x 144 = 1152):
//   [0, 16)     8 x fp16 d          [16, 32)  8 x fp16 dmin
//   [32, 96)    scale of sub-block j of row r at 32 + 8j + r (6-bit values, one byte each)
//   [96, 160)   mins: byte 96 + 16p + 2r + e = min of sub-block 2p+e of row r
//   [160, 1184) 4 pairs h of sub-blocks (2h, 2h+1) x 8 chunks c of 32 bytes: chunk byte 4r+t =
//               row r's qs[32h + 4c + t]: low nibbles elements 4c..4c+3 of sub-block 2h,
//               high nibbles the same of sub-block 2h+1.
// The kernels compute sumi = sum_j sc_j dot_j and summ = sum_j m_j (bsums[2j] + bsums[2j+1])
// in int32 (exact, as the scalar vec_dot_q4_K) and sumf += d*sumi - dmin*summ in its order.
//
// q8_0x8: groups of 8 rows likewise; per block 272 bytes (= 8 native blocks): [8 x fp16 d]
// [8 chunks x 32 bytes], chunk byte 4r+t = row r's qs[4c+t]. Signed codes: maddubs(|w|,
// sign(a, w)) (pair sums <= 2*128*127, exact), widened to int32 per chunk.
//
// q6_Kx8: groups of 8 rows; per super-block 1680 bytes (= 8 native blocks):
//   [0, 16)    8 x fp16 d
//   [16, 144)  byte 16 + 16p + 2r + e = scale (int8) of 16-element sub-block 2p+e of row r
//   [144, ...) per 32 elements q (8 x 192 bytes): 4 chunks c of 32 bytes, byte 4r+t: low nibble
//              = low 4 bits of the unsigned 6-bit code u (= value + 32) of element 32q+4c+t, high
//              nibble that of element 32q+16+4c+t; then 2 chunks e of 32 bytes whose byte 4r+t
//              holds in bits 2k, 2k+1 (k = 2(c - 2e) + nibble) the top 2 bits of those codes.
// The -32 folds through the bsums: sum_l (u_l - 32) a_l = sum_l u_l a_l - 32 bsum (int32, exact).
//
// q4_1x8, q5_0x8, q5_1x8: the q4_0x8 design for the other 32-element blocks; per block
//   [8 x fp16 d] [8 x fp16 m: q4_1, q5_1] [32-byte high plane: q5_0, q5_1] [4 chunks x 32 bytes]
// = 160 / 176 / 192 bytes (the bytes of 8 native blocks). Chunks as q4_0x8 (byte 4r+t of chunk
// c: row r's qs[4c+t]). High plane byte 4r+t, bit 2c+h = bit 4 of the code of element
// 16h+4c+t of row r (native qh bit 16h+4c+t): one shift and mask put it at bit 4 of that
// element's chunk byte. Codes stay unsigned (0..31); q5_0's -16 folds through the activation
// block's code sum like q4_0's -8. q4_1/q5_1 pair with Q8_1 activations: the kernels add
// m_w * s_a (s_a = the Q8_1 block's fp16 s) as the scalar vec_dot does:
//   sumf += (d_w * d_a) * float(sumi) + m_w * s_a.
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"

namespace lowbit {

constexpr int kQ4_0x8Rows = 8;
constexpr i64 kQ4_0x8BlockBytes = kQ4_0x8Rows * 2 + kQ4_0x8Rows * 16;  // 144

// Bytes of the q4_0x8 layout of a [rows, cols] q4_0 matrix.
i64 q4_0x8_nbytes(i64 rows, i64 cols);
// native: rows x row_size(q4_0, cols) bytes -> dst: q4_0x8_nbytes(rows, cols) bytes.
void repack_q4_0x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
// Row r of a q4_0x8 matrix back to its native q4_0 blocks (row_size(q4_0, cols) bytes).
void unpack_q4_0x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

constexpr i64 kQ4_Kx8BlockBytes = 160 + 8 * 128;  // 1184

i64 q4_Kx8_nbytes(i64 rows, i64 cols);
void repack_q4_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q4_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

// q5_Kx8: the q4_Kx8 bytes, then 256 bytes of high plane: byte 1184 + 32c + 4r + t = row r's
// qh[4c+t], bit j = bit 4 of element 32j + 4c + t (sub-block j, the element of chunk c byte
// 4r+t): one shift and mask per sub-block put it at bit 4 of the nibble. 1440 bytes per 8
// rows x 256 (native: 8 x 176 = 1408).
constexpr i64 kQ5_Kx8BlockBytes = kQ4_Kx8BlockBytes + 256;  // 1440

i64 q5_Kx8_nbytes(i64 rows, i64 cols);
void repack_q5_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q5_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

// q3_Kx8: groups of 8 rows; per super-block 912 bytes (native: 8 x 110 = 880):
//   [0, 16)    8 x fp16 d
//   [16, 144)  byte 16 + 16p + 2r + e = scale - 32 (int8) of 16-element sub-block 2p+e of row r
//   [144, ...) per 32 elements q (8 x 96 bytes): 2 chunks n of 32 bytes whose byte 4r+t holds in
//              bits 2c, 2c+1 the low 2 bits of the code u (= value + 4, 0..7) of element
//              32q + 16n + 4c + t of row r; then 1 chunk whose byte 4r+t holds in bit 4n+c its
//              3rd bit (native hmask).
// The -4 folds through the bsums as q6_K's -32: sum_l (u_l - 4) a_l = sum_l u_l a_l - 4 bsum.
constexpr i64 kQ3_Kx8BlockBytes = 16 + 128 + 8 * 96;  // 912

i64 q3_Kx8_nbytes(i64 rows, i64 cols);
void repack_q3_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q3_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

// q2_Kx8: groups of 8 rows; per super-block 672 bytes (= 8 native blocks):
//   [0, 16) 8 x fp16 d   [16, 32) 8 x fp16 dmin
//   [32, 160)  byte 32 + 16p + 2r + e = native scales byte (scale | min << 4) of 16-element
//              sub-block 2p+e of row r
//   [160, ...) per 32 elements q (8 x 64 bytes): 2 chunks n of 32 bytes whose byte 4r+t holds
//              in bits 2c, 2c+1 the code of element 32q + 16n + 4c + t of row r.
constexpr i64 kQ2_Kx8BlockBytes = 32 + 128 + 8 * 64;  // 672

i64 q2_Kx8_nbytes(i64 rows, i64 cols);
void repack_q2_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q2_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

constexpr i64 kQ8_0x8BlockBytes = 8 * 2 + 8 * 32;  // 272

i64 q8_0x8_nbytes(i64 rows, i64 cols);
void repack_q8_0x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q8_0x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

constexpr i64 kQ6_Kx8BlockBytes = 16 + 128 + 8 * 192;  // 1680

i64 q6_Kx8_nbytes(i64 rows, i64 cols);
void repack_q6_Kx8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q6_Kx8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

constexpr i64 kQ4_1x8BlockBytes = 8 * 2 + 8 * 2 + 8 * 16;           // 160
constexpr i64 kQ5_0x8BlockBytes = 8 * 2 + 32 + 8 * 16;               // 176
constexpr i64 kQ5_1x8BlockBytes = 8 * 2 + 8 * 2 + 32 + 8 * 16;       // 192

i64 q4_1x8_nbytes(i64 rows, i64 cols);
void repack_q4_1x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q4_1x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);
i64 q5_0x8_nbytes(i64 rows, i64 cols);
void repack_q5_0x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q5_0x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);
i64 q5_1x8_nbytes(i64 rows, i64 cols);
void repack_q5_1x8(const std::uint8_t* native, i64 rows, i64 cols, std::uint8_t* dst);
void unpack_q5_1x8_row(const std::uint8_t* packed, i64 r, i64 cols, std::uint8_t* native_row);

// One row of activations quantized to Q8_0 (or Q8_1) blocks, with each block's scale as float
// and its code sum (for the folded offset); for Q8_1 also its s as float.
struct GgmlQ8Act {
  const std::uint8_t* blocks;  // cols/32 block_q8_0 (block_q8_1 for q4_1 / q5_1)
  const float* d;              // [cols/32]
  const std::int32_t* sum;     // [cols/32]
  const float* s = nullptr;    // [cols/32] Q8_1's s (q4_1 / q5_1 kernels)
};

// out[j * 8 + r] = vec_dot_q4_0(row 8g+r, activation row a[j]) for j < MR, r < 8; `group` is
// the first block of group g, nb = cols/32.
using GgmlQ4_0x8Fn = void (*)(i64 nb, const std::uint8_t* group, const GgmlQ8Act* a, float* out);

// One row of activations quantized to Q8_K super-blocks, with the sums of each sub-block's two
// bsums (|.| <= 32 * 127, int16) packed in pairs: pairs[4i + p] = (b_2p & 0xffff) | b_2p+1 << 16.
struct GgmlQ8KAct {
  const std::uint8_t* blocks;  // cols/256 block_q8_K
  const std::int32_t* pairs;   // [cols/256 * 4]
};

// out[j * 8 + r] = vec_dot_q4_K(row 8g+r, a[j]) for j < MR, r < 8.
using GgmlQ4_Kx8Fn = void (*)(i64 nb, const std::uint8_t* group, const GgmlQ8KAct* a, float* out);

using GgmlQ4_0x16Fn = void (*)(i64 nb, const std::uint8_t* group, i64 stride, const GgmlQ8Act* a, float* out);

struct GgmlRepackKernels {
  GgmlQ4_0x8Fn q4_0x8_1;  // MR = 1
  GgmlQ4_0x8Fn q4_0x8_4;  // MR = 4
  GgmlQ4_Kx8Fn q4_Kx8_1;
  GgmlQ4_Kx8Fn q4_Kx8_4;
  // prefill: groups g and g+1 (`stride` bytes apart) x 4 activation rows; out[(4h + j) * 8 + r]
  GgmlQ4_0x16Fn q4_0x16_4;
  GgmlQ4_0x8Fn q8_0x8_1;  // q8_0x8 against Q8_0 activations (their sums unused)
  GgmlQ4_0x8Fn q8_0x8_4;
  GgmlQ4_Kx8Fn q6_Kx8_1;  // pairs: 8 per super-block, (bsums[2p] & 0xffff) | bsums[2p+1] << 16
  GgmlQ4_Kx8Fn q6_Kx8_4;
  GgmlQ4_0x8Fn iq4_nlx8_1;  // iq4_nl in the q4_0x8 layout (same block bytes)
  GgmlQ4_0x8Fn iq4_nlx8_4;
  // q4_1 / q5_0 / q5_1 in their x8 layouts: decode (MR = 1), MR = 4 and the prefill pair of groups
  GgmlQ4_0x8Fn q4_1x8_1, q4_1x8_4;
  GgmlQ4_0x16Fn q4_1x16_4;
  GgmlQ4_0x8Fn q5_0x8_1, q5_0x8_4;
  GgmlQ4_0x16Fn q5_0x16_4;
  GgmlQ4_0x8Fn q5_1x8_1, q5_1x8_4;
  GgmlQ4_0x16Fn q5_1x16_4;
  GgmlQ4_Kx8Fn q5_Kx8_1;  // pairs as q4_K's
  GgmlQ4_Kx8Fn q5_Kx8_4;
  GgmlQ4_Kx8Fn q3_Kx8_1;  // pairs as q6_K's
  GgmlQ4_Kx8Fn q3_Kx8_4;
  GgmlQ4_Kx8Fn q2_Kx8_1;  // pairs as q6_K's
  GgmlQ4_Kx8Fn q2_Kx8_4;
};

namespace avx2 { extern const GgmlRepackKernels kGgmlRepackKernels; }

}  // namespace lowbit
