// aarch64 quantized-matmul kernels (Advanced SIMD) written once and compiled twice (flags in
// cpp/CMakeLists.txt), each file defining LOWBIT_QMATMUL_NS first:
//   kernels/neon/qmatmul.cpp          baseline Armv8-A: int8 dots by widening multiplies
//                                     (SMULL/SMULL2) and pairwise adds (SADDLP, ADDP);
//   kernels/neon/qmatmul_dotprod.cpp  -march=armv8.2-a+dotprod: the same dots by SDOT.
// Both put the same four-byte sums in the same int32 lanes (lane i of a 16-byte dot holds
// bytes 4i..4i+3), so the two tables give bit-identical results; the float sums differ from
// kernels/scalar only in order. Integer parts are exact: |stored| <= 128, |a| <= 127, so a
// product fits int16 and a block's lane sum (8 products) fits int32 with room to spare.
// SDOT is used exactly when the compiler targets dotprod (__ARM_FEATURE_DOTPROD).
#pragma once
#if !defined(__aarch64__)
#error "the NEON kernels are for aarch64 builds only"
#endif

#include <arm_neon.h>

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "lowbit/qmatmul.hpp"

namespace lowbit::LOWBIT_QMATMUL_NS {

namespace {

// Register tiles (weight rows x activation rows): 2*NR*MR float accumulators (tile + group),
// 2*NR weight vectors and 2 activation vectors stay within the 32 V registers.
constexpr int kQ8Rows = 4, kQ8Acts = 2, kS8Rows = 4, kS8Acts = 2;

// acc + the 16-byte dot of w and a, lane i gaining sum_{k=4i..4i+3} w[k] * a[k].
inline int32x4_t dot16(int32x4_t acc, int8x16_t w, int8x16_t a) {
#if defined(__ARM_FEATURE_DOTPROD)
  return vdotq_s32(acc, w, a);
#else
  const int32x4_t lo = vpaddlq_s16(vmull_s8(vget_low_s8(w), vget_low_s8(a)));  // pairs 0..3
  const int32x4_t hi = vpaddlq_s16(vmull_high_s8(w, a));                        // pairs 4..7
  return vaddq_s32(acc, vpaddq_s32(lo, hi));                                     // quads 0..3
#endif
}

// sum_k a[k] * b[k] with independent vector accumulators, the same for every tile shape.
inline float dot_f32(const float* a, const float* b, i64 n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = vdupq_n_f32(0.0f);
  i64 k = 0;
  for (; k + 8 <= n; k += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + k), vld1q_f32(b + k));
    s1 = vfmaq_f32(s1, vld1q_f32(a + k + 4), vld1q_f32(b + k + 4));
  }
  float t = vaddvq_f32(vaddq_f32(s0, s1));
  for (; k < n; ++k) t += a[k] * b[k];
  return t;
}

// The 32 stored values of one block, columns 0..15 and 16..31: nibble codes 0..15 or int8.
template <QContainer C>
inline void load_block(const std::uint8_t* p, int8x16_t& w0, int8x16_t& w1) {
  if constexpr (C == QContainer::Nibble) {
    const uint8x16_t v = vld1q_u8(p);  // byte j: column j (low nibble), column j + 16 (high)
    w0 = vreinterpretq_s8_u8(vandq_u8(v, vdupq_n_u8(0x0f)));
    w1 = vreinterpretq_s8_u8(vshrq_n_u8(v, 4));
  } else {
    w0 = vld1q_s8(reinterpret_cast<const std::int8_t*>(p));
    w1 = vld1q_s8(reinterpret_cast<const std::int8_t*>(p) + 16);
  }
}

