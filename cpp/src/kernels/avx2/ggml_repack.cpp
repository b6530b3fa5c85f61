// AVX2 kernels on the q4_0x8 / q4_Kx8 interleaved layouts (lowbit/ggml_repack.hpp); AVX-512 reuses them.
// Per block and chunk: the 32 unsigned nibbles (4 per row) times the 4 matching activation
// bytes broadcast, by maddubs: int16 pair sums <= 2*15*127, and the 8 of a block add up to
// <= 30480 < 2^15, so the int16 sums are exact; one madd(1) gives each row's block dot in its
// own 32-bit lane. Float arithmetic: (d_w * d_a) * float(sumi) added in block order, exactly as
// kernels/scalar/ggml_vec_dot.cpp's vec_dot_q4_0 (bit-identical with -ffp-contract=off).
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <utility>

#include "lowbit/ggml_blocks.hpp"
#include "lowbit/ggml_repack.hpp"

namespace lowbit::avx2 {

namespace {

// The `lines` cache lines from p on, into L1 (the interleaved stream a few blocks ahead).
inline void prefetch_lines(const std::uint8_t* p, int lines) {
  for (int l = 0; l < lines; ++l) _mm_prefetch(reinterpret_cast<const char*>(p) + 64 * l, _MM_HINT_T0);
}

// acc[j] += (d_w * d_a[j]) * float(si[j]) for block i of Q8_0 activation rows: each row's
// float step of vec_dot_q8_0 / _q4_0 / _iq4_nl, in block order.
template <int MR>
inline void add_q8_0_block(__m256 (&acc)[MR], __m256 dw, const GgmlQ8Act* a, i64 i, const __m256i (&si)[MR]) {
  for (int j = 0; j < MR; ++j) {
    const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(a[j].d[i]));
    acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(d, _mm256_cvtepi32_ps(si[j])));
  }
}

// The activation rows' Q8_0 blocks and zeroed accumulators.
template <int MR>
inline void start_q8_0_rows(const GgmlQ8Act* a, const ggml::block_q8_0* (&y)[MR], __m256 (&acc)[MR]) {
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ggml::block_q8_0*>(a[j].blocks);
    acc[j] = _mm256_setzero_ps();
  }
}

