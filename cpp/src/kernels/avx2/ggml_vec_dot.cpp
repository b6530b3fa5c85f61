// AVX2 vec_dot of GGUF weight blocks with quantized activations (lowbit/ggml_qmatmul.hpp);
// the AVX-512 path reuses these. Each 32-column chunk of weights is widened to 32 int8 values
// and dotted with 32 int8 activations through maddubs: unsigned codes directly (pair sums
// <= 2*63*127), signed values as |w| against sign(a, w) (pair sums <= 2*128*127): no int16
// saturation, so every integer dot is exact. Only the float sums differ from
// kernels/scalar/ggml_vec_dot.cpp, in order.
#include <immintrin.h>

#include <cstring>

#include "lowbit/ggml_blocks.hpp"
#include "lowbit/ggml_qmatmul.hpp"
#include "lowbit/half.hpp"

namespace lowbit::avx2 {

namespace {

using namespace lowbit::ggml;

inline float h2f(half h) { return _cvtsh_ss(h); }  // F16C: exact, as fp16_to_fp32

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 8 int32: sums of 4 adjacent products.
inline __m256i sum4(__m256i pairs) { return _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)); }

// 16 packed bytes -> 32 nibbles: low nibbles first (elements 0..15), then high (16..31).
inline __m256i nibbles16(const std::uint8_t* p) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  const __m256i b = _mm256_inserti128_si256(_mm256_castsi128_si256(t), _mm_srli_epi16(t, 4), 1);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

// The 32 bits of qh as bytes: 0xff where bit j is set, else 0.
inline __m256i bits_to_bytes(std::uint32_t bits) {
  const __m256i shuf = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
                                        2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
  const __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(bits)), shuf);
  const __m256i mask = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
  return _mm256_cmpeq_epi8(_mm256_and_si256(v, mask), mask);
}

inline std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Every kernel computes MR outputs: one weight row against MR activation rows (a[0..MR)),
// decoding each weight chunk once. Output j's arithmetic does not depend on MR (its own
// accumulators, the same operations in the same order), so vec_dot = the MR = 1 instance and
// a row's result never depends on which rows share its call.

// ---- 32-element blocks ---------------------------------------------------------------------
// Per block: the 32 weight values (int8), whether they are signed, scale d and min m (0 if none).
struct Legacy {
  __m256i w;
  float d, m;
};

template <class Blk, class ABlk, bool Signed, bool Min, class Decode, int MR>
void dot_legacy(i64 n, const void* wv, const void* const* av, float* out, Decode decode) {
  const auto* x = static_cast<const Blk*>(wv);
  const ABlk* y[MR];
  for (int j = 0; j < MR; ++j) y[j] = static_cast<const ABlk*>(av[j]);
  __m256 acc[MR];
  float summs[MR];
  for (int j = 0; j < MR; ++j) acc[j] = _mm256_setzero_ps(), summs[j] = 0.0f;
  for (i64 i = 0; i < n / 32; ++i) {
    const Legacy b = decode(x[i]);
    const __m256i wu = Signed ? _mm256_sign_epi8(b.w, b.w) : b.w;
    for (int j = 0; j < MR; ++j) {
      __m256i a = loadu(y[j][i].qs);
      if constexpr (Signed) a = _mm256_sign_epi8(a, b.w);
      const __m256i p = sum4(_mm256_maddubs_epi16(wu, a));
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(b.d * h2f(y[j][i].d)), _mm256_cvtepi32_ps(p), acc[j]);
      if constexpr (Min) summs[j] += b.m * h2f(y[j][i].s);
    }
  }
  for (int j = 0; j < MR; ++j) out[j] = Min ? hsum(acc[j]) + summs[j] : hsum(acc[j]);
}

