// x86 quantized-matmul kernels written once with 256-bit intrinsics and compiled once per
// ISA: kernels/avx2/qmatmul.cpp (-mavx2 -mfma) and kernels/avx512/qmatmul.cpp (AVX-512
// flags: the same code gets 32 vector registers and EVEX forms; with AVX512-VNNI in the
// flags the u8 x s8 dot becomes one vpdpbusd). Each file defines LOWBIT_QMATMUL_NS first.
//
// Integer parts are exact (no saturation: nibble codes <= 15, and int8 weights enter
// maddubs as |w| <= 128 against sign(a, w) with |a| <= 127, so a pair sum <= 32512);
// float sums differ from kernels/scalar only in order.
#include <immintrin.h>

#include <cmath>
#include <algorithm>
#include <cstdint>
#include <vector>

#include "lowbit/qmatmul.hpp"

// Throughput-analysis markers (llvm-mca); empty in the library.
#ifndef LOWBIT_MCA_BEGIN
#define LOWBIT_MCA_BEGIN(name)
#define LOWBIT_MCA_END(name)
#endif

namespace lowbit::LOWBIT_QMATMUL_NS {

namespace {

// Register tiles (weight rows x activation rows): 16 ymm registers hold the accumulators,
// the tile's weights and one activation vector without spills; 32 with AVX-512.
// (llvm-mca -mcpu=znver3 on the AVX2 build, cycles per 32 int8-activation MACs: nibble row
// pairs 1.0 at decode (2 pairs x 1 row of x) and 1.2 at prefill (1 pair x 4 rows), 1.5 with
// a table (NF4); int8 weights ~1.75, whose sign trick costs one more op per pair.)
#if defined(LOWBIT_Q8_NR)  // tuning builds set the tiles from outside
constexpr int kQ8Rows = LOWBIT_Q8_NR, kQ8Acts = LOWBIT_Q8_MR, kS8Rows = LOWBIT_S8_NR, kS8Acts = LOWBIT_S8_MR;
#elif defined(__AVX512F__)
constexpr int kQ8Rows = 4, kQ8Acts = 3, kS8Rows = 4, kS8Acts = 3;
#else
constexpr int kQ8Rows = 4, kQ8Acts = 2, kS8Rows = 2, kS8Acts = 4;
#endif
// Activation rows per nibble tile of one row pair (2 accumulators per activation row).
#if defined(__AVX512F__)
constexpr int kNibbleActs = 6;
#else
constexpr int kNibbleActs = 4;
#endif

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline std::int32_t hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  return _mm_cvtsi128_si32(s);
}

// sum_k a[k] * b[k] with independent vector accumulators (a scalar chain of dependent adds
// would cost more than the whole tile when groups are small: one term per group).
inline float dot_f32(const float* a, const float* b, i64 n) {
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  i64 k = 0;
  for (; k + 16 <= n; k += 16) {
    s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
    s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
  }
  float t = hsum(_mm256_add_ps(s0, s1));
  for (; k < n; ++k) t += a[k] * b[k];
  return t;
}

// 8 x int32: sums of 4 adjacent u8 x s8 products.
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// acc + dot_u8s8(u, s)
inline __m256i dot_u8s8_acc(__m256i acc, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(acc, u, s);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

// The 32 stored values of one block: nibble codes (0..15) in column order, or int8.
template <QContainer C>
inline __m256i load_block(const std::uint8_t* p) {
  if constexpr (C == QContainer::Nibble) {
    const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
  } else {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
}

// The unsigned operand of the dot for stored values w: w itself, or |w| for int8.
template <QContainer C>
inline __m256i unsigned_operand(__m256i w) {
  if constexpr (C == QContainer::Nibble) return w;
  else return _mm256_sign_epi8(w, w);  // |-128| = 0x80 = 128 as u8
}

template <QContainer C>
inline __m256i dot_block(__m256i w, __m256i wu, __m256i a) {
  if constexpr (C == QContainer::Nibble) return dot_u8s8(wu, a);
  else return dot_u8s8(wu, _mm256_sign_epi8(a, w));
}

// ---- activations -------------------------------------------------------------------------
void quantize_row_q8(const float* xp, i64 n_blocks, std::int8_t* a, float* d, std::int32_t* asum) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (i64 b = 0; b < n_blocks; ++b) {
    const float* x = xp + b * kQBlock;
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps(), probe = _mm256_setzero_ps();
    for (int i = 0; i < 4; ++i) {
      v[i] = _mm256_loadu_ps(x + 8 * i);
      probe = _mm256_add_ps(probe, _mm256_sub_ps(v[i], v[i]));
      amax = _mm256_max_ps(_mm256_andnot_ps(sign, v[i]), amax);
    }
    std::int8_t* q = a + b * kQBlock;
    if (_mm256_movemask_ps(_mm256_cmp_ps(probe, probe, _CMP_EQ_OQ)) != 0xff) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), _mm256_setzero_si256());
      d[b] = NAN;
      asum[b] = 0;
      continue;
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const float scale = _mm_cvtss_f32(m4) / 127.0f;
    const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
    const __m256 vinv = _mm256_set1_ps(inv), hi = _mm256_set1_ps(127.0f), lo = _mm256_set1_ps(-127.0f);
    __m256i qi[4];
    __m256i s = _mm256_setzero_si256();
    for (int i = 0; i < 4; ++i) {
      __m256 t = _mm256_round_ps(_mm256_mul_ps(v[i], vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      t = _mm256_max_ps(_mm256_min_ps(t, hi), lo);
      qi[i] = _mm256_cvtps_epi32(t);
      s = _mm256_add_epi32(s, qi[i]);
    }
    // int32 -> int8 (values fit): the packs work per 128-bit lane, the permute restores order
    const __m256i p01 = _mm256_packs_epi32(qi[0], qi[1]), p23 = _mm256_packs_epi32(qi[2], qi[3]);
    const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), perm);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q), p);
    d[b] = scale;
    asum[b] = hsum_i32(s);
  }
}

