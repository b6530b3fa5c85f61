// AVX2+FMA table-lookup matmul kernels (compiled with -mavx2 -mfma). Codes become floats in
// registers, bit-exact table entries: integer tables by int -> float conversion, FP8 tables by
// bit arithmetic, other 16-entry tables by vpshufb on the table's 4 byte planes, other
// 256-entry tables by a gather. Float sums differ from
// kernels/scalar/lut_qmatmul.cpp only in order (bound in lowbit/lut_qmatmul.hpp).
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "lowbit/lut_qmatmul.hpp"

namespace lowbit::avx2 {

namespace {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The 32 float table values of a lookup-table block: byte b of every value by one vpshufb on
// the table's byte plane b (16 entries, in both lanes), then in-lane unpacks rebuild the floats;
// the nibble order of the block (LutWeights::nibble_at) makes them come out in column order.
inline void lookup16(const __m256i plane[4], const std::uint8_t* blk, __m256 v[4]) {
  const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)));
  // lane 0: low nibbles (positions 0..15), lane 1: high nibbles (positions 16..31)
  const __m256i c = _mm256_and_si256(_mm256_srlv_epi64(t, _mm256_setr_epi64x(0, 0, 4, 4)), _mm256_set1_epi8(0x0f));
  const __m256i p0 = _mm256_shuffle_epi8(plane[0], c), p1 = _mm256_shuffle_epi8(plane[1], c);
  const __m256i p2 = _mm256_shuffle_epi8(plane[2], c), p3 = _mm256_shuffle_epi8(plane[3], c);
  const __m256i l01 = _mm256_unpacklo_epi8(p0, p1), h01 = _mm256_unpackhi_epi8(p0, p1);
  const __m256i l23 = _mm256_unpacklo_epi8(p2, p3), h23 = _mm256_unpackhi_epi8(p2, p3);
  v[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(l01, l23));
  v[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(l01, l23));
  v[2] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(h01, h23));
  v[3] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(h01, h23));
}

// 16 OCP FP8 codes -> 16 float32 (v[0], v[1]), bit-exact with fp8_to_fp32 (fp8.hpp), through
// IEEE half precision and F16C: E5M2 is the top byte of a half; E4M3's exponent/mantissa bits
// placed as a half's are the value times 2^-8 (subnormals included: vcvtph2ps converts half
// subnormals exactly whatever the DAZ mode), so one exact multiply by 2^8 follows; E4M3's NaN
// (S.1111.111) is set explicitly.
template <LutDecode D>
inline void fp8_decode16(__m128i bytes, __m256* v) {
  if constexpr (D == LutDecode::E5M2) {
    const __m128i zero = _mm_setzero_si128();
    v[0] = _mm256_cvtph_ps(_mm_unpacklo_epi8(zero, bytes));
    v[1] = _mm256_cvtph_ps(_mm_unpackhi_epi8(zero, bytes));
  } else {
    const __m256i w = _mm256_cvtepu8_epi16(bytes);
    const __m256i em = _mm256_and_si256(w, _mm256_set1_epi16(0x7f));
    __m256i h = _mm256_or_si256(_mm256_slli_epi16(em, 7), _mm256_slli_epi16(_mm256_and_si256(w, _mm256_set1_epi16(0x80)), 8));
    h = _mm256_blendv_epi8(h, _mm256_set1_epi16(0x7e00), _mm256_cmpeq_epi16(em, _mm256_set1_epi16(0x7f)));
    const __m256 k = _mm256_set1_ps(256.0f);
    v[0] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(h)), k);
    v[1] = _mm256_mul_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(h, 1)), k);
  }
}

inline __m256i broadcast_u32(const std::uint8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, sizeof v);
  return _mm256_set1_epi32(v);  // vpbroadcastd from memory: a load, no shuffle
}