inline Legacy dec_q4_0(const block_q4_0& b) {
  return {_mm256_sub_epi8(nibbles16(b.qs), _mm256_set1_epi8(8)), h2f(b.d), 0.0f};
}
inline Legacy dec_q4_1(const block_q4_1& b) { return {nibbles16(b.qs), h2f(b.d), h2f(b.m)}; }
inline Legacy dec_q5_0(const block_q5_0& b) {
  const __m256i b16 = _mm256_set1_epi8(16);
  const __m256i hi = _mm256_and_si256(bits_to_bytes(load_u32(b.qh)), b16);
  return {_mm256_sub_epi8(_mm256_or_si256(nibbles16(b.qs), hi), b16), h2f(b.d), 0.0f};
}
inline Legacy dec_q5_1(const block_q5_1& b) {
  const __m256i hi = _mm256_and_si256(bits_to_bytes(load_u32(b.qh)), _mm256_set1_epi8(16));
  return {_mm256_or_si256(nibbles16(b.qs), hi), h2f(b.d), h2f(b.m)};
}
inline Legacy dec_q8_0(const block_q8_0& b) { return {loadu(b.qs), h2f(b.d), 0.0f}; }
inline Legacy dec_iq4_nl(const block_iq4_nl& b) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl));
  const __m256i table = _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
  return {_mm256_shuffle_epi8(table, nibbles16(b.qs)), h2f(b.d), 0.0f};
}

template <int MR> void dot_q4_0(i64 n, const void* w, const void* const* a, float* o) {
  dot_legacy<block_q4_0, block_q8_0, true, false, decltype(&dec_q4_0), MR>(n, w, a, o, dec_q4_0);
}
template <int MR> void dot_q4_1(i64 n, const void* w, const void* const* a, float* o) {
  dot_legacy<block_q4_1, block_q8_1, false, true, decltype(&dec_q4_1), MR>(n, w, a, o, dec_q4_1);
}
template <int MR> void dot_q5_0(i64 n, const void* w, const void* const* a, float* o) {
  dot_legacy<block_q5_0, block_q8_0, true, false, decltype(&dec_q5_0), MR>(n, w, a, o, dec_q5_0);
}
template <int MR> void dot_q5_1(i64 n, const void* w, const void* const* a, float* o) {
  dot_legacy<block_q5_1, block_q8_1, false, true, decltype(&dec_q5_1), MR>(n, w, a, o, dec_q5_1);
}
template <int MR> void dot_q8_0(i64 n, const void* w, const void* const* a, float* o) {
  dot_legacy<block_q8_0, block_q8_0, true, false, decltype(&dec_q8_0), MR>(n, w, a, o, dec_q8_0);
}
template <int MR> void dot_iq4_nl(i64 n, const void* w, const void* const* a, float* o) {
  dot_legacy<block_iq4_nl, block_q8_0, true, false, decltype(&dec_iq4_nl), MR>(n, w, a, o, dec_iq4_nl);
}

// ---- k-quants ------------------------------------------------------------------------------
// int16 scales for one 32-chunk whose halves (16 elements each) have scales s0, s1.
inline __m256i scales2(int s0, int s1) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(s0))),
                                 _mm_set1_epi16(static_cast<short>(s1)), 1);
}

inline void q3_K_scales(const std::uint8_t* s, int out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
    const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    out[j] = (lo | (hi << 4)) - 32;
  }
}

inline void scale_min_k4(int j, const std::uint8_t* q, int* d, int* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// One k-quant super-block decoded: chunk c's 32 values (signed or not) and int16 scales, the
// super-block scale d, and for the types with mins the 16 min multipliers of the bsums and dmin.
struct KBlock {
  __m256i w[8], sc[8];
  float d = 0.0f, dmin = 0.0f;
  int mins[16] = {};
};

inline void dec_q2_K(const block_q2_K& x, KBlock& k) {
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i q2 = loadu(x.qs + 32 * h);
    for (int s = 0; s < 4; ++s) {
      const int c = 4 * h + s;
      k.w[c] = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), m3);
      k.sc[c] = scales2(x.scales[2 * c] & 0xf, x.scales[2 * c + 1] & 0xf);
    }
  }
  for (int j = 0; j < 16; ++j) k.mins[j] = x.scales[j] >> 4;
  k.d = h2f(x.d);
  k.dmin = h2f(x.dmin);
}