// ---- int8-activation GEMM, int8 weights ----------------------------------------------------
// An NR x MR tile: weight rows wr[0..NR) (block b at wr[i] + b * stride), activation rows
// m..m+MR; out[j * ldy + i].
template <int NR, int MR>
void tile_q8(const PackedWeights& w, const std::uint8_t* const* wr, i64 stride, i64 r, const ActQ8& a, i64 m,
             float* out, i64 ldy) {
  constexpr QContainer C = QContainer::Byte;
  const i64 K = w.padded_cols(), G = w.n_groups;
  const float* sr[NR];
  for (int i = 0; i < NR; ++i) sr[i] = w.scale.data() + (r + i) * G;
  const std::int8_t* am[MR];
  const float* dm[MR];
  for (int j = 0; j < MR; ++j) {
    am[j] = a.q + (m + j) * K;
    dm[j] = a.d + (m + j) * a.n_blocks;
  }
  __m256 acc[MR][NR];
  for (int j = 0; j < MR; ++j)
    for (int i = 0; i < NR; ++i) acc[j][i] = _mm256_setzero_ps();
  // Per-group accumulators: the weight scale is applied once per group, not once per block.
  // Every tile shape runs the same per-output operations, so a row's result never depends on
  // which other rows share its call (batch invariance; tests/python/test_qmatmul.py checks).
  for (i64 g = 0; g < G; ++g) {
    __m256 sv[NR], gacc[MR][NR];
    for (int i = 0; i < NR; ++i) sv[i] = _mm256_broadcast_ss(sr[i] + g);
    for (int j = 0; j < MR; ++j)
      for (int i = 0; i < NR; ++i) gacc[j][i] = _mm256_setzero_ps();
    for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b) {
      LOWBIT_MCA_BEGIN("q8")
      __m256i wv[NR], wu[NR];
      for (int i = 0; i < NR; ++i) {
        wv[i] = load_block<C>(wr[i] + b * stride);
        wu[i] = unsigned_operand<C>(wv[i]);
      }
      for (int j = 0; j < MR; ++j) {
        const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(am[j] + b * kQBlock));
        const __m256 dv = _mm256_broadcast_ss(dm[j] + b);
        for (int i = 0; i < NR; ++i) {
          const __m256 p = _mm256_cvtepi32_ps(dot_block<C>(wv[i], wu[i], av));
          gacc[j][i] = _mm256_fmadd_ps(p, dv, gacc[j][i]);
        }
      }
      LOWBIT_MCA_END("q8")
    }
    for (int j = 0; j < MR; ++j)
      for (int i = 0; i < NR; ++i) acc[j][i] = _mm256_fmadd_ps(gacc[j][i], sv[i], acc[j][i]);
  }
  for (int j = 0; j < MR; ++j) {
    const float* gs = a.gsum + (m + j) * a.n_groups;
    for (int i = 0; i < NR; ++i) out[j * ldy + i] = hsum(acc[j][i]) + dot_f32(w.offset.data() + (r + i) * G, gs, G);
  }
}