inline __m256i bcast4(const std::int8_t* p) {
  std::int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <int MR>
void q4_0x8(i64 nb, const std::uint8_t* g, const GgmlQ8Act* a, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const ggml::block_q8_0* y[MR];
  __m256 acc[MR];
  start_q8_0_rows(a, y, acc);
  for (i64 i = 0; i < nb; ++i, g += kQ4_0x8BlockBytes) {
    prefetch_lines(g + 8 * kQ4_0x8BlockBytes, 3);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    __m256i s16[MR];
    for (int j = 0; j < MR; ++j) s16[j] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 16 + 32 * c));
      const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      for (int j = 0; j < MR; ++j) {
        const std::int8_t* qa = y[j][i].qs;
        s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(lo, bcast4(qa + 4 * c)));
        s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(hi, bcast4(qa + 16 + 4 * c)));
      }
    }
    __m256i si[MR];
    for (int j = 0; j < MR; ++j)
      si[j] = _mm256_sub_epi32(_mm256_madd_epi16(s16[j], ones), _mm256_set1_epi32(8 * a[j].sum[i]));
    add_q8_0_block(acc, dw, a, i, si);
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// Prefill: two groups (16 weight rows, `stride` bytes apart) x 4 activation rows, each
// broadcast serving both groups; per output the same operations as q4_0x8.
void q4_0x16_4(i64 nb, const std::uint8_t* g, i64 stride, const GgmlQ8Act* a, float* out) {
  constexpr int MR = 4;
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const ggml::block_q8_0* y[MR];
  __m256 acc[2][MR];
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ggml::block_q8_0*>(a[j].blocks);
    acc[0][j] = acc[1][j] = _mm256_setzero_ps();
  }
  for (i64 i = 0; i < nb; ++i, g += kQ4_0x8BlockBytes) {
    __m256i s16[2][MR];
    for (int j = 0; j < MR; ++j) s16[0][j] = s16[1][j] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i qa = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 16 + 32 * c));
      const __m256i qb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + stride + 16 + 32 * c));
      const __m256i la = _mm256_and_si256(qa, m4), lb = _mm256_and_si256(qb, m4);
      for (int j = 0; j < MR; ++j) {
        const __m256i b = bcast4(y[j][i].qs + 4 * c);
        s16[0][j] = _mm256_add_epi16(s16[0][j], _mm256_maddubs_epi16(la, b));
        s16[1][j] = _mm256_add_epi16(s16[1][j], _mm256_maddubs_epi16(lb, b));
      }
      const __m256i ha = _mm256_and_si256(_mm256_srli_epi16(qa, 4), m4);
      const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(qb, 4), m4);
      for (int j = 0; j < MR; ++j) {
        const __m256i b = bcast4(y[j][i].qs + 16 + 4 * c);
        s16[0][j] = _mm256_add_epi16(s16[0][j], _mm256_maddubs_epi16(ha, b));
        s16[1][j] = _mm256_add_epi16(s16[1][j], _mm256_maddubs_epi16(hb, b));
      }
    }
    for (int h = 0; h < 2; ++h) {
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + h * stride)));
      for (int j = 0; j < MR; ++j) {
        const __m256i si = _mm256_sub_epi32(_mm256_madd_epi16(s16[h][j], ones), _mm256_set1_epi32(8 * a[j].sum[i]));
        const __m256 d = _mm256_mul_ps(dw, _mm256_set1_ps(a[j].d[i]));
        acc[h][j] = _mm256_add_ps(acc[h][j], _mm256_mul_ps(d, _mm256_cvtepi32_ps(si)));
      }
    }
  }
  for (int h = 0; h < 2; ++h)
    for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * (MR * h + j), acc[h][j]);
}