// ---- activations -------------------------------------------------------------------------
// Bit for bit the scalar definition: the same max, the same division, FRINTN (round half to
// even, as nearbyint in the default mode), the same clamps.
void quantize_row_q8(const float* xp, i64 n_blocks, std::int8_t* a, float* d, std::int32_t* asum) {
  for (i64 b = 0; b < n_blocks; ++b) {
    const float* x = xp + b * kQBlock;
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0.0f), probe = vdupq_n_f32(0.0f);
    for (int i = 0; i < 8; ++i) {
      v[i] = vld1q_f32(x + 4 * i);
      probe = vaddq_f32(probe, vsubq_f32(v[i], v[i]));  // NaN exactly when some x is NaN or inf
      amax = vmaxq_f32(amax, vabsq_f32(v[i]));
    }
    std::int8_t* q = a + b * kQBlock;
    if (vminvq_u32(vceqq_f32(probe, probe)) == 0) {  // some lane NaN
      vst1q_s8(q, vdupq_n_s8(0));
      vst1q_s8(q + 16, vdupq_n_s8(0));
      d[b] = NAN;
      asum[b] = 0;
      continue;
    }
    const float scale = vmaxvq_f32(amax) / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    const float32x4_t vinv = vdupq_n_f32(inv), hi = vdupq_n_f32(127.0f), lo = vdupq_n_f32(-127.0f);
    int32x4_t qi[8];
    int32x4_t s = vdupq_n_s32(0);
    for (int i = 0; i < 8; ++i) {
      float32x4_t t = vrndnq_f32(vmulq_f32(v[i], vinv));
      // the scalar clamps as selects, so a NaN (0 * inf when 1/scale overflows for a block of
      // subnormals) clamps to 127 as there; FMIN/FMAX would propagate it
      t = vbslq_f32(vcltq_f32(t, hi), t, hi);
      t = vbslq_f32(vcgtq_f32(t, lo), t, lo);
      qi[i] = vcvtq_s32_f32(t);  // integral already: the conversion is exact
      s = vaddq_s32(s, qi[i]);
    }
    for (int h = 0; h < 2; ++h) {  // int32 -> int8 (values fit), in order
      const int16x8_t p0 = vcombine_s16(vmovn_s32(qi[4 * h]), vmovn_s32(qi[4 * h + 1]));
      const int16x8_t p1 = vcombine_s16(vmovn_s32(qi[4 * h + 2]), vmovn_s32(qi[4 * h + 3]));
      vst1q_s8(q + 16 * h, vcombine_s8(vmovn_s16(p0), vmovn_s16(p1)));
    }
    d[b] = scale;
    asum[b] = vaddvq_s32(s);
  }
}

// ---- int8-activation GEMM --------------------------------------------------------------
// An NR x MR tile: weight rows r..r+NR, activation rows m..m+MR; out[j * ldy + i]. Every tile
// shape runs the same per-output operations (per block: int32x4 dot -> float, times d, into a
// group accumulator; per group: times s into the row accumulator), so an output never depends
// on which other rows share its call (batch invariance, as the x86 kernels).
// Table: nibble codes index w.table8 (int8 values; NF4/FP4), one TBL each.
template <QContainer C, int NR, int MR, bool Table = false>
void tile_q8(const PackedWeights& w, i64 r, const ActQ8& a, i64 m, float* out, i64 ldy) {
  const i64 K = w.padded_cols(), G = w.n_groups, bstride = w.block_stride();  // block to block within a row
  int8x16_t tbl = vdupq_n_s8(0);
  if constexpr (Table) tbl = vld1q_s8(w.table8.data());
  const std::uint8_t* wr[NR];
  const float* sr[NR];
  for (int i = 0; i < NR; ++i) {
    wr[i] = w.row_codes(r + i);
    sr[i] = w.scale.data() + (r + i) * G;
  }
  const std::int8_t* am[MR];
  const float* dm[MR];
  for (int j = 0; j < MR; ++j) {
    am[j] = a.q + (m + j) * K;
    dm[j] = a.d + (m + j) * a.n_blocks;
  }
  float32x4_t acc[MR][NR];
  for (int j = 0; j < MR; ++j)
    for (int i = 0; i < NR; ++i) acc[j][i] = vdupq_n_f32(0.0f);
  for (i64 g = 0; g < G; ++g) {
    float32x4_t gacc[MR][NR];
    for (int j = 0; j < MR; ++j)
      for (int i = 0; i < NR; ++i) gacc[j][i] = vdupq_n_f32(0.0f);
    for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b) {
      int8x16_t w0[NR], w1[NR];
      for (int i = 0; i < NR; ++i) {
        load_block<C>(wr[i] + b * bstride, w0[i], w1[i]);
        if constexpr (Table) {
          w0[i] = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(w0[i]));
          w1[i] = vqtbl1q_s8(tbl, vreinterpretq_u8_s8(w1[i]));
        }
      }
      for (int j = 0; j < MR; ++j) {
        const int8x16_t a0 = vld1q_s8(am[j] + b * kQBlock), a1 = vld1q_s8(am[j] + b * kQBlock + 16);
        const float dv = dm[j][b];
        for (int i = 0; i < NR; ++i) {
          const int32x4_t p = dot16(dot16(vdupq_n_s32(0), w0[i], a0), w1[i], a1);
          gacc[j][i] = vfmaq_n_f32(gacc[j][i], vcvtq_f32_s32(p), dv);
        }
      }
    }
    for (int i = 0; i < NR; ++i) {
      const float sv = sr[i][g] * w.table8_scale;  // exactly sr[i][g] without a table
      for (int j = 0; j < MR; ++j) acc[j][i] = vfmaq_n_f32(acc[j][i], gacc[j][i], sv);
    }
  }
  for (int j = 0; j < MR; ++j) {
    const float* gs = a.gsum + (m + j) * a.n_groups;
    for (int i = 0; i < NR; ++i)
      out[j * ldy + i] = vaddvq_f32(acc[j][i]) + dot_f32(w.offset.data() + (r + i) * G, gs, G);
  }
}