inline void dec_q3_K(const block_q3_K& x, KBlock& k) {
  const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4), zero = _mm256_setzero_si256();
  int sc[16];
  q3_K_scales(x.scales, sc);
  const __m256i hm = loadu(x.hmask);
  for (int h = 0; h < 2; ++h) {
    const __m256i q3 = loadu(x.qs + 32 * h);
    for (int s = 0; s < 4; ++s) {
      const int c = 4 * h + s;
      const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q3, 2 * s), m3);
      const __m256i bit = _mm256_and_si256(hm, _mm256_set1_epi8(static_cast<char>(1 << c)));
      k.w[c] = _mm256_sub_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(bit, zero), four));  // -4 where clear
      k.sc[c] = scales2(sc[2 * c], sc[2 * c + 1]);
    }
  }
  k.d = h2f(x.d);
}

template <bool Five, class Blk>
inline void dec_q45_K(const Blk& x, KBlock& k) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(16), zero = _mm256_setzero_si256();
  __m256i qh = zero;
  if constexpr (Five) qh = loadu(x.qh);
  for (int h = 0; h < 4; ++h) {
    const __m256i q = loadu(x.qs + 32 * h);
    for (int s = 0; s < 2; ++s) {
      const int j = 2 * h + s;
      int sc, mn;
      scale_min_k4(j, x.scales, &sc, &mn);
      __m256i w = _mm256_and_si256(s ? _mm256_srli_epi16(q, 4) : q, m4);
      if constexpr (Five) {
        const __m256i bit = _mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(1 << j)));
        w = _mm256_or_si256(w, _mm256_andnot_si256(_mm256_cmpeq_epi8(bit, zero), b16));
      }
      k.w[j] = w;
      k.sc[j] = _mm256_set1_epi16(static_cast<short>(sc));
      k.mins[2 * j] = k.mins[2 * j + 1] = mn;  // the min of sub-block j weighs both of its bsums
    }
  }
  k.d = h2f(x.d);
  k.dmin = h2f(x.dmin);
}

inline void dec_q6_K(const block_q6_K& x, KBlock& k) {
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), b32 = _mm256_set1_epi8(32);
  for (int hf = 0; hf < 2; ++hf) {
    const __m256i ql0 = loadu(x.ql + 64 * hf), ql1 = loadu(x.ql + 64 * hf + 32);
    const __m256i qh = loadu(x.qh + 32 * hf);
    for (int q = 0; q < 4; ++q) {
      const int c = 4 * hf + q;
      const __m256i ql = q & 1 ? ql1 : ql0;
      const __m256i lo = _mm256_and_si256(q >> 1 ? _mm256_srli_epi16(ql, 4) : ql, m4);
      const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * q), m3), 4);
      k.w[c] = _mm256_sub_epi8(_mm256_or_si256(lo, hi), b32);
      k.sc[c] = scales2(x.scales[2 * c], x.scales[2 * c + 1]);
    }
  }
  k.d = h2f(x.d);
}