// Rows r..r+NR against activation rows [m0, m0+mb) in steps of MR (then 1).
template <int NR, int MR>
void rows_q8(const PackedWeights& w, const std::uint8_t* const* wr, i64 stride, i64 r, const ActQ8& a, i64 m0, i64 mb,
             float* y, i64 ldy) {
  i64 m = m0;
  for (; m + MR <= m0 + mb; m += MR) tile_q8<NR, MR>(w, wr, stride, r, a, m, y + (m - m0) * ldy, ldy);
  for (; m < m0 + mb; ++m) tile_q8<NR, 1>(w, wr, stride, r, a, m, y + (m - m0) * ldy, ldy);
}

void gemm_q8_bytes(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy) {
  constexpr int NR = kQ8Rows;
  const std::uint8_t* wr[NR];
  for (i64 r = r0; r < r0 + rb; r += NR) {
    const i64 n = std::min<i64>(NR, r0 + rb - r);
    float* yr = y + (r - r0);
    for (i64 i = 0; i < n; ++i) wr[i] = w.row_codes(r + i);
    if (n == NR) {
      rows_q8<NR, kQ8Acts>(w, wr, w.block_stride(), r, a, m0, mb, yr, ldy);
    } else {
      for (i64 i = 0; i < n; ++i) rows_q8<1, kQ8Acts>(w, wr + i, w.block_stride(), r + i, a, m0, mb, yr + i, ldy);
    }
  }
}

// ---- int8-activation GEMM, nibble weights (4-row interleaved blocks) ------------------------
// A block of 4 rows is 64 bytes, row i's 16 bytes at 16i (lowbit/qmatmul.hpp), so one 32-byte
// load holds a pair of rows A | B. Its low nibbles (columns 0..15 of each row) go against
// columns 0..15 of the activation block broadcast to both halves, its high nibbles (columns
// 16..31) against columns 16..31: two maddubs, one add, one madd(1) give 8 int32 lanes, lanes
// 0..3 row A and 4..7 row B, lane l = the exact dot over columns {4l..4l+3, 16+4l..16+4l+3}
// (int16 partial sums <= 4 * 15 * 127: no saturation). No per-row shuffle and one convert per
// pair: the decode body is about 5 ops per 32 MACs instead of 8.
// Float, per lane: gacc += float(lane) * d_b over a group's blocks, then per group
// acc = acc + gacc * s_g, and lane 0 of each row also + offset_g * gsum_g; a row's output =
// (l0 + l2) + (l1 + l3). (The offset term rides in the group loop: a separate dot over the
// groups per output cost a quarter of the prefill time at K = 576.) Every tile shape runs these
// same operations per output, so results are batch invariant and independent of the thread count.

// 8 int32 lanes of a row pair's block dot (see above), exact.
inline __m256i dot_pair(__m256i lo, __m256i hi, __m256i alo, __m256i ahi) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
  return _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, alo), hi, ahi);
#else
  const __m256i s16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi));
  return _mm256_madd_epi16(s16, _mm256_set1_epi16(1));
#endif
}

// The same lanes for table weights (int8 values, signed): maddubs needs an unsigned operand,
// so |w| against sign(a, w); a pair sum reaches 2 * 127 * 127, so lo and hi widen separately.
inline __m256i dot_pair_signed(__m256i lo, __m256i hi, __m256i alo, __m256i ahi) {
  const __m256i plo = dot_u8s8(_mm256_sign_epi8(lo, lo), _mm256_sign_epi8(alo, lo));
  return dot_u8s8_acc(plo, _mm256_sign_epi8(hi, hi), _mm256_sign_epi8(ahi, hi));
}