// Rows r..r+NR against activation rows [m0, m0+mb) in steps of MR (then 1).
template <QContainer C, int NR, int MR, bool Table>
void rows_q8(const PackedWeights& w, i64 r, const ActQ8& a, i64 m0, i64 mb, float* y, i64 ldy) {
  i64 m = m0;
  for (; m + MR <= m0 + mb; m += MR) tile_q8<C, NR, MR, Table>(w, r, a, m, y + (m - m0) * ldy, ldy);
  for (; m < m0 + mb; ++m) tile_q8<C, NR, 1, Table>(w, r, a, m, y + (m - m0) * ldy, ldy);
}

template <QContainer C, bool Table = false>
void gemm_q8_c(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy) {
  i64 r = r0;
  for (; r + kQ8Rows <= r0 + rb; r += kQ8Rows) rows_q8<C, kQ8Rows, kQ8Acts, Table>(w, r, a, m0, mb, y + (r - r0), ldy);
  for (; r < r0 + rb; ++r) rows_q8<C, 1, kQ8Acts, Table>(w, r, a, m0, mb, y + (r - r0), ldy);
}

void gemm_q8(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy) {
  if (w.container == QContainer::Byte) gemm_q8_c<QContainer::Byte>(w, a, m0, mb, r0, rb, y, ldy);
  else if (w.table8.empty()) gemm_q8_c<QContainer::Nibble>(w, a, m0, mb, r0, rb, y, ldy);
  else gemm_q8_c<QContainer::Nibble, true>(w, a, m0, mb, r0, rb, y, ldy);
}

// ---- float path: rows of W_hat ---------------------------------------------------------
template <QContainer C>
inline float32x4_t widen_to_f32(int8x16_t v, int quarter) {
  if constexpr (C == QContainer::Nibble) {
    const uint8x16_t u = vreinterpretq_u8_s8(v);
    const uint16x8_t h = quarter < 2 ? vmovl_u8(vget_low_u8(u)) : vmovl_high_u8(u);
    const uint32x4_t e = quarter & 1 ? vmovl_high_u16(h) : vmovl_u16(vget_low_u16(h));
    return vcvtq_f32_u32(e);
  } else {
    const int16x8_t h = quarter < 2 ? vmovl_s8(vget_low_s8(v)) : vmovl_high_s8(v);
    const int32x4_t e = quarter & 1 ? vmovl_high_s16(h) : vmovl_s16(vget_low_s16(h));
    return vcvtq_f32_s32(e);
  }
}