// q8_0x8: per chunk |w| against the broadcast activation bytes carrying w's sign; each
// maddubs widened to int32 at once (two of them could exceed int16).
template <int MR>
void q8_0x8(i64 nb, const std::uint8_t* g, const GgmlQ8Act* a, float* out) {
  const __m256i ones = _mm256_set1_epi16(1);
  const ggml::block_q8_0* y[MR];
  __m256 acc[MR];
  start_q8_0_rows(a, y, acc);
  for (i64 i = 0; i < nb; ++i, g += kQ8_0x8BlockBytes) {
    prefetch_lines(g + 4 * kQ8_0x8BlockBytes, 5);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    __m256i si[MR];
    for (int j = 0; j < MR; ++j) si[j] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 16 + 32 * c));
      const __m256i wu = _mm256_sign_epi8(w, w);
      for (int j = 0; j < MR; ++j) {
        const __m256i p = _mm256_maddubs_epi16(wu, _mm256_sign_epi8(bcast4(y[j][i].qs + 4 * c), w));
        si[j] = _mm256_add_epi32(si[j], _mm256_madd_epi16(p, ones));
      }
    }
    add_q8_0_block(acc, dw, a, i, si);
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// q6_Kx8: the unsigned 6-bit codes (nibble | top 2 bits << 4) of 4 chunks per 16-element
// sub-block; two maddubs (<= 2 * 2*63*127 = 32004) per int16 sum, then madd by the sub-block's
// scale (int8) in both halves of each row's lane. The -32 offset: 32 * sum_j sc_j bsum_j.
template <int MR>
void q6_Kx8(i64 nb, const std::uint8_t* g, const GgmlQ8KAct* a, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m30 = _mm256_set1_epi8(0x30);
  const __m256i even = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                                        0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
  const __m256i odd = _mm256_add_epi8(even, _mm256_set1_epi8(2));
  const ggml::block_q8_K* y[MR];
  __m256 acc[MR];
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ggml::block_q8_K*>(a[j].blocks);
    acc[j] = _mm256_setzero_ps();
  }
  for (i64 i = 0; i < nb; ++i, g += kQ6_Kx8BlockBytes) {
    __m256i isum[MR];
    for (int j = 0; j < MR; ++j) isum[j] = _mm256_setzero_si256();
    for (int q = 0; q < 8; ++q) {
      const std::uint8_t* b = g + 144 + 192 * q;
      prefetch_lines(b + 2 * kQ6_Kx8BlockBytes, 3);
      const __m256i S = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16 + 16 * q)));
      for (int j = 0; j < MR; ++j)  // - 32 * (sc_2q bsum_2q + sc_2q+1 bsum_2q+1)
        isum[j] = _mm256_sub_epi32(isum[j],
                                   _mm256_slli_epi32(_mm256_madd_epi16(S, _mm256_set1_epi32(a[j].pairs[8 * i + q])), 5));
      const __m256i h0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128));
      const __m256i h1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 160));
      for (int nib = 0; nib < 2; ++nib) {
        const __m256i sc = _mm256_shuffle_epi8(S, nib ? odd : even);
        __m256i w[4];
        for (int c = 0; c < 4; ++c) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * c));
          const __m256i lo = _mm256_and_si256(nib ? _mm256_srli_epi16(v, 4) : v, m4);
          const __m256i h = c < 2 ? h0 : h1;
          const int k = 2 * (c % 2) + nib;  // top bits at 2k -> 4
          const __m256i hs = k == 0 ? _mm256_slli_epi16(h, 4) : k == 1 ? _mm256_slli_epi16(h, 2)
                             : k == 2 ? h : _mm256_srli_epi16(h, 2);
          w[c] = _mm256_or_si256(lo, _mm256_and_si256(hs, m30));
        }
        for (int j = 0; j < MR; ++j) {
          const std::int8_t* qa = y[j][i].qs + 32 * q + 16 * nib;
          const __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(w[0], bcast4(qa)), _mm256_maddubs_epi16(w[1], bcast4(qa + 4)));
          const __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(w[2], bcast4(qa + 8)), _mm256_maddubs_epi16(w[3], bcast4(qa + 12)));
          isum[j] = _mm256_add_epi32(isum[j], _mm256_add_epi32(_mm256_madd_epi16(s01, sc), _mm256_madd_epi16(s23, sc)));
        }
      }
    }
    const __m256 xd = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int j = 0; j < MR; ++j) {
      const __m256 d = _mm256_mul_ps(xd, _mm256_set1_ps(y[j][i].d));
      acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[j])));
    }
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// iq4_nlx8 (the q4_0x8 layout; codes index ggml's non-linear table): each nibble register
// looked up (pshufb) into signed values, then as q8_0x8: |w| against sign(a, w), pair sums
// <= 2*127*127, widened to int32 per register.
template <int MR>
void iq4_nlx8(i64 nb, const std::uint8_t* g, const GgmlQ8Act* a, float* out) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), ones = _mm256_set1_epi16(1);
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(ggml::kvalues_iq4nl));
  const __m256i table = _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
  const ggml::block_q8_0* y[MR];
  __m256 acc[MR];
  start_q8_0_rows(a, y, acc);
  for (i64 i = 0; i < nb; ++i, g += kQ4_0x8BlockBytes) {
    prefetch_lines(g + 8 * kQ4_0x8BlockBytes, 3);
    const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    __m256i si[MR];
    for (int j = 0; j < MR; ++j) si[j] = _mm256_setzero_si256();
    for (int c = 0; c < 4; ++c) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + 16 + 32 * c));
      for (int nib = 0; nib < 2; ++nib) {
        const __m256i w = _mm256_shuffle_epi8(table, _mm256_and_si256(nib ? _mm256_srli_epi16(q, 4) : q, m4));
        const __m256i wu = _mm256_sign_epi8(w, w);
        for (int j = 0; j < MR; ++j) {
          const __m256i b = _mm256_sign_epi8(bcast4(y[j][i].qs + 16 * nib + 4 * c), w);
          si[j] = _mm256_add_epi32(si[j], _mm256_madd_epi16(_mm256_maddubs_epi16(wu, b), ones));
        }
      }
    }
    add_q8_0_block(acc, dw, a, i, si);
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// f(std::integral_constant<int, 0>{}) ... f(<N - 1>{}): loop bodies whose index must be a
// compile-time constant (immediate shift counts).
template <class F, int... I>
inline void static_for_impl(F&& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}
template <int N, class F>
inline void static_for(F&& f) {
  static_for_impl(f, std::make_integer_sequence<int, N>{});
}