inline float hsum4(__m128 v) {
  const __m128 s = _mm_add_ps(v, _mm_movehl_ps(v, v));
  return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

// NP row pairs starting at row r (r even; pair p = rows r+2p, r+2p+1 of one interleaved group)
// x MR activation rows from m; out[j * ldy + i] for the first nr (<= 2 NP) rows.
// Table: nibble codes index w.table8 (int8 values; NF4/FP4), looked up by one vpshufb each.
template <int NP, int MR, bool Table>
void tile_nibble(const PackedWeights& w, i64 r, i64 nr, const ActQ8& a, i64 m, float* out, i64 ldy) {
  const i64 K = w.padded_cols(), G = w.n_groups, stride = w.block_stride();
  const __m256i m4 = _mm256_set1_epi8(0x0f);
  __m256i tbl = _mm256_setzero_si256();
  if constexpr (Table)
    tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w.table8.data())));
  const __m256 t8s = _mm256_set1_ps(w.table8_scale);
  const std::uint8_t* wp[NP];
  const float *sp[NP], *op[NP];
  for (int p = 0; p < NP; ++p) {
    wp[p] = w.row_codes(r + 2 * p);
    sp[p] = w.scale.data() + (r + 2 * p) * G;
    op[p] = w.offset.data() + (r + 2 * p) * G;
  }
  const std::int8_t* am[MR];
  const float *dm[MR], *gs[MR];
  for (int j = 0; j < MR; ++j) {
    am[j] = a.q + (m + j) * K;
    dm[j] = a.d + (m + j) * a.n_blocks;
    gs[j] = a.gsum + (m + j) * a.n_groups;
  }
  __m256 acc[MR][NP];
  for (int j = 0; j < MR; ++j)
    for (int p = 0; p < NP; ++p) acc[j][p] = _mm256_setzero_ps();
  for (i64 g = 0; g < G; ++g) {
    __m256 gacc[MR][NP];
    for (int j = 0; j < MR; ++j)
      for (int p = 0; p < NP; ++p) gacc[j][p] = _mm256_setzero_ps();
    for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b) {
      LOWBIT_MCA_BEGIN("nibble")
      __m256i lo[NP], hi[NP];
      for (int p = 0; p < NP; ++p) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp[p] + b * stride));
        lo[p] = _mm256_and_si256(q, m4);
        hi[p] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if constexpr (Table) {
          lo[p] = _mm256_shuffle_epi8(tbl, lo[p]);
          hi[p] = _mm256_shuffle_epi8(tbl, hi[p]);
        }
      }
      for (int j = 0; j < MR; ++j) {
        const std::int8_t* ab = am[j] + b * kQBlock;
        const __m256i alo = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ab)));
        const __m256i ahi = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(ab + 16)));
        const __m256 dv = _mm256_broadcast_ss(dm[j] + b);
        for (int p = 0; p < NP; ++p) {
          const __m256i d = Table ? dot_pair_signed(lo[p], hi[p], alo, ahi) : dot_pair(lo[p], hi[p], alo, ahi);
          gacc[j][p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), dv, gacc[j][p]);
        }
      }
      LOWBIT_MCA_END("nibble")
    }
    for (int p = 0; p < NP; ++p) {
      // lanes 0..3 take row A's scale, 4..7 row B's (times table8_scale: exactly 1 without a table)
      const __m256 sv =
          _mm256_mul_ps(_mm256_set_m128(_mm_broadcast_ss(sp[p] + G + g), _mm_broadcast_ss(sp[p] + g)), t8s);
      for (int j = 0; j < MR; ++j) acc[j][p] = _mm256_fmadd_ps(gacc[j][p], sv, acc[j][p]);
      if constexpr (!Table) {  // table formats have no offsets (prepare_table4 leaves them 0)
        // the offset term offset[row, g] * gsum[m, g] joins lane 0 (row A) and lane 4 (row B)
        const __m256 ov = _mm256_set_m128(_mm_set_ss(op[p][G + g]), _mm_set_ss(op[p][g]));
        for (int j = 0; j < MR; ++j) acc[j][p] = _mm256_fmadd_ps(ov, _mm256_broadcast_ss(gs[j] + g), acc[j][p]);
      }
    }
  }
  for (int j = 0; j < MR; ++j) {
    for (int p = 0; p < NP; ++p) {
      const __m128 halves[2] = {_mm256_castps256_ps128(acc[j][p]), _mm256_extractf128_ps(acc[j][p], 1)};
      for (int h = 0; h < 2; ++h) {
        const i64 i = 2 * p + h;
        if (i < nr) out[j * ldy + i] = hsum4(halves[h]);
      }
    }
  }
}

// Pairs at r.. (2 NP rows, nr valid) against activation rows [m0, m0+mb) in steps of MR (then 1).
template <int NP, int MR, bool Table>
void rows_nibble(const PackedWeights& w, i64 r, i64 nr, const ActQ8& a, i64 m0, i64 mb, float* y, i64 ldy) {
  i64 m = m0;
  for (; m + MR <= m0 + mb; m += MR) tile_nibble<NP, MR, Table>(w, r, nr, a, m, y + (m - m0) * ldy, ldy);
  for (; m < m0 + mb; ++m) tile_nibble<NP, 1, Table>(w, r, nr, a, m, y + (m - m0) * ldy, ldy);
}

// Row pairs of [r0, r0 + rb) x activation rows [m, m + MR): the MR activation rows stay in L1
// while the tile's weights stream from L2.
template <int MR, bool Table>
void pairs_nibble(const PackedWeights& w, const ActQ8& a, i64 m, i64 m0, i64 r0, i64 rb, float* y, i64 ldy) {
  for (i64 r = r0; r < r0 + rb; r += 2)
    tile_nibble<1, MR, Table>(w, r, std::min<i64>(2, r0 + rb - r), a, m, y + (m - m0) * ldy + (r - r0), ldy);
}