template <QContainer C>
void dequantize_rows_c(const PackedWeights& w, i64 r0, i64 rb, float* dst) {
  const i64 K = w.padded_cols(), bstride = w.block_stride();  // block to block within a row
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    float* out = dst + (r - r0) * K;
    for (i64 g = 0; g < w.n_groups; ++g) {
      const float32x4_t s = vdupq_n_f32(w.scale[r * w.n_groups + g]);
      const float32x4_t off = vdupq_n_f32(w.offset[r * w.n_groups + g]);
      for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b) {
        int8x16_t v[2];
        load_block<C>(wr + b * bstride, v[0], v[1]);
        for (int i = 0; i < 8; ++i) {
          // s * v + off rounded twice, as the scalar definition (no fused multiply-add)
          const float32x4_t f = vaddq_f32(vmulq_f32(s, widen_to_f32<C>(v[i >> 2], i & 3)), off);
          vst1q_f32(out + b * kQBlock + 4 * i, f);
        }
      }
    }
  }
}

void dequantize_rows(const PackedWeights& w, i64 r0, i64 rb, float* dst) {
  if (w.container == QContainer::Nibble) dequantize_rows_c<QContainer::Nibble>(w, r0, rb, dst);
  else dequantize_rows_c<QContainer::Byte>(w, r0, rb, dst);
}

// ---- W8A8: exact int8 x int8 -------------------------------------------------------------
template <int NR, int MR>
void tile_s8(const std::int8_t* w, i64 ldw, const std::int8_t* a, i64 lda, i64 n, std::int32_t* acc, i64 ldacc) {
  int32x4_t s[MR][NR];
  for (int j = 0; j < MR; ++j)
    for (int i = 0; i < NR; ++i) s[j][i] = vdupq_n_s32(0);
  for (i64 k = 0; k < n; k += 16) {
    int8x16_t wv[NR];
    for (int i = 0; i < NR; ++i) wv[i] = vld1q_s8(w + i * ldw + k);
    for (int j = 0; j < MR; ++j) {
      const int8x16_t av = vld1q_s8(a + j * lda + k);
      for (int i = 0; i < NR; ++i) s[j][i] = dot16(s[j][i], wv[i], av);
    }
  }
  for (int j = 0; j < MR; ++j)
    for (int i = 0; i < NR; ++i) acc[j * ldacc + i] = vaddvq_s32(s[j][i]);
}

template <int NR, int MR>
void gemm_s8_t(const std::int8_t* w, i64 ldw, i64 rb, const std::int8_t* a, i64 lda, i64 mb, i64 n,
               std::int32_t* acc, i64 ldacc) {
  i64 m = 0;
  for (; m + MR <= mb; m += MR) {
    i64 r = 0;
    for (; r + NR <= rb; r += NR) tile_s8<NR, MR>(w + r * ldw, ldw, a + m * lda, lda, n, acc + m * ldacc + r, ldacc);
    for (; r < rb; ++r) tile_s8<1, MR>(w + r * ldw, ldw, a + m * lda, lda, n, acc + m * ldacc + r, ldacc);
  }
  for (; m < mb; ++m) {
    i64 r = 0;
    for (; r + NR <= rb; r += NR) tile_s8<NR, 1>(w + r * ldw, ldw, a + m * lda, lda, n, acc + m * ldacc + r, ldacc);
    for (; r < rb; ++r) tile_s8<1, 1>(w + r * ldw, ldw, a + m * lda, lda, n, acc + m * ldacc + r, ldacc);
  }
}

void gemm_s8(const std::int8_t* w, i64 ldw, i64 rb, const std::int8_t* a, i64 lda, i64 mb, i64 n,
             std::int32_t* acc, i64 ldacc) {
  gemm_s8_t<kS8Rows, kS8Acts>(w, ldw, rb, a, lda, mb, n, acc, ldacc);
}

}  // namespace

const QMatmulKernels kQMatmulKernels = {quantize_row_q8, gemm_q8, dequantize_rows, gemm_s8};

}  // namespace lowbit::LOWBIT_QMATMUL_NS