// sum over super-blocks of y.d * d * sum_c scale_c . dot_c  (- y.d * dmin * sum_j min_j bsum_j).
template <class Blk, bool Signed, bool Min, class Decode, int MR>
void dot_k(i64 n, const void* wv, const void* const* av, float* out, Decode decode) {
  const auto* x = static_cast<const Blk*>(wv);
  const block_q8_K* y[MR];
  for (int j = 0; j < MR; ++j) y[j] = static_cast<const block_q8_K*>(av[j]);
  __m256 acc[MR];
  float mins[MR];
  for (int j = 0; j < MR; ++j) acc[j] = _mm256_setzero_ps(), mins[j] = 0.0f;
  KBlock k;
  for (i64 i = 0; i < n / QK_K; ++i) {
    decode(x[i], k);
    __m256i isum[MR];
    for (int j = 0; j < MR; ++j) isum[j] = _mm256_setzero_si256();
    for (int c = 0; c < 8; ++c) {
      const __m256i wu = Signed ? _mm256_sign_epi8(k.w[c], k.w[c]) : k.w[c];
      for (int j = 0; j < MR; ++j) {
        __m256i a = loadu(y[j][i].qs + 32 * c);
        if constexpr (Signed) a = _mm256_sign_epi8(a, k.w[c]);
        isum[j] = _mm256_add_epi32(isum[j], _mm256_madd_epi16(_mm256_maddubs_epi16(wu, a), k.sc[c]));
      }
    }
    for (int j = 0; j < MR; ++j) {
      acc[j] = _mm256_fmadd_ps(_mm256_set1_ps(y[j][i].d * k.d), _mm256_cvtepi32_ps(isum[j]), acc[j]);
      if constexpr (Min) {
        std::int32_t summ = 0;
        for (int b = 0; b < 16; ++b) summ += y[j][i].bsums[b] * k.mins[b];
        mins[j] += (y[j][i].d * k.dmin) * static_cast<float>(summ);
      }
    }
  }
  for (int j = 0; j < MR; ++j) out[j] = Min ? hsum(acc[j]) - mins[j] : hsum(acc[j]);
}

template <int MR> void dot_q2_K(i64 n, const void* w, const void* const* a, float* o) {
  dot_k<block_q2_K, false, true, decltype(&dec_q2_K), MR>(n, w, a, o, dec_q2_K);
}
template <int MR> void dot_q3_K(i64 n, const void* w, const void* const* a, float* o) {
  dot_k<block_q3_K, true, false, decltype(&dec_q3_K), MR>(n, w, a, o, dec_q3_K);
}
template <int MR> void dot_q4_K(i64 n, const void* w, const void* const* a, float* o) {
  dot_k<block_q4_K, false, true, decltype(&dec_q45_K<false, block_q4_K>), MR>(n, w, a, o, dec_q45_K<false, block_q4_K>);
}
template <int MR> void dot_q5_K(i64 n, const void* w, const void* const* a, float* o) {
  dot_k<block_q5_K, false, true, decltype(&dec_q45_K<true, block_q5_K>), MR>(n, w, a, o, dec_q45_K<true, block_q5_K>);
}
template <int MR> void dot_q6_K(i64 n, const void* w, const void* const* a, float* o) {
  dot_k<block_q6_K, true, false, decltype(&dec_q6_K), MR>(n, w, a, o, dec_q6_K);
}

// ---- activations ---------------------------------------------------------------------------
// ggml_quantize_act_row's blocks (ops/ggml_qmatmul.cpp: ggml-cpu's x86 quantizers) byte for byte:
// maxima are order-free, each code the same float product rounded the same way, sums exact.

// Q8_0 / Q8_1: _mm256_round_ps to nearest even as nearbyint; d and s through the same fp16 rounding.
void quantize_q8_01(const float* x, void* dst, i64 n, bool q8_1) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);  // undo packs' lane interleave
  const i64 bytes = q8_1 ? sizeof(block_q8_1) : sizeof(block_q8_0);
  for (i64 i = 0; i < n / 32; ++i, x += 32) {
    auto* out = static_cast<std::uint8_t*>(dst) + i * bytes;
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 8 * k);
    __m256 mx = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]), _mm256_andnot_ps(sign, v[1])),
                              _mm256_max_ps(_mm256_andnot_ps(sign, v[2]), _mm256_andnot_ps(sign, v[3])));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    const float d = amax / 127.0f;
    const __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
    __m256i q[4];
    for (int k = 0; k < 4; ++k)
      q[k] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[k], id), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    const __m256i codes = _mm256_permutevar8x32_epi32(p, order);
    const std::uint16_t dh = fp32_to_fp16(d);
    std::memcpy(out, &dh, 2);
    if (q8_1) {
      __m256i s8 = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
      __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
      s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
      const std::uint16_t sh = fp32_to_fp16(d * static_cast<float>(_mm_cvtsi128_si32(s4)));
      std::memcpy(out + 2, &sh, 2);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4), codes);
    } else {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 2), codes);
    }
  }
}