template <bool Table>
void gemm_q8_nibbles(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy) {
  // r0 is a multiple of the row group (the driver's tiles are), so every group is whole in
  // the padded storage; rows past rb are computed and not written.
  if (mb <= 2) {  // decode: both pairs of a group in one pass over its cache lines
    for (i64 r = r0; r < r0 + rb; r += kNibbleRowGroup)
      rows_nibble<2, 1, Table>(w, r, std::min<i64>(kNibbleRowGroup, r0 + rb - r), a, m0, mb, y + (r - r0), ldy);
    return;
  }
  i64 m = m0;
  for (; m + kNibbleActs <= m0 + mb; m += kNibbleActs) pairs_nibble<kNibbleActs, Table>(w, a, m, m0, r0, rb, y, ldy);
  for (; m < m0 + mb; ++m) pairs_nibble<1, Table>(w, a, m, m0, r0, rb, y, ldy);
}

void gemm_q8(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy) {
  if (w.container == QContainer::Byte) gemm_q8_bytes(w, a, m0, mb, r0, rb, y, ldy);
  else if (w.table8.empty()) gemm_q8_nibbles<false>(w, a, m0, mb, r0, rb, y, ldy);
  else gemm_q8_nibbles<true>(w, a, m0, mb, r0, rb, y, ldy);
}

// ---- float path: rows of W_hat ---------------------------------------------------------
template <QContainer C>
void dequantize_rows_c(const PackedWeights& w, i64 r0, i64 rb, float* dst) {
  const i64 K = w.padded_cols(), stride = w.block_stride();
  for (i64 r = r0; r < r0 + rb; ++r) {
    const std::uint8_t* wr = w.row_codes(r);
    float* out = dst + (r - r0) * K;
    for (i64 g = 0; g < w.n_groups; ++g) {
      const __m256 s = _mm256_set1_ps(w.scale[r * w.n_groups + g]);
      const __m256 off = _mm256_set1_ps(w.offset[r * w.n_groups + g]);
      for (i64 b = w.group_block[g]; b < w.group_block[g + 1]; ++b) {
        const __m256i v = load_block<C>(wr + b * stride);
        const __m128i h[2] = {_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)};
        for (int i = 0; i < 4; ++i) {
          const __m128i part = i & 1 ? _mm_srli_si128(h[i >> 1], 8) : h[i >> 1];
          const __m256i e = C == QContainer::Nibble ? _mm256_cvtepu8_epi32(part) : _mm256_cvtepi8_epi32(part);
          // s * v + off rounded twice, as the scalar definition (no fused multiply-add)
          const __m256 f = _mm256_add_ps(_mm256_mul_ps(s, _mm256_cvtepi32_ps(e)), off);
          _mm256_storeu_ps(out + b * kQBlock + 8 * i, f);
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
  __m256i s[MR][NR];
  for (int j = 0; j < MR; ++j)
    for (int i = 0; i < NR; ++i) s[j][i] = _mm256_setzero_si256();
  for (i64 k = 0; k < n; k += kQBlock) {
    LOWBIT_MCA_BEGIN("s8")
    __m256i wv[NR], wu[NR];
    for (int i = 0; i < NR; ++i) {
      wv[i] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + i * ldw + k));
      wu[i] = _mm256_sign_epi8(wv[i], wv[i]);
    }
    for (int j = 0; j < MR; ++j) {
      const __m256i av = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + j * lda + k));
      for (int i = 0; i < NR; ++i) s[j][i] = dot_u8s8_acc(s[j][i], wu[i], _mm256_sign_epi8(av, wv[i]));
    }
    LOWBIT_MCA_END("s8")
  }
  for (int j = 0; j < MR; ++j)
    for (int i = 0; i < NR; ++i) acc[j * ldacc + i] = hsum_i32(s[j][i]);
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

}  // namespace

void gemm_s8(const std::int8_t* w, i64 ldw, i64 rb, const std::int8_t* a, i64 lda, i64 mb, i64 n,
             std::int32_t* acc, i64 ldacc) {
  gemm_s8_t<kS8Rows, kS8Acts>(w, ldw, rb, a, lda, mb, n, acc, ldacc);
}

const QMatmulKernels kQMatmulKernels = {quantize_row_q8, gemm_q8, dequantize_rows, gemm_s8};

}  // namespace lowbit::LOWBIT_QMATMUL_NS