// The 32 table values of one block, columns 8i..8i+7 in v[i].
template <bool Nibble, LutDecode D>
struct Decoder {
  __m256i plane[4];
  const float* table;
  explicit Decoder(const LutWeights& w) : table(w.table.data()) {
    for (int b = 0; b < 4; ++b) plane[b] = _mm256_setzero_si256();
    if constexpr (Nibble && D == LutDecode::Table) {
      alignas(16) std::uint8_t bytes[4][16];
      for (int i = 0; i < 16; ++i) {
        std::uint32_t u;
        std::memcpy(&u, table + i, sizeof u);
        for (int b = 0; b < 4; ++b) bytes[b][i] = static_cast<std::uint8_t>(u >> (8 * b));
      }
      for (int b = 0; b < 4; ++b)
        plane[b] = _mm256_broadcastsi128_si256(_mm_load_si128(reinterpret_cast<const __m128i*>(bytes[b])));
    }
  }
  inline void operator()(const std::uint8_t* blk, __m256 v[4]) const {
    if constexpr (Nibble && D == LutDecode::Table) {
      lookup16(plane, blk, v);
    } else if constexpr (Nibble) {
      // word i = the 8 nibbles of columns 8i..8i+7, lowest first
      const __m256i shr = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
      for (int i = 0; i < 4; ++i) {
        const __m256i idx = _mm256_srlv_epi32(broadcast_u32(blk + 4 * i), shr);  // code in bits 0..3
        v[i] = _mm256_cvtepi32_ps(_mm256_and_si256(idx, _mm256_set1_epi32(0xf)));
      }
    } else {
      if constexpr (D == LutDecode::E4M3 || D == LutDecode::E5M2) {
        fp8_decode16<D>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk)), v);
        fp8_decode16<D>(_mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + 16)), v + 2);
      } else {
        for (int i = 0; i < 4; ++i) {
          const __m256i idx = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk + 8 * i)));
          if constexpr (D == LutDecode::Int) v[i] = _mm256_cvtepi32_ps(idx);
          else v[i] = _mm256_i32gather_ps(table, idx, 4);
        }
      }
    }
  }
};

// Rows [r0, r0 + rb) against activation rows [m0, m0 + MR): each block is decoded once per
// call and multiplied into MR x 4 independent accumulators.
template <class Dec, int MR>
void rows_gemv(const LutWeights& w, const Dec& dec, const float* xp, const float* xsum, i64 m0, i64 r0,
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

template <bool Nibble, LutDecode D>
void gemv_t(const LutWeights& w, const float* xp, const float* xsum, i64 M, i64 r0, i64 rb, float* y, i64 ldy) {
  const Decoder<Nibble, D> dec(w);
  // rows of 8 weight rows at a time, so a chunk of weights stays in L1 across the x chunks
  for (i64 rr = r0; rr < r0 + rb; rr += 8) {
    const i64 n = std::min<i64>(8, r0 + rb - rr);
    float* yr = y + (rr - r0);
    i64 m = 0;
    for (; m + 2 <= M; m += 2) rows_gemv<Decoder<Nibble, D>, 2>(w, dec, xp, xsum, m, rr, n, yr, ldy);
    for (; m < M; ++m) rows_gemv<Decoder<Nibble, D>, 1>(w, dec, xp, xsum, m, rr, n, yr, ldy);
  }
}

void gemv(const LutWeights& w, const float* xp, const float* xsum, i64 M, i64 r0, i64 rb, float* y, i64 ldy) {
  if (w.nibble()) {
    if (w.decode == LutDecode::Int) gemv_t<true, LutDecode::Int>(w, xp, xsum, M, r0, rb, y, ldy);
    else gemv_t<true, LutDecode::Table>(w, xp, xsum, M, r0, rb, y, ldy);
  } else {
    switch (w.decode) {
      case LutDecode::Int: return gemv_t<false, LutDecode::Int>(w, xp, xsum, M, r0, rb, y, ldy);
      case LutDecode::E4M3: return gemv_t<false, LutDecode::E4M3>(w, xp, xsum, M, r0, rb, y, ldy);
      case LutDecode::E5M2: return gemv_t<false, LutDecode::E5M2>(w, xp, xsum, M, r0, rb, y, ldy);
      case LutDecode::Table: return gemv_t<false, LutDecode::Table>(w, xp, xsum, M, r0, rb, y, ldy);
    }
  }
}

template <bool Nibble, LutDecode D>
void dequantize_rows_t(const LutWeights& w, i64 r0, i64 rb, float* dst) {
  const Decoder<Nibble, D> dec(w);
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
  if (w.nibble()) {
    if (w.decode == LutDecode::Int) dequantize_rows_t<true, LutDecode::Int>(w, r0, rb, dst);
    else dequantize_rows_t<true, LutDecode::Table>(w, r0, rb, dst);
  } else {
    switch (w.decode) {
      case LutDecode::Int: return dequantize_rows_t<false, LutDecode::Int>(w, r0, rb, dst);
      case LutDecode::E4M3: return dequantize_rows_t<false, LutDecode::E4M3>(w, r0, rb, dst);
      case LutDecode::E5M2: return dequantize_rows_t<false, LutDecode::E5M2>(w, r0, rb, dst);
      case LutDecode::Table: return dequantize_rows_t<false, LutDecode::Table>(w, r0, rb, dst);
    }
  }
}

}  // namespace

const LutKernels kLutKernels = {gemv, dequantize_rows};

}  // namespace lowbit::avx2