// Q8_K (quantize_row_q8_K_ref): max = the first element of the largest |x|; codes
// min(127, nearest_int(iscale * x)) by the same 1.5 * 2^23 addition; bsums of 16 codes.
void quantize_q8_K(const float* x, void* dst, i64 n) {
  const __m256 sign = _mm256_set1_ps(-0.0f), magic = _mm256_set1_ps(12582912.f);
  const __m256i mant = _mm256_set1_epi32(0x007fffff), half = _mm256_set1_epi32(0x00400000);
  const __m256i c127 = _mm256_set1_epi32(127), order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  const __m256i ones8 = _mm256_set1_epi8(1), ones16 = _mm256_set1_epi16(1);
  auto* y = static_cast<block_q8_K*>(dst);
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q8_K& b = y[i];
    __m256 mx = _mm256_setzero_ps();
    for (int k = 0; k < QK_K / 8; ++k) mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)));
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    const float amax = _mm_cvtss_f32(m);
    if (amax == 0.0f) {
      b.d = 0;
      std::memset(b.qs, 0, sizeof b.qs);
      std::memset(b.bsums, 0, sizeof b.bsums);
      continue;
    }
    float max = 0.0f;
    const __m256 am = _mm256_set1_ps(amax);
    for (int k = 0; k < QK_K / 8; ++k) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * k)), am, _CMP_EQ_OQ));
      if (hit != 0) {
        max = x[8 * k + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.f / max;
    const __m256 is = _mm256_set1_ps(iscale);
    for (int c = 0; c < QK_K / 32; ++c) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_add_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + 32 * c + 8 * k)), magic);
        q[k] = _mm256_min_epi32(_mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(v), mant), half), c127);
      }
      const __m256i codes = _mm256_permutevar8x32_epi32(
          _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3])), order);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b.qs + 32 * c), codes);
      // bsums 2c, 2c+1: the two 128-bit halves' code sums (|.| <= 16 * 128: int16)
      __m256i s = _mm256_madd_epi16(_mm256_maddubs_epi16(ones8, codes), ones16);
      s = _mm256_hadd_epi32(s, s);
      s = _mm256_hadd_epi32(s, s);
      b.bsums[2 * c] = static_cast<std::int16_t>(_mm256_extract_epi32(s, 0));
      b.bsums[2 * c + 1] = static_cast<std::int16_t>(_mm256_extract_epi32(s, 4));
    }
    b.d = 1 / iscale;
  }
}

void quantize_act(QType act_type, const float* x, void* dst, i64 n) {
  switch (act_type) {
    case QType::Q8_0: return quantize_q8_01(x, dst, n, false);
    case QType::Q8_1: return quantize_q8_01(x, dst, n, true);
    case QType::Q8_K: return quantize_q8_K(x, dst, n);
    default: return ggml_quantize_act_row(act_type, x, dst, n);  // throws the error naming it
  }
}

template <void (*F)(i64, const void*, const void* const*, float*)>
float one(i64 n, const void* w, const void* a) {
  float o;
  F(n, w, &a, &o);
  return o;
}

}  // namespace

#define LOWBIT_GGML_DOTS(name) {one<name<1>>, name<kGgmlDotRows>}
const GgmlDotKernels kGgmlDotKernels = {
    LOWBIT_GGML_DOTS(dot_q4_0), LOWBIT_GGML_DOTS(dot_q4_1), LOWBIT_GGML_DOTS(dot_q5_0), LOWBIT_GGML_DOTS(dot_q5_1),
    LOWBIT_GGML_DOTS(dot_q8_0), LOWBIT_GGML_DOTS(dot_iq4_nl), LOWBIT_GGML_DOTS(dot_q2_K), LOWBIT_GGML_DOTS(dot_q3_K),
    LOWBIT_GGML_DOTS(dot_q4_K), LOWBIT_GGML_DOTS(dot_q5_K), LOWBIT_GGML_DOTS(dot_q6_K),
    &kGgmlRepackKernels, quantize_act};
#undef LOWBIT_GGML_DOTS

}  // namespace lowbit::avx2