// High-plane bit K of each byte moved to bit 4 (with 16-bit shifts: the bit that lands at 4 or
// 12 is always bit K of the same byte). The q5_0x8 / q5_1x8 / q5_Kx8 fifth code bit.
template <int K>
inline __m256i high_bit(__m256i H) {
  if constexpr (K < 4) return _mm256_slli_epi16(H, 4 - K);
  else if constexpr (K == 4) return H;
  else return _mm256_srli_epi16(H, K - 4);
}

// q4_Kx8 (Five: q5_Kx8): per pair h of sub-blocks, the low nibbles (sub-block 2h) and then the
// high ones (2h+1): in one pass for MR = 1, else in two passes over the same 256 bytes (fewer
// live registers); q4_K: each
// int16 sum adds 8 maddubs (<= 30480); q5_K (codes | high-plane bit sb << 4, <= 31): two int16
// sums of 4 maddubs (<= 31496). Then madd by the sub-block's scale in both int16 halves of a
// row's lane.
template <bool Five, int MR>
void q45_Kx8(i64 nb, const std::uint8_t* g, const GgmlQ8KAct* a, float* out) {
  constexpr i64 BB = Five ? kQ5_Kx8BlockBytes : kQ4_Kx8BlockBytes;
  const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10);
  const ggml::block_q8_K* y[MR];
  __m256 acc[MR];
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ggml::block_q8_K*>(a[j].blocks);
    acc[j] = _mm256_setzero_ps();
  }
  for (i64 i = 0; i < nb; ++i, g += BB) {
    __m256i isum[MR], summ[MR];
    for (int j = 0; j < MR; ++j) isum[j] = summ[j] = _mm256_setzero_si256();
    static_for<4>([&](auto hc) {
      constexpr int h = hc;
      const std::uint8_t* q = g + 160 + 256 * h;
      prefetch_lines(q + 2 * BB, 4);
      if constexpr (Five) prefetch_lines(g + kQ4_Kx8BlockBytes + 64 * h + 2 * BB, 1);
      if constexpr (MR == 1) {  // decode: one pass, each chunk (and high-plane chunk) loaded once
        __m256i s16[2][2];  // [e][half of the chunks]
        s16[0][0] = s16[0][1] = s16[1][0] = s16[1][1] = _mm256_setzero_si256();
        const std::int8_t* qa = y[0][i].qs + 64 * h;
#pragma GCC unroll 2
        for (int c = 0; c < 8; ++c) {
          const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
          __m256i w0 = _mm256_and_si256(v, m4), w1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
          if constexpr (Five) {
            const __m256i hp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kQ4_Kx8BlockBytes + 32 * c));
            w0 = _mm256_or_si256(w0, _mm256_and_si256(high_bit<2 * h>(hp), m10));
            w1 = _mm256_or_si256(w1, _mm256_and_si256(high_bit<2 * h + 1>(hp), m10));
          }
          const int k = Five ? c / 4 : 0;
          s16[0][k] = _mm256_add_epi16(s16[0][k], _mm256_maddubs_epi16(w0, bcast4(qa + 4 * c)));
          s16[1][k] = _mm256_add_epi16(s16[1][k], _mm256_maddubs_epi16(w1, bcast4(qa + 32 + 4 * c)));
        }
        for (int e = 0; e < 2; ++e) {
          const __m256i sc32 =
              _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 32 + 8 * (2 * h + e))));
          const __m256i sc = _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16));
          isum[0] = _mm256_add_epi32(isum[0], _mm256_madd_epi16(s16[e][0], sc));
          if constexpr (Five) isum[0] = _mm256_add_epi32(isum[0], _mm256_madd_epi16(s16[e][1], sc));
        }
      } else static_for<2>([&](auto ec) {
        constexpr int e = ec, sb = 2 * h + e;
        const __m256i sc32 = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 32 + 8 * sb)));
        const __m256i sc = _mm256_or_si256(sc32, _mm256_slli_epi32(sc32, 16));
        constexpr int kRuns = Five ? 2 : 1, kPer = 8 / kRuns;  // chunks per int16 sum
        for (int run = 0; run < kRuns; ++run) {
          __m256i s16[MR];
          for (int j = 0; j < MR; ++j) s16[j] = _mm256_setzero_si256();
#pragma GCC unroll 2
          for (int c = kPer * run; c < kPer * (run + 1); ++c) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(q + 32 * c));
            __m256i w = _mm256_and_si256(e ? _mm256_srli_epi16(v, 4) : v, m4);
            if constexpr (Five) {
              const __m256i hp = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + kQ4_Kx8BlockBytes + 32 * c));
              w = _mm256_or_si256(w, _mm256_and_si256(high_bit<sb>(hp), m10));
            }
            for (int j = 0; j < MR; ++j)
              s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(w, bcast4(y[j][i].qs + 32 * sb + 4 * c)));
          }
          for (int j = 0; j < MR; ++j) isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(s16[j], sc));
        }
      });
      const __m256i mn = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 96 + 16 * h)));
      for (int j = 0; j < MR; ++j)
        summ[j] = _mm256_add_epi32(summ[j], _mm256_madd_epi16(mn, _mm256_set1_epi32(a[j].pairs[4 * i + h])));
    });
    const __m256 xd = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256 xdmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    for (int j = 0; j < MR; ++j) {
      const __m256 yd = _mm256_set1_ps(y[j][i].d);
      const __m256 d = _mm256_mul_ps(yd, xd), dmin = _mm256_mul_ps(yd, xdmin);
      acc[j] = _mm256_add_ps(acc[j], _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[j])),
                                                   _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(summ[j]))));
    }
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// q3_Kx8: per 32 elements q, the codes u (low 2 bits | 3rd bit << 2, 0..7) of 4 chunks per
// 16-element sub-block n: four maddubs (<= 4 * 2*7*127) per int16 sum, then madd by the
// sub-block's scale - 32 in both halves of each row's lane (q6_Kx8's scheme). The -4 offset:
// 4 * sum_j sc_j bsum_j.
template <int MR>
void q3_Kx8(i64 nb, const std::uint8_t* g, const GgmlQ8KAct* a, float* out) {
  const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
  const __m256i even = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                                        0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
  const __m256i odd = _mm256_add_epi8(even, _mm256_set1_epi8(2));
  const ggml::block_q8_K* y[MR];
  __m256 acc[MR];
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ggml::block_q8_K*>(a[j].blocks);
    acc[j] = _mm256_setzero_ps();
  }
  for (i64 i = 0; i < nb; ++i, g += kQ3_Kx8BlockBytes) {
    __m256i isum[MR];
    for (int j = 0; j < MR; ++j) isum[j] = _mm256_setzero_si256();
    for (int q = 0; q < 8; ++q) {
      const std::uint8_t* b = g + 144 + 96 * q;
      prefetch_lines(b + 2 * kQ3_Kx8BlockBytes, 2);
      const __m256i S = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16 + 16 * q)));
      for (int j = 0; j < MR; ++j)  // - 4 * (sc_2q bsum_2q + sc_2q+1 bsum_2q+1)
        isum[j] = _mm256_sub_epi32(isum[j],
                                   _mm256_slli_epi32(_mm256_madd_epi16(S, _mm256_set1_epi32(a[j].pairs[8 * i + q])), 2));
      const __m256i H = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64));
      static_for<2>([&](auto nc) {
        constexpr int n = nc;
        const __m256i L = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * n));
        const __m256i sc = _mm256_shuffle_epi8(S, n ? odd : even);
        __m256i s16[MR];
        for (int j = 0; j < MR; ++j) s16[j] = _mm256_setzero_si256();
        static_for<4>([&](auto cc) {
          constexpr int c = cc, k = 4 * n + c;  // 3rd bit k -> bit 2
          const __m256i hb = k < 2 ? _mm256_slli_epi16(H, 2 - k) : k == 2 ? H : _mm256_srli_epi16(H, k - 2);
          const __m256i u = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(L, 2 * c), m3), _mm256_and_si256(hb, m4));
          for (int j = 0; j < MR; ++j)
            s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(u, bcast4(y[j][i].qs + 32 * q + 16 * n + 4 * c)));
        });
        for (int j = 0; j < MR; ++j) isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(s16[j], sc));
      });
    }
    const __m256 xd = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    for (int j = 0; j < MR; ++j) {
      const __m256 d = _mm256_mul_ps(xd, _mm256_set1_ps(y[j][i].d));
      acc[j] = _mm256_add_ps(acc[j], _mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[j])));
    }
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// q2_Kx8: per 32 elements q, the 2-bit codes of 4 chunks per 16-element sub-block n: four
// maddubs (<= 4 * 2*3*127) per int16 sum, then madd by the sub-block's 4-bit scale in both
// halves of each row's lane; the mins: summ += madd(min, bsum pair). Float step as the
// scalar vec_dot_q2_K: (d_a * d) * float(isum) - (d_a * dmin) * float(summ).
template <int MR>
void q2_Kx8(i64 nb, const std::uint8_t* g, const GgmlQ8KAct* a, float* out) {
  const __m256i m3 = _mm256_set1_epi8(3), m15 = _mm256_set1_epi16(15);
  const __m256i even = _mm256_setr_epi8(0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13,
                                        0, 1, 0, 1, 4, 5, 4, 5, 8, 9, 8, 9, 12, 13, 12, 13);
  const __m256i odd = _mm256_add_epi8(even, _mm256_set1_epi8(2));
  const ggml::block_q8_K* y[MR];
  __m256 acc[MR];
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ggml::block_q8_K*>(a[j].blocks);
    acc[j] = _mm256_setzero_ps();
  }
  for (i64 i = 0; i < nb; ++i, g += kQ2_Kx8BlockBytes) {
    __m256i isum[MR], summ[MR];
    for (int j = 0; j < MR; ++j) isum[j] = summ[j] = _mm256_setzero_si256();
    for (int q = 0; q < 8; ++q) {
      const std::uint8_t* b = g + 160 + 64 * q;
      prefetch_lines(b + 2 * kQ2_Kx8BlockBytes, 1);
      const __m256i B = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 32 + 16 * q)));
      const __m256i S = _mm256_and_si256(B, m15), mn = _mm256_srli_epi16(B, 4);
      for (int j = 0; j < MR; ++j)
        summ[j] = _mm256_add_epi32(summ[j], _mm256_madd_epi16(mn, _mm256_set1_epi32(a[j].pairs[8 * i + q])));
      static_for<2>([&](auto nc) {
        constexpr int n = nc;
        const __m256i L = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32 * n));
        const __m256i sc = _mm256_shuffle_epi8(S, n ? odd : even);
        __m256i s16[MR];
        for (int j = 0; j < MR; ++j) s16[j] = _mm256_setzero_si256();
        static_for<4>([&](auto cc) {
          constexpr int c = cc;
          const __m256i u = _mm256_and_si256(c == 0 ? L : _mm256_srli_epi16(L, 2 * c), m3);
          for (int j = 0; j < MR; ++j)
            s16[j] = _mm256_add_epi16(s16[j], _mm256_maddubs_epi16(u, bcast4(y[j][i].qs + 32 * q + 16 * n + 4 * c)));
        });
        for (int j = 0; j < MR; ++j) isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(s16[j], sc));
      });
    }
    const __m256 xd = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g)));
    const __m256 xdmin = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 16)));
    for (int j = 0; j < MR; ++j) {
      const __m256 yd = _mm256_set1_ps(y[j][i].d);
      const __m256 d = _mm256_mul_ps(yd, xd), dmin = _mm256_mul_ps(yd, xdmin);
      acc[j] = _mm256_add_ps(acc[j], _mm256_sub_ps(_mm256_mul_ps(d, _mm256_cvtepi32_ps(isum[j])),
                                                   _mm256_mul_ps(dmin, _mm256_cvtepi32_ps(summ[j]))));
    }
  }
  for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * j, acc[j]);
}

