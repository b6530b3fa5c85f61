// AVX2+FMA table-lookup matmul kernels (compiled with -mavx2 -mfma). Codes become floats in
// registers: 16-entry tables by two vpermps on the two 8-float halves and a blend on bit 3
// (exact: the selected table entry), 256-entry tables by a gather. Float sums differ from
// kernels/scalar/lut_qmatmul.cpp only in order (bound in lowbit/lut_qmatmul.hpp).
#include <immintrin.h>

#include <algorithm>

#include "lowbit/lut_qmatmul.hpp"

namespace lowbit::avx2 {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// table[idx] for 8 int32 indices 0..15 held as tlo = table[0..8), thi = table[8..16).
inline __m256 lookup16(__m256 tlo, __m256 thi, __m256i idx) {
  const __m256 lo = _mm256_permutevar8x32_ps(tlo, idx), hi = _mm256_permutevar8x32_ps(thi, idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));  // bit 3 -> sign
}

// The 32 table values of one block, columns 8i..8i+7 in v[i].
template <bool Nibble>
struct Decoder {
  __m256 tlo, thi;
  const float* table;
  explicit Decoder(const LutWeights& w) : table(w.table.data()) {
    if constexpr (Nibble) {
      tlo = _mm256_loadu_ps(table);
      thi = _mm256_loadu_ps(table + 8);
    } else {
      tlo = thi = _mm256_setzero_ps();
    }
  }
  inline void operator()(const std::uint8_t* blk, __m256 v[4]) const {
    if constexpr (Nibble) {
      const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk));
      const __m128i mask = _mm_set1_epi8(0x0f);
      const __m128i lo = _mm_and_si128(t, mask), hi = _mm_and_si128(_mm_srli_epi16(t, 4), mask);
      v[0] = lookup16(tlo, thi, _mm256_cvtepu8_epi32(lo));
      v[1] = lookup16(tlo, thi, _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)));
      v[2] = lookup16(tlo, thi, _mm256_cvtepu8_epi32(hi));
      v[3] = lookup16(tlo, thi, _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8)));
    } else {
      for (int i = 0; i < 4; ++i) {
        const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 8 * i)));
        v[i] = _mm256_i32gather_ps(table, idx, 4);
      }
    }
  }
};

// Rows [r0, r0 + rb) against activation rows [m0, m0 + MR): each block is decoded once per
// call and multiplied into MR x 4 independent accumulators.
template <bool Nibble, int MR>
void rows_gemv(const LutWeights& w, const Decoder<Nibble>& dec, const float* xp, const float* xsum, i64 m0, i64 r0,
               i64 rb, float* y, i64 ldy) {
  const i64 Kp = w.padded_cols(), bb = w.block_bytes(), G = w.n_groups;
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    const float* s = w.scale.data() + r * G;
    __m256 acc[MR];
    for (int j = 0; j < MR; ++j) acc[j] = _mm256_setzero_ps();
    for (i64 g = 0; g < G; ++g) {
      __m256 ga[MR][4];
      for (int j = 0; j < MR; ++j)
        for (int i = 0; i < 4; ++i) ga[j][i] = _mm256_setzero_ps();
      for (i64 b = w.group_block[static_cast<std::size_t>(g)]; b < w.group_block[static_cast<std::size_t>(g + 1)]; ++b) {
        __m256 v[4];
        dec(wr + b * bb, v);
        for (int j = 0; j < MR; ++j) {
          const float* x = xp + (m0 + j) * Kp + b * kQBlock;
          for (int i = 0; i < 4; ++i) ga[j][i] = _mm256_fmadd_ps(v[i], _mm256_loadu_ps(x + 8 * i), ga[j][i]);
        }
      }
      const __m256 sv = _mm256_broadcast_ss(s + g);
      for (int j = 0; j < MR; ++j)
        acc[j] = _mm256_fmadd_ps(_mm256_add_ps(_mm256_add_ps(ga[j][0], ga[j][1]), _mm256_add_ps(ga[j][2], ga[j][3])),
                                 sv, acc[j]);
    }
    for (int j = 0; j < MR; ++j) {
      float t = hsum(acc[j]);
      if (w.has_offset()) {
        const float* off = w.offset.data() + r * G;
        const float* xs = xsum + (m0 + j) * G;
        for (i64 g = 0; g < G; ++g) t += off[g] * xs[g];
      }
      y[(m0 + j) * ldy + (r - r0)] = t;
    }
  }
}

template <bool Nibble>
void gemv_t(const LutWeights& w, const float* xp, const float* xsum, i64 M, i64 r0, i64 rb, float* y, i64 ldy) {
  const Decoder<Nibble> dec(w);
  // rows of 8 weight rows at a time, so a chunk of weights stays in L1 across the x chunks
  for (i64 rr = r0; rr < r0 + rb; rr += 8) {
    const i64 n = std::min<i64>(8, r0 + rb - rr);
    float* yr = y + (rr - r0);
    i64 m = 0;
    for (; m + 2 <= M; m += 2) rows_gemv<Nibble, 2>(w, dec, xp, xsum, m, rr, n, yr, ldy);
    for (; m < M; ++m) rows_gemv<Nibble, 1>(w, dec, xp, xsum, m, rr, n, yr, ldy);
  }
}

void gemv(const LutWeights& w, const float* xp, const float* xsum, i64 M, i64 r0, i64 rb, float* y, i64 ldy) {
  if (w.nibble()) gemv_t<true>(w, xp, xsum, M, r0, rb, y, ldy);
  else gemv_t<false>(w, xp, xsum, M, r0, rb, y, ldy);
}

template <bool Nibble>
void dequantize_rows_t(const LutWeights& w, i64 r0, i64 rb, float* dst) {
  const Decoder<Nibble> dec(w);
  const i64 Kp = w.padded_cols(), bb = w.block_bytes(), G = w.n_groups;
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    float* out = dst + (r - r0) * Kp;
    for (i64 g = 0; g < G; ++g) {
      const __m256 s = _mm256_set1_ps(w.scale[static_cast<std::size_t>(r * G + g)]);
      const __m256 off = _mm256_set1_ps(w.has_offset() ? w.offset[static_cast<std::size_t>(r * G + g)] : 0.0f);
      for (i64 b = w.group_block[static_cast<std::size_t>(g)]; b < w.group_block[static_cast<std::size_t>(g + 1)]; ++b) {
        __m256 v[4];
        dec(wr + b * bb, v);
        for (int i = 0; i < 4; ++i) {
          __m256 f = _mm256_mul_ps(v[i], s);  // two roundings, as the scalar definition
          if (w.has_offset()) f = _mm256_add_ps(f, off);
          _mm256_storeu_ps(out + b * kQBlock + 8 * i, f);
        }
      }
    }
  }
}

void dequantize_rows(const LutWeights& w, i64 r0, i64 rb, float* dst) {
  if (w.nibble()) dequantize_rows_t<true>(w, r0, rb, dst);
  else dequantize_rows_t<false>(w, r0, rb, dst);
}

}  // namespace

const LutKernels kLutKernels = {gemv, dequantize_rows};

}  // namespace lowbit::avx2
