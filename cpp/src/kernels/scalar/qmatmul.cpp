// Scalar quantized-matmul kernels: the definition the SIMD variants are tested against
// (integer parts exactly; float sums up to summation order). Layout: lowbit/qmatmul.hpp.
#include <cmath>

#include "lowbit/qmatmul.hpp"

namespace lowbit::scalar {

namespace {

// The stored value of column j (0..31) of a block: a nibble code or an int8 (code - 128).
inline int stored(const PackedWeights& w, const std::uint8_t* blk, int j) {
  if (w.container == QContainer::Nibble) return (blk[j & 15] >> ((j >> 4) * 4)) & 0xf;
  return static_cast<std::int8_t>(blk[j]);
}

// The integer the int8 kernels multiply: the stored value, or its table8 entry.
inline int stored_int(const PackedWeights& w, const std::uint8_t* blk, int j) {
  const int v = stored(w, blk, j);
  return w.table8.empty() ? v : w.table8[static_cast<std::size_t>(v)];
}

// The float dequantize multiplies: the stored value, or its table entry.
inline float stored_float(const PackedWeights& w, const std::uint8_t* blk, int j) {
  const int v = stored(w, blk, j);
  return w.table.empty() ? static_cast<float>(v) : w.table[static_cast<std::size_t>(v)];
}

void quantize_row_q8(const float* xp, i64 n_blocks, std::int8_t* a, float* d, std::int32_t* asum) {
  for (i64 b = 0; b < n_blocks; ++b) {
    const float* x = xp + b * kQBlock;
    std::int8_t* q = a + b * kQBlock;
    float amax = 0.0f, probe = 0.0f;  // probe: x - x is NaN exactly when x is NaN or inf
    for (int j = 0; j < kQBlock; ++j) {
      const float v = std::fabs(x[j]);
      probe += x[j] - x[j];
      amax = v > amax ? v : amax;
    }
    if (probe != 0.0f) {  // a non-finite activation: the block's products become NaN
      for (int j = 0; j < kQBlock; ++j) q[j] = 0;
      d[b] = NAN;
      asum[b] = 0;
      continue;
    }
    const float scale = amax / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    std::int32_t s = 0;
    for (int j = 0; j < kQBlock; ++j) {
      float v = std::nearbyint(x[j] * inv);  // half to even, as _mm256_round_ps
      v = v < 127.0f ? v : 127.0f;            // |x * inv| may round up to 127.00001
      v = v > -127.0f ? v : -127.0f;
      q[j] = static_cast<std::int8_t>(v);
      s += q[j];
    }
    d[b] = scale;
    asum[b] = s;
  }
}

void gemm_q8(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy) {
  const i64 K = w.padded_cols(), bstride = w.block_stride();  // block to block within a row
  for (i64 m = m0; m < m0 + mb; ++m) {
    const std::int8_t* am = a.q + m * K;
    const float* dm = a.d + m * a.n_blocks;
    const float* gs = a.gsum + m * a.n_groups;
    for (i64 r = r0; r < r0 + rb; ++r) {
      const std::uint8_t* wr = w.row_codes(r);
      const float* s = w.scale.data() + r * w.n_groups;
      const float* off = w.offset.data() + r * w.n_groups;
      float acc = 0.0f;
      for (i64 g = 0; g < w.n_groups; ++g) {
        float ag = 0.0f;
        for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b) {
          std::int32_t dot = 0;
          for (int j = 0; j < kQBlock; ++j) dot += stored_int(w, wr + b * bstride, j) * am[b * kQBlock + j];
          ag += dm[b] * static_cast<float>(dot);
        }
        acc += (s[g] * w.table8_scale) * ag + off[g] * gs[g];
      }
      y[(m - m0) * ldy + (r - r0)] = acc;
    }
  }
}

void dequantize_rows(const PackedWeights& w, i64 r0, i64 rb, float* dst) {
  const i64 K = w.padded_cols(), bstride = w.block_stride();  // block to block within a row
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    float* out = dst + (r - r0) * K;
    for (i64 g = 0; g < w.n_groups; ++g) {
      const float s = w.scale[r * w.n_groups + g], off = w.offset[r * w.n_groups + g];
      for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b)
        for (int j = 0; j < kQBlock; ++j)
          out[b * kQBlock + j] = s * stored_float(w, wr + b * bstride, j) + off;
    }
  }
}

void gemm_s8(const std::int8_t* w, i64 ldw, i64 rb, const std::int8_t* a, i64 lda, i64 mb, i64 n,
             std::int32_t* acc, i64 ldacc) {
  for (i64 m = 0; m < mb; ++m)
    for (i64 r = 0; r < rb; ++r) {
      std::int32_t s = 0;
      for (i64 k = 0; k < n; ++k) s += w[r * ldw + k] * a[m * lda + k];
      acc[m * ldacc + r] = s;
    }
}

}  // namespace

const QMatmulKernels kQMatmulKernels = {quantize_row_q8, gemm_q8, dequantize_rows, gemm_s8};

}  // namespace lowbit::scalar