// ---- q4_1x8, q5_0x8, q5_1x8 (ggml_repack.hpp): Min: an fp16 m per row (Q8_1 activations, the
// m_w * s_a term); High: the 5th code bit in the high plane (bit 2c + h for chunk c, half h).
// NG groups of 8 weight rows (`stride` bytes apart) x MR activation rows; out[(MR*gi + j)*8 + r].
// Codes unsigned: 4-bit (Min && !High: q4_1) as q4_0x8, 8 maddubs (<= 30480) per int16 sum;
// 5-bit: one int16 sum per half h (4 maddubs <= 4*2*31*127 = 31496), each widened by madd.
// q5_0's -16: 16 * the activation block's code sum. Float step as the scalar vec_dot:
//   acc += (d_w * d_a) * float(sumi) [+ m_w * s_a].
template <class ABlk, bool Min, bool High, int MR, int NG>
void legacy_x8(i64 nb, const std::uint8_t* g, i64 stride, const GgmlQ8Act* a, float* out) {
  constexpr i64 BB = 16 + (Min ? 16 : 0) + (High ? 32 : 0) + 128, QO = BB - 128, HO = 16 + (Min ? 16 : 0);
  const __m256i m4 = _mm256_set1_epi8(0x0f), m10 = _mm256_set1_epi8(0x10), ones = _mm256_set1_epi16(1);
  const ABlk* y[MR];
  __m256 acc[NG][MR];
  for (int j = 0; j < MR; ++j) {
    y[j] = reinterpret_cast<const ABlk*>(a[j].blocks);
    for (int gi = 0; gi < NG; ++gi) acc[gi][j] = _mm256_setzero_ps();
  }
  for (i64 i = 0; i < nb; ++i, g += BB) {
    if constexpr (NG == 1) prefetch_lines(g + 8 * BB, 3);
    __m256i si[NG][MR];
    for (int gi = 0; gi < NG; ++gi)
      for (int j = 0; j < MR; ++j) si[gi][j] = _mm256_setzero_si256();
    if constexpr (!High) {
      __m256i s16[NG][MR];
      for (int gi = 0; gi < NG; ++gi)
        for (int j = 0; j < MR; ++j) s16[gi][j] = _mm256_setzero_si256();
      for (int c = 0; c < 4; ++c)
        for (int h = 0; h < 2; ++h) {
          __m256i w[NG];
          for (int gi = 0; gi < NG; ++gi) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + gi * stride + QO + 32 * c));
            w[gi] = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4);
          }
          for (int j = 0; j < MR; ++j) {
            const __m256i b = bcast4(y[j][i].qs + 16 * h + 4 * c);
            for (int gi = 0; gi < NG; ++gi) s16[gi][j] = _mm256_add_epi16(s16[gi][j], _mm256_maddubs_epi16(w[gi], b));
          }
        }
      for (int gi = 0; gi < NG; ++gi)
        for (int j = 0; j < MR; ++j) si[gi][j] = _mm256_madd_epi16(s16[gi][j], ones);
    } else {
      __m256i H[NG];
      for (int gi = 0; gi < NG; ++gi) H[gi] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + gi * stride + HO));
      static_for<2>([&](auto hc) {
        constexpr int h = hc;
        __m256i s16[NG][MR];
        for (int gi = 0; gi < NG; ++gi)
          for (int j = 0; j < MR; ++j) s16[gi][j] = _mm256_setzero_si256();
        static_for<4>([&](auto cc) {
          constexpr int c = cc;
          __m256i w[NG];
          for (int gi = 0; gi < NG; ++gi) {
            const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(g + gi * stride + QO + 32 * c));
            w[gi] = _mm256_or_si256(_mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4),
                                    _mm256_and_si256(high_bit<2 * c + h>(H[gi]), m10));
          }
          for (int j = 0; j < MR; ++j) {
            const __m256i b = bcast4(y[j][i].qs + 16 * h + 4 * c);
            for (int gi = 0; gi < NG; ++gi) s16[gi][j] = _mm256_add_epi16(s16[gi][j], _mm256_maddubs_epi16(w[gi], b));
          }
        });
        for (int gi = 0; gi < NG; ++gi)
          for (int j = 0; j < MR; ++j) si[gi][j] = _mm256_add_epi32(si[gi][j], _mm256_madd_epi16(s16[gi][j], ones));
      });
    }
    for (int gi = 0; gi < NG; ++gi) {
      const std::uint8_t* gb = g + gi * stride;
      const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb)));
      __m256 mw = _mm256_setzero_ps();
      if constexpr (Min) mw = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(gb + 16)));
      for (int j = 0; j < MR; ++j) {
        __m256i sij = si[gi][j];
        if constexpr (!Min) sij = _mm256_sub_epi32(sij, _mm256_set1_epi32(16 * a[j].sum[i]));  // q5_0
        const __m256 t = _mm256_mul_ps(_mm256_mul_ps(dw, _mm256_set1_ps(a[j].d[i])), _mm256_cvtepi32_ps(sij));
        if constexpr (Min) acc[gi][j] = _mm256_add_ps(acc[gi][j], _mm256_add_ps(t, _mm256_mul_ps(mw, _mm256_set1_ps(a[j].s[i]))));
        else acc[gi][j] = _mm256_add_ps(acc[gi][j], t);
      }
    }
  }
  for (int gi = 0; gi < NG; ++gi)
    for (int j = 0; j < MR; ++j) _mm256_storeu_ps(out + 8 * (MR * gi + j), acc[gi][j]);
}

