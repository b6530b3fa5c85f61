// Scalar table-lookup matmul kernels: the definition the SIMD variants are tested against
// (up to float summation order). Layout and arithmetic: lowbit/lut_qmatmul.hpp.
#include "lowbit/lut_qmatmul.hpp"

namespace lowbit::scalar {

namespace {

// The code of column j (0..31) of a block.
inline int code_at(const LutWeights& w, const std::uint8_t* blk, int j) {
  if (w.nibble()) {
    int byte, shift;
    w.nibble_at(j, &byte, &shift);
    return (blk[byte] >> shift) & 0xf;
  }
  return blk[j];
}

void gemv(const LutWeights& w, const float* xp, const float* xsum, i64 M, i64 r0, i64 rb, float* y, i64 ldy) {
  const i64 Kp = w.padded_cols(), bb = w.block_bytes(), G = w.n_groups;
  const float* T = w.table.data();
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    const float* s = w.scale.data() + r * G;
    for (i64 m = 0; m < M; ++m) {
      const float* x = xp + m * Kp;
      float acc = 0.0f;
      for (i64 g = 0; g < G; ++g) {
        float ag = 0.0f;
        for (i64 b = w.group_block[static_cast<std::size_t>(g)]; b < w.group_block[static_cast<std::size_t>(g + 1)]; ++b)
          for (int j = 0; j < kQBlock; ++j) ag += T[code_at(w, wr + b * bb, j)] * x[b * kQBlock + j];
        acc += s[g] * ag;
      }
      if (w.has_offset()) {
        const float* off = w.offset.data() + r * G;
        for (i64 g = 0; g < G; ++g) acc += off[g] * xsum[m * G + g];
      }
      y[m * ldy + (r - r0)] = acc;
    }
  }
}

void dequantize_rows(const LutWeights& w, i64 r0, i64 rb, float* dst) {
  const i64 Kp = w.padded_cols(), bb = w.block_bytes(), G = w.n_groups;
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    float* out = dst + (r - r0) * Kp;
    for (i64 g = 0; g < G; ++g) {
      const float s = w.scale[static_cast<std::size_t>(r * G + g)];
      const float off = w.has_offset() ? w.offset[static_cast<std::size_t>(r * G + g)] : 0.0f;
      for (i64 b = w.group_block[static_cast<std::size_t>(g)]; b < w.group_block[static_cast<std::size_t>(g + 1)]; ++b)
        for (int j = 0; j < kQBlock; ++j) {
          const float v = w.table[static_cast<std::size_t>(code_at(w, wr + b * bb, j))] * s;
          out[b * kQBlock + j] = w.has_offset() ? v + off : v;  // two roundings, no FMA
        }
    }
  }
}

}  // namespace

const LutKernels kLutKernels = {gemv, dequantize_rows};

}  // namespace lowbit::scalar
