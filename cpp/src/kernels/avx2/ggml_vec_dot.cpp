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

inline float h2f(half h) { return fp16_to_fp32(h); }

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline __m256i loadu(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// 16 int16 pair sums of unsigned u (<= 63 or 128 as |w|) times signed a.
inline __m256i pairs_u(__m256i u, __m256i a) { return _mm256_maddubs_epi16(u, a); }
inline __m256i pairs_s(__m256i w, __m256i a) { return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w)); }
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

// ---- 32-element blocks ---------------------------------------------------------------------
float vec_dot_q4_0(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q4_0*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  __m256 acc = _mm256_setzero_ps();
  const __m256i off = _mm256_set1_epi8(8);
  for (i64 i = 0; i < n / QK4_0; ++i) {
    const __m256i w = _mm256_sub_epi8(nibbles16(x[i].qs), off);
    const __m256i p = sum4(pairs_s(w, loadu(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float vec_dot_q4_1(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q4_1*>(wv);
  const auto* y = static_cast<const block_q8_1*>(av);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  for (i64 i = 0; i < n / QK4_1; ++i) {
    const __m256i p = sum4(pairs_u(nibbles16(x[i].qs), loadu(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
    summs += h2f(x[i].m) * h2f(y[i].s);
  }
  return hsum(acc) + summs;
}

float vec_dot_q5_0(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q5_0*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  __m256 acc = _mm256_setzero_ps();
  const __m256i b16 = _mm256_set1_epi8(16);
  for (i64 i = 0; i < n / QK5_0; ++i) {
    const __m256i hi = _mm256_and_si256(bits_to_bytes(load_u32(x[i].qh)), b16);
    const __m256i w = _mm256_sub_epi8(_mm256_or_si256(nibbles16(x[i].qs), hi), b16);
    const __m256i p = sum4(pairs_s(w, loadu(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float vec_dot_q5_1(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q5_1*>(wv);
  const auto* y = static_cast<const block_q8_1*>(av);
  __m256 acc = _mm256_setzero_ps();
  float summs = 0.0f;
  const __m256i b16 = _mm256_set1_epi8(16);
  for (i64 i = 0; i < n / QK5_1; ++i) {
    const __m256i hi = _mm256_and_si256(bits_to_bytes(load_u32(x[i].qh)), b16);
    const __m256i p = sum4(pairs_u(_mm256_or_si256(nibbles16(x[i].qs), hi), loadu(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
    summs += h2f(x[i].m) * h2f(y[i].s);
  }
  return hsum(acc) + summs;
}

float vec_dot_q8_0(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q8_0*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  __m256 acc = _mm256_setzero_ps();
  for (i64 i = 0; i < n / QK8_0; ++i) {
    const __m256i p = sum4(pairs_s(loadu(x[i].qs), loadu(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

float vec_dot_iq4_nl(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_iq4_nl*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kvalues_iq4nl));
  const __m256i table = _mm256_inserti128_si256(_mm256_castsi128_si256(t), t, 1);
  __m256 acc = _mm256_setzero_ps();
  for (i64 i = 0; i < n / QK4_NL; ++i) {
    const __m256i w = _mm256_shuffle_epi8(table, nibbles16(x[i].qs));
    const __m256i p = sum4(pairs_s(w, loadu(y[i].qs)));
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d)), _mm256_cvtepi32_ps(p), acc);
  }
  return hsum(acc);
}

// ---- k-quants ------------------------------------------------------------------------------
// int16 scales for one 32-chunk whose halves (16 elements each) have scales s0, s1.
inline __m256i scales2(int s0, int s1) {
  return _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_set1_epi16(static_cast<short>(s0))),
                                 _mm_set1_epi16(static_cast<short>(s1)), 1);
}

float vec_dot_q2_K(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q2_K*>(wv);
  const auto* y = static_cast<const block_q8_K*>(av);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  const __m256i m3 = _mm256_set1_epi8(3);
  for (i64 i = 0; i < n / QK_K; ++i) {
    const std::uint8_t* sc = x[i].scales;
    std::int32_t summs = 0;
    for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
    __m256i isum = _mm256_setzero_si256();
    for (int k = 0; k < 2; ++k) {
      const __m256i q2 = loadu(x[i].qs + 32 * k);
      for (int s = 0; s < 4; ++s) {
        const int c = 4 * k + s;
        const __m256i w = _mm256_and_si256(_mm256_srli_epi16(q2, 2 * s), m3);
        const __m256i p = pairs_u(w, loadu(y[i].qs + 32 * c));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scales2(sc[2 * c] & 0xf, sc[2 * c + 1] & 0xf)));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(x[i].d)), _mm256_cvtepi32_ps(isum), acc);
    mins += (y[i].d * h2f(x[i].dmin)) * static_cast<float>(summs);
  }
  return hsum(acc) - mins;
}

inline void q3_K_scales(const std::uint8_t* s, int out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
    const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    out[j] = (lo | (hi << 4)) - 32;
  }
}

float vec_dot_q3_K(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q3_K*>(wv);
  const auto* y = static_cast<const block_q8_K*>(av);
  __m256 acc = _mm256_setzero_ps();
  const __m256i m3 = _mm256_set1_epi8(3), four = _mm256_set1_epi8(4), zero = _mm256_setzero_si256();
  for (i64 i = 0; i < n / QK_K; ++i) {
    int sc[16];
    q3_K_scales(x[i].scales, sc);
    const __m256i hm = loadu(x[i].hmask);
    __m256i isum = _mm256_setzero_si256();
    for (int k = 0; k < 2; ++k) {
      const __m256i q3 = loadu(x[i].qs + 32 * k);
      for (int s = 0; s < 4; ++s) {
        const int c = 4 * k + s;
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q3, 2 * s), m3);
        const __m256i bit = _mm256_and_si256(hm, _mm256_set1_epi8(static_cast<char>(1 << c)));
        const __m256i sub = _mm256_and_si256(_mm256_cmpeq_epi8(bit, zero), four);  // 4 where the bit is clear
        const __m256i p = pairs_s(_mm256_sub_epi8(lo, sub), loadu(y[i].qs + 32 * c));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scales2(sc[2 * c], sc[2 * c + 1])));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
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

template <bool Five>
float vec_dot_q45_K(i64 n, const void* wv, const void* av) {
  const auto* y = static_cast<const block_q8_K*>(av);
  __m256 acc = _mm256_setzero_ps();
  float mins = 0.0f;
  const __m256i m4 = _mm256_set1_epi8(0x0f), b16 = _mm256_set1_epi8(16), zero = _mm256_setzero_si256();
  for (i64 i = 0; i < n / QK_K; ++i) {
    const std::uint8_t *scales, *qs, *qhp = nullptr;
    half xd, xdmin;
    if constexpr (Five) {
      const auto& b = static_cast<const block_q5_K*>(wv)[i];
      scales = b.scales, qs = b.qs, qhp = b.qh, xd = b.d, xdmin = b.dmin;
    } else {
      const auto& b = static_cast<const block_q4_K*>(wv)[i];
      scales = b.scales, qs = b.qs, xd = b.d, xdmin = b.dmin;
    }
    __m256i qh = zero;
    if constexpr (Five) qh = loadu(qhp);
    __m256i isum = zero;
    std::int32_t summ = 0;
    for (int k = 0; k < 4; ++k) {
      const __m256i q = loadu(qs + 32 * k);
      for (int h = 0; h < 2; ++h) {
        const int j = 2 * k + h;
        int sc, mn;
        scale_min_k4(j, scales, &sc, &mn);
        __m256i w = _mm256_and_si256(h ? _mm256_srli_epi16(q, 4) : q, m4);
        if constexpr (Five) {
          const __m256i bit = _mm256_and_si256(qh, _mm256_set1_epi8(static_cast<char>(1 << j)));
          w = _mm256_or_si256(w, _mm256_andnot_si256(_mm256_cmpeq_epi8(bit, zero), b16));
        }
        const __m256i p = pairs_u(w, loadu(y[i].qs + 32 * j));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_set1_epi16(static_cast<short>(sc))));
        summ += mn * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(y[i].d * h2f(xd)), _mm256_cvtepi32_ps(isum), acc);
    mins += (y[i].d * h2f(xdmin)) * static_cast<float>(summ);
  }
  return hsum(acc) - mins;
}

float vec_dot_q4_K(i64 n, const void* w, const void* a) { return vec_dot_q45_K<false>(n, w, a); }
float vec_dot_q5_K(i64 n, const void* w, const void* a) { return vec_dot_q45_K<true>(n, w, a); }

float vec_dot_q6_K(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q6_K*>(wv);
  const auto* y = static_cast<const block_q8_K*>(av);
  __m256 acc = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0f), m3 = _mm256_set1_epi8(3), b32 = _mm256_set1_epi8(32);
  for (i64 i = 0; i < n / QK_K; ++i) {
    __m256i isum = _mm256_setzero_si256();
    for (int hf = 0; hf < 2; ++hf) {
      const __m256i ql0 = loadu(x[i].ql + 64 * hf), ql1 = loadu(x[i].ql + 64 * hf + 32);
      const __m256i qh = loadu(x[i].qh + 32 * hf);
      for (int q = 0; q < 4; ++q) {
        const int c = 4 * hf + q;
        const __m256i ql = q & 1 ? ql1 : ql0;
        const __m256i lo = _mm256_and_si256(q >> 1 ? _mm256_srli_epi16(ql, 4) : ql, m4);
        const __m256i hi = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2 * q), m3), 4);
        const __m256i w = _mm256_sub_epi8(_mm256_or_si256(lo, hi), b32);
        const __m256i p = pairs_s(w, loadu(y[i].qs + 32 * c));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scales2(x[i].scales[2 * c], x[i].scales[2 * c + 1])));
      }
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(h2f(x[i].d) * y[i].d), _mm256_cvtepi32_ps(isum), acc);
  }
  return hsum(acc);
}

}  // namespace

const GgmlDotKernels kGgmlDotKernels = {vec_dot_q4_0, vec_dot_q4_1, vec_dot_q5_0, vec_dot_q5_1,
                                        vec_dot_q8_0, vec_dot_iq4_nl, vec_dot_q2_K, vec_dot_q3_K,
                                        vec_dot_q4_K, vec_dot_q5_K, vec_dot_q6_K};

}  // namespace lowbit::avx2