template <class ABlk, bool Min, bool High, int MR>
void legacy_x8_one(i64 nb, const std::uint8_t* g, const GgmlQ8Act* a, float* out) {
  legacy_x8<ABlk, Min, High, MR, 1>(nb, g, 0, a, out);
}

}  // namespace

const GgmlRepackKernels kGgmlRepackKernels = {
    q4_0x8<1>, q4_0x8<4>, q45_Kx8<false, 1>, q45_Kx8<false, 4>, q4_0x16_4, q8_0x8<1>, q8_0x8<4>, q6_Kx8<1>, q6_Kx8<4>,
    iq4_nlx8<1>, iq4_nlx8<4>,
    legacy_x8_one<ggml::block_q8_1, true, false, 1>, legacy_x8_one<ggml::block_q8_1, true, false, 4>,
    legacy_x8<ggml::block_q8_1, true, false, 4, 2>,
    legacy_x8_one<ggml::block_q8_0, false, true, 1>, legacy_x8_one<ggml::block_q8_0, false, true, 4>,
    legacy_x8<ggml::block_q8_0, false, true, 4, 2>,
    legacy_x8_one<ggml::block_q8_1, true, true, 1>, legacy_x8_one<ggml::block_q8_1, true, true, 4>,
    legacy_x8<ggml::block_q8_1, true, true, 4, 2>,
    q45_Kx8<true, 1>, q45_Kx8<true, 4>, q3_Kx8<1>, q3_Kx8<4>, q2_Kx8<1>, q2_Kx8<4>};

}  // namespace lowbit::avx2
