// AVX2 lane kernels of ggml_lanes.hpp (compiled with -mavx2; -ffp-contract=off keeps every
// multiply and add separately rounded, as in the scalar reference).
#include <immintrin.h>

#include <cmath>
#include <cstring>

#include "ggml_lanes.hpp"
#include "lowbit/ggml_blocks.hpp"
#include "lowbit/kernels.hpp"

namespace lowbit::ggml::lanes {

bool enabled() { return active_isa() >= Isa::Avx2; }

namespace {

// ggml's nearest_int on 8 lanes: the same float add and bit arithmetic.
inline __m256i nearest_int8(__m256 f) {
  const __m256 v = _mm256_add_ps(f, _mm256_set1_ps(12582912.f));
  const __m256i i = _mm256_castps_si256(v);
  return _mm256_sub_epi32(_mm256_and_si256(i, _mm256_set1_epi32(0x007fffff)), _mm256_set1_epi32(0x00400000));
}
inline __m256i clamp_i32(__m256i v, int lo, int hi) {
  return _mm256_max_epi32(_mm256_set1_epi32(lo), _mm256_min_epi32(_mm256_set1_epi32(hi), v));
}
inline __m256 sel(__m256 mask, __m256 if_true, __m256 if_false) { return _mm256_blendv_ps(if_false, if_true, mask); }
inline __m256i seli(__m256 mask, __m256i if_true, __m256i if_false) {
  return _mm256_castps_si256(
      _mm256_blendv_ps(_mm256_castsi256_ps(if_false), _mm256_castsi256_ps(if_true), mask));
}
inline __m256 fabs8(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }
inline __m256 gt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
inline __m256 lt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }

constexpr int kMaxN = 32;

// kvalues_iq4nl (ggml_blocks.hpp) as floats, for the in-register table lookups
alignas(32) constexpr float kvalues_f[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                             1,    13,   25,  38,  53,  69,  89,  113};

struct Transposed {
  __m256 x[kMaxN], w[kMaxN];
};

void load_lanes(int n, int stride, const float* x, const float* w, Transposed& t) {
  const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(stride));
  for (int i = 0; i < n; ++i) {
    t.x[i] = _mm256_i32gather_ps(x + i, idx, 4);
    t.w[i] = _mm256_i32gather_ps(w + i, idx, 4);
  }
}

template <class T>
void store_codes(int n, int stride, const __m256i* codes, T* L) {
  alignas(32) std::int32_t lane[8];
  for (int i = 0; i < n; ++i) {
    _mm256_store_si256(reinterpret_cast<__m256i*>(lane), codes[i]);
    for (int j = 0; j < 8; ++j) L[j * stride + i] = static_cast<T>(lane[j]);
  }
}

}  // namespace

void qkx_quants8(int n, int stride, int nmax, const float* xp, const float* wp, std::uint8_t* Lp, float* scale_out,
                 float* the_min_out, float rmin, float rdelta, int nstep, bool use_mad, bool qkx3) {
  Transposed t;
  load_lanes(n, stride, xp, wp, t);
  const __m256* x = t.x;
  const __m256* w = t.w;
  __m256 mn = x[0], mx = x[0], sum_w = w[0], sum_x = _mm256_mul_ps(w[0], x[0]);
  for (int i = 1; i < n; ++i) {
    mn = sel(lt(x[i], mn), x[i], mn);
    mx = sel(gt(x[i], mx), x[i], mx);
    sum_w = _mm256_add_ps(sum_w, w[i]);
    sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(w[i], x[i]));
  }
  const __m256 zero = _mm256_setzero_ps();
  mn = sel(gt(mn, zero), zero, mn);
  const __m256 degenerate = qkx3 ? _mm256_cmp_ps(mx, mn, _CMP_LE_OQ) : _mm256_cmp_ps(mx, mn, _CMP_EQ_OQ);
  const __m256 min0 = mn;
  const __m256 fnmax = _mm256_set1_ps(static_cast<float>(nmax));
  __m256 iscale = _mm256_div_ps(fnmax, _mm256_sub_ps(mx, mn));
  __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
  __m256i L[kMaxN], Laux[kMaxN];
  __m256 best = zero;
  for (int i = 0; i < n; ++i) {
    L[i] = clamp_i32(nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], mn))), 0, nmax);
    __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(L[i])), mn), x[i]);
    diff = use_mad ? fabs8(diff) : _mm256_mul_ps(diff, diff);
    best = _mm256_add_ps(best, _mm256_mul_ps(w[i], diff));
  }
  if (nstep >= 1) {
    for (int is = 0; is <= nstep; ++is) {
      const float num = rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax);
      iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(mx, mn));  // min: the best so far
      __m256 sum_l = zero, sum_l2 = zero, sum_xl = zero;
      for (int i = 0; i < n; ++i) {
        __m256i l;
        if (qkx3) {
          // v > 0 ? nearest_int(MIN(v, nmax)) : 0
          const __m256 v = _mm256_mul_ps(iscale, _mm256_sub_ps(x[i], mn));
          const __m256 vc = sel(lt(v, fnmax), v, fnmax);
          l = _mm256_and_si256(nearest_int8(vc), _mm256_castps_si256(gt(v, zero)));
        } else {
          l = clamp_i32(nearest_int8(_mm256_mul_ps(iscale, _mm256_sub_ps(x[i], mn))), 0, nmax);
        }
        Laux[i] = l;
        const __m256 fl = _mm256_cvtepi32_ps(l);
        const __m256 wl = _mm256_mul_ps(w[i], fl);
        sum_l = _mm256_add_ps(sum_l, wl);
        sum_l2 = _mm256_add_ps(sum_l2, _mm256_mul_ps(wl, fl));
        sum_xl = _mm256_add_ps(sum_xl, _mm256_mul_ps(wl, x[i]));
      }
      const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sum_l2), _mm256_mul_ps(sum_l, sum_l));
      const __m256 dpos = gt(D, zero);
      if (_mm256_testz_ps(dpos, dpos)) continue;
      __m256 this_scale = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_w, sum_xl), _mm256_mul_ps(sum_x, sum_l)), D);
      __m256 this_min = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sum_l2, sum_x), _mm256_mul_ps(sum_l, sum_xl)), D);
      const __m256 mpos = gt(this_min, zero);
      this_min = sel(mpos, zero, this_min);
      this_scale = sel(mpos, _mm256_div_ps(sum_xl, sum_l2), this_scale);
      __m256 cur = zero;
      for (int i = 0; i < n; ++i) {
        __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(this_scale, _mm256_cvtepi32_ps(Laux[i])), this_min), x[i]);
        diff = use_mad ? fabs8(diff) : _mm256_mul_ps(diff, diff);
        cur = _mm256_add_ps(cur, _mm256_mul_ps(w[i], diff));
      }
      const __m256 take = _mm256_and_ps(dpos, lt(cur, best));
      if (_mm256_testz_ps(take, take)) continue;
      for (int i = 0; i < n; ++i) L[i] = seli(take, Laux[i], L[i]);
      best = sel(take, cur, best);
      scale = sel(take, this_scale, scale);
      mn = sel(take, this_min, mn);
    }
  }
  // degenerate blocks (max == min): codes 0, scale 0, the_min = -min
  for (int i = 0; i < n; ++i) L[i] = seli(degenerate, _mm256_setzero_si256(), L[i]);
  scale = sel(degenerate, zero, scale);
  mn = sel(degenerate, min0, mn);
  _mm256_storeu_ps(scale_out, scale);
  _mm256_storeu_ps(the_min_out, _mm256_xor_ps(mn, _mm256_set1_ps(-0.0f)));  // -min (keeps -0.0)
  store_codes(n, stride, L, Lp);
}

void qx_quants8(int n, int stride, int nmax, const float* xp, const float* wp, std::int8_t* Lp, float* scale_out) {
  Transposed t;
  load_lanes(n, stride, xp, wp, t);
  const __m256* x = t.x;
  const __m256* w = t.w;
  const __m256 zero = _mm256_setzero_ps();
  __m256 mx = zero, amax = zero;
  for (int i = 0; i < n; ++i) {
    const __m256 ax = fabs8(x[i]);
    const __m256 bigger = gt(ax, amax);
    amax = sel(bigger, ax, amax);
    mx = sel(bigger, x[i], mx);
  }
  const __m256 all_zero = lt(amax, _mm256_set1_ps(1e-15f));
  const __m256i off = _mm256_set1_epi32(nmax);
  __m256 iscale = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(-nmax)), mx);
  __m256i L[kMaxN];
  __m256 sumlx = zero, suml2 = zero;
  for (int i = 0; i < n; ++i) {
    const __m256i l = clamp_i32(nearest_int8(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1);
    L[i] = _mm256_add_epi32(l, off);
    const __m256 fl = _mm256_cvtepi32_ps(l);
    sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), fl));
    suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], fl), fl));
  }
  // scale = suml2 ? sumlx/suml2 : 0 (NaN counts as true)
  __m256 scale = sel(_mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ), _mm256_div_ps(sumlx, suml2), zero);
  __m256 best = _mm256_mul_ps(scale, sumlx);
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    const float num = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is));
    iscale = _mm256_div_ps(_mm256_set1_ps(num), mx);
    __m256i Lc[kMaxN];
    sumlx = suml2 = zero;
    for (int i = 0; i < n; ++i) {
      const __m256i l = clamp_i32(nearest_int8(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1);
      Lc[i] = l;
      const __m256 fl = _mm256_cvtepi32_ps(l);
      sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), fl));
      suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], fl), fl));
    }
    const __m256 take =
        _mm256_and_ps(gt(suml2, zero), gt(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2)));
    if (_mm256_testz_ps(take, take)) continue;
    for (int i = 0; i < n; ++i) L[i] = seli(take, _mm256_add_epi32(Lc[i], off), L[i]);
    const __m256 s = _mm256_div_ps(sumlx, suml2);
    scale = sel(take, s, scale);
    best = sel(take, _mm256_mul_ps(s, sumlx), best);
  }
  for (int i = 0; i < n; ++i) L[i] = seli(all_zero, _mm256_setzero_si256(), L[i]);
  scale = sel(all_zero, zero, scale);
  _mm256_storeu_ps(scale_out, scale);
  store_codes(n, stride, L, Lp);
}

// ----------------------------------------------------------------- legacy 32-blocks
namespace {

inline float hmax8(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline float hmin8(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
inline bool has_nan(const __m256* v) {
  __m256 u = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) u = _mm256_or_ps(u, _mm256_cmp_ps(v[k], v[k], _CMP_UNORD_Q));
  return !_mm256_testz_ps(u, u);
}
// C's (int8_t)f on x86 (cvttss2si, low byte), sign-extended to 32 bits.
inline __m256i cvtt_i8_lanes(__m256 f) {
  return _mm256_srai_epi32(_mm256_slli_epi32(_mm256_cvttps_epi32(f), 24), 24);
}
// The low byte of each 32-bit lane of v[0..3] -> 32 bytes in order (exact truncation: mask,
// then the saturating packs cannot saturate).
inline void store_low_bytes(const __m256i* v, std::uint8_t* out) {
  const __m256i m = _mm256_set1_epi32(0xff);
  const __m256i p01 = _mm256_packus_epi32(_mm256_and_si256(v[0], m), _mm256_and_si256(v[1], m));
  const __m256i p23 = _mm256_packus_epi32(_mm256_and_si256(v[2], m), _mm256_and_si256(v[3], m));
  const __m256i b = _mm256_packus_epi16(p01, p23);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out),
                      _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
}

}  // namespace

bool sym_codes32(const float* x, int nmax, float* d_out, std::uint8_t* codes) {
  __m256 v[4], amax = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(fabs8(v[k]), amax);
  }
  if (has_nan(v)) return false;
  const float a = hmax8(amax);
  if (a == 0) return false;
  // the first element of largest magnitude, as the scalar scan finds it
  const __m256 va = _mm256_set1_ps(a);
  float max = 0;
  for (int k = 0; k < 4; ++k) {
    const int hits = _mm256_movemask_ps(_mm256_cmp_ps(fabs8(v[k]), va, _CMP_EQ_OQ));
    if (hits) {
      max = x[8 * k + __builtin_ctz(static_cast<unsigned>(hits))];
      break;
    }
  }
  const float d = max / static_cast<float>(-nmax);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  *d_out = d;
  const __m256 vid = _mm256_set1_ps(id), off = _mm256_set1_ps(static_cast<float>(nmax) + 0.5f);
  const __m256i top = _mm256_set1_epi32(2 * nmax - 1);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = _mm256_min_epi32(top, cvtt_i8_lanes(_mm256_add_ps(_mm256_mul_ps(v[k], vid), off)));
  store_low_bytes(q, codes);
  return true;
}

bool asym_codes32(const float* x, int levels, bool clamp15, float* d_out, float* m_out, std::uint8_t* codes) {
  __m256 v[4];
  for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(x + 8 * k);
  if (has_nan(v)) return false;
  __m256 mn = v[0], mx = v[0];
  for (int k = 1; k < 4; ++k) {
    mn = _mm256_min_ps(v[k], mn);
    mx = _mm256_max_ps(v[k], mx);
  }
  const float lo = hmin8(mn), hi = hmax8(mx);
  if (lo == 0 || hi == 0) return false;  // the sign of a zero extreme depends on scan order
  const float d = (hi - lo) / static_cast<float>(levels);
  const float id = d != 0 ? 1.0f / d : 0.0f;
  *d_out = d;
  *m_out = lo;
  const __m256 vid = _mm256_set1_ps(id), vlo = _mm256_set1_ps(lo), half = _mm256_set1_ps(0.5f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    const __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(v[k], vlo), vid), half);
    q[k] = clamp15 ? _mm256_min_epi32(_mm256_set1_epi32(15), cvtt_i8_lanes(f)) : _mm256_cvttps_epi32(f);
  }
  store_low_bytes(q, codes);
  return true;
}

bool q8_codes32(const float* x, float* d_out, std::int8_t* codes) {
  __m256 v[4], amax = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    amax = _mm256_max_ps(amax, fabs8(v[k]));
  }
  if (has_nan(v)) return false;
  const float d = hmax8(amax) / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  *d_out = d;
  const __m256 vid = _mm256_set1_ps(id), half = _mm256_set1_ps(0.5f), one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) {
    // roundf: half away from zero. t = trunc(f); f - t is exact; step away when |f - t| >= 0.5
    const __m256 f = _mm256_mul_ps(v[k], vid);
    const __m256 t = _mm256_round_ps(f, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 away = _mm256_cmp_ps(fabs8(_mm256_sub_ps(f, t)), half, _CMP_GE_OQ);
    const __m256 r = _mm256_add_ps(t, _mm256_and_ps(away, _mm256_or_ps(one, _mm256_and_ps(f, sign))));
    q[k] = _mm256_cvttps_epi32(r);
  }
  store_low_bytes(q, reinterpret_cast<std::uint8_t*>(codes));
  return true;
}

// ----------------------------------------------------------------- Q3_K / IQ4_NL searches
void q3_quants8(int n, int stride, int nmax, const float* xp, std::int8_t* Lp, float* scale_out) {
  Transposed t;
  load_lanes(n, stride, xp, xp, t);
  const __m256* x = t.x;
  const __m256 zero = _mm256_setzero_ps();
  __m256 mx = zero, amax = zero;
  for (int i = 0; i < n; ++i) {
    const __m256 ax = fabs8(x[i]);
    const __m256 bigger = gt(ax, amax);
    amax = sel(bigger, ax, amax);
    mx = sel(bigger, x[i], mx);
  }
  const __m256 all_zero = lt(amax, _mm256_set1_ps(1e-15f));
  const __m256 iscale = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(-nmax)), mx);
  __m256 w[kMaxN];
  __m256i L[kMaxN];
  __m256 sumlx = zero, suml2 = zero;
  for (int i = 0; i < n; ++i) {
    L[i] = clamp_i32(nearest_int8(_mm256_mul_ps(iscale, x[i])), -nmax, nmax - 1);
    w[i] = _mm256_mul_ps(x[i], x[i]);
    const __m256 fl = _mm256_cvtepi32_ps(L[i]);
    sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(_mm256_mul_ps(w[i], x[i]), fl));
    suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], fl), fl));
  }
  __m256 active = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  for (int itry = 0; itry < 5; ++itry) {
    __m256 changed = zero;
    for (int i = 0; i < n; ++i) {
      const __m256 fL = _mm256_cvtepi32_ps(L[i]);
      const __m256 wx = _mm256_mul_ps(w[i], x[i]);
      const __m256 slx = _mm256_sub_ps(sumlx, _mm256_mul_ps(wx, fL));
      const __m256 sl2 = _mm256_sub_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], fL), fL));
      const __m256i new_l =
          clamp_i32(nearest_int8(_mm256_div_ps(_mm256_mul_ps(x[i], sl2), slx)), -nmax, nmax - 1);
      const __m256 fn = _mm256_cvtepi32_ps(new_l);
      const __m256 slx2 = _mm256_add_ps(slx, _mm256_mul_ps(wx, fn));
      const __m256 sl22 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w[i], fn), fn));
      const __m256 differs = _mm256_castsi256_ps(
          _mm256_xor_si256(_mm256_cmpeq_epi32(new_l, L[i]), _mm256_set1_epi32(-1)));
      const __m256 better = gt(_mm256_mul_ps(_mm256_mul_ps(slx2, slx2), suml2),
                               _mm256_mul_ps(_mm256_mul_ps(sumlx, sumlx), sl22));
      const __m256 take = _mm256_and_ps(_mm256_and_ps(active, gt(slx, zero)),
                                        _mm256_and_ps(differs, _mm256_and_ps(gt(sl22, zero), better)));
      L[i] = seli(take, new_l, L[i]);
      sumlx = sel(take, slx2, sumlx);
      suml2 = sel(take, sl22, suml2);
      changed = _mm256_or_ps(changed, take);
    }
    active = _mm256_and_ps(active, changed);  // a block stops at its first pass without a change
    if (_mm256_testz_ps(active, active)) break;
  }
  const __m256i off = _mm256_set1_epi32(nmax);
  for (int i = 0; i < n; ++i) L[i] = seli(all_zero, _mm256_setzero_si256(), _mm256_add_epi32(L[i], off));
  const __m256 scale = sel(gt(suml2, zero), _mm256_div_ps(sumlx, suml2), zero);
  _mm256_storeu_ps(scale_out, sel(all_zero, zero, scale));
  store_codes(n, stride, L, Lp);
}

namespace {
// IQ4_NL's best_index on 8 lanes: binary search over the sorted table == count of levels
// 1..14 at or below x, then the nearer of the two neighbours (ties up); NaN -> 15 like the
// scalar search.
inline __m256i best_index_iq4nl8(__m256 x) {
  __m256i ml = _mm256_setzero_si256();
  for (int k = 1; k < 15; ++k)
    ml = _mm256_sub_epi32(ml, _mm256_castps_si256(_mm256_cmp_ps(
                                  _mm256_set1_ps(static_cast<float>(kvalues_iq4nl[k])), x, _CMP_LE_OQ)));
  const __m256i mu = _mm256_add_epi32(ml, _mm256_set1_epi32(1));
  const __m256 table_lo = _mm256_loadu_ps(kvalues_f), table_hi = _mm256_loadu_ps(kvalues_f + 8);
  // gather val[ml], val[mu] from the 16-entry float table (two permutes and a blend)
  auto lookup = [&](__m256i idx) {
    const __m256 lo = _mm256_permutevar8x32_ps(table_lo, idx), hi = _mm256_permutevar8x32_ps(table_hi, idx);
    return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
  };
  const __m256 below = lt(_mm256_sub_ps(x, lookup(ml)), _mm256_sub_ps(lookup(mu), x));
  __m256i r = seli(below, ml, mu);
  return seli(_mm256_cmp_ps(x, x, _CMP_UNORD_Q), _mm256_set1_epi32(15), r);
}
inline __m256 level8(__m256i idx) {
  const __m256 lo = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kvalues_f), idx);
  const __m256 hi = _mm256_permutevar8x32_ps(_mm256_loadu_ps(kvalues_f + 8), idx);
  return _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}
}  // namespace

void iq4_nl_blocks8(const float* xp, const float* qwp, float* scale_out, std::uint8_t* Lp) {
  Transposed t;
  load_lanes(32, 32, xp, qwp ? qwp : xp, t);
  const __m256* x = t.x;
  const __m256 zero = _mm256_setzero_ps();
  __m256 sigma2 = zero;
  for (int i = 0; i < 32; ++i) sigma2 = _mm256_add_ps(sigma2, _mm256_mul_ps(x[i], x[i]));
  sigma2 = _mm256_mul_ps(sigma2, _mm256_set1_ps(2.f / 32));
  __m256 w[32];
  for (int i = 0; i < 32; ++i) {
    const __m256 x2 = _mm256_mul_ps(x[i], x[i]);
    w[i] = qwp ? _mm256_mul_ps(t.w[i], _mm256_sqrt_ps(_mm256_add_ps(sigma2, x2))) : x2;
  }
  __m256 mx = zero, amax = zero;
  for (int i = 0; i < 32; ++i) {
    const __m256 ax = fabs8(x[i]);
    const __m256 bigger = gt(ax, amax);
    amax = sel(bigger, ax, amax);
    mx = sel(bigger, x[i], mx);
  }
  const __m256 all_zero = lt(amax, _mm256_set1_ps(1e-15f));
  const float v0 = static_cast<float>(kvalues_iq4nl[0]);
  __m256 d = _mm256_div_ps(_mm256_xor_ps(mx, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(v0));  // -max/values[0]
  __m256 id = _mm256_div_ps(_mm256_set1_ps(1.0f), d);
  __m256 sumqx = zero, sumq2 = zero;
  for (int i = 0; i < 32; ++i) {
    const __m256 q = level8(best_index_iq4nl8(_mm256_mul_ps(id, x[i])));
    const __m256 wq = _mm256_mul_ps(w[i], q);
    sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, x[i]));
    sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
  }
  d = sel(gt(sumq2, zero), _mm256_div_ps(sumqx, sumq2), zero);
  __m256 best = _mm256_mul_ps(d, sumqx);
  for (int itry = -7; itry <= 7; ++itry) {
    id = _mm256_div_ps(_mm256_set1_ps(static_cast<float>(itry) + v0), mx);
    sumqx = sumq2 = zero;
    for (int i = 0; i < 32; ++i) {
      const __m256 q = level8(best_index_iq4nl8(_mm256_mul_ps(id, x[i])));
      const __m256 wq = _mm256_mul_ps(w[i], q);
      sumqx = _mm256_add_ps(sumqx, _mm256_mul_ps(wq, x[i]));
      sumq2 = _mm256_add_ps(sumq2, _mm256_mul_ps(wq, q));
    }
    const __m256 take =
        _mm256_and_ps(gt(sumq2, zero), gt(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2)));
    const __m256 dn = _mm256_div_ps(sumqx, sumq2);
    d = sel(take, dn, d);
    best = sel(take, _mm256_mul_ps(dn, sumqx), best);
  }
  const __m256 scale = sel(all_zero, zero, d);
  _mm256_storeu_ps(scale_out, scale);
  const __m256 inv = sel(_mm256_cmp_ps(scale, zero, _CMP_NEQ_UQ), _mm256_div_ps(_mm256_set1_ps(1.0f), scale), zero);
  __m256i L[32];
  for (int i = 0; i < 32; ++i) L[i] = best_index_iq4nl8(_mm256_mul_ps(inv, x[i]));
  store_codes(32, 32, L, Lp);
}

void requantize(int n, const float* x, float dm, float d, int lo, int hi, int off, std::uint8_t* L) {
  const __m256 vdm = _mm256_set1_ps(dm), vd = _mm256_set1_ps(d);
  __m256i q[4];
  for (int i = 0; i < n; i += 32) {
    for (int k = 0; k < 4; ++k) {
      if (i + 8 * k >= n) {
        q[k] = _mm256_setzero_si256();
        continue;
      }
      const __m256 v = _mm256_loadu_ps(x + i + 8 * k);
      // (x + 0)/d for the symmetric types: only -0.0 becomes +0.0, and both round to code 0
      q[k] = _mm256_add_epi32(clamp_i32(nearest_int8(_mm256_div_ps(_mm256_add_ps(v, vdm), vd)), lo, hi),
                              _mm256_set1_epi32(off));
    }
    alignas(32) std::uint8_t tmp[32];
    store_low_bytes(q, tmp);
    std::memcpy(L + i, tmp, static_cast<std::size_t>(n - i < 32 ? n - i : 32));
  }
}

void pack_nibbles32(const std::uint8_t* codes, std::uint8_t* qs) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16));
  const __m128i up = _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8(static_cast<char>(0xF0)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm_or_si128(lo, up));
}

void pack_5bit32(const std::uint8_t* codes, std::uint8_t* qs, std::uint8_t* qh) {
  const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes));
  const __m128i hi = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + 16));
  const __m128i low4 = _mm_and_si128(lo, _mm_set1_epi8(0x0F));
  const __m128i up = _mm_and_si128(_mm_slli_epi16(hi, 4), _mm_set1_epi8(static_cast<char>(0xF0)));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm_or_si128(low4, up));
  // bit 4 of every byte to bit 7 (a 16-bit shift moves no other bit into bit 7 of a byte)
  const __m256i all = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(codes));
  const std::uint32_t bits = static_cast<std::uint32_t>(_mm256_movemask_epi8(_mm256_slli_epi16(all, 3)));
  std::memcpy(qh, &bits, 4);
}

namespace {
// Byte-wise shifts through 16-bit shifts: exact while every byte holds at most the bits that
// stay inside it (the callers mask to 2 bits or 1 bit first).
inline void pack_2bit_planes(const __m256i* v, std::uint8_t* qs) {
  const __m256i m3 = _mm256_set1_epi8(3);
  for (int h = 0; h < 2; ++h) {
    const __m256i a = _mm256_and_si256(v[4 * h], m3), b = _mm256_and_si256(v[4 * h + 1], m3);
    const __m256i c = _mm256_and_si256(v[4 * h + 2], m3), d = _mm256_and_si256(v[4 * h + 3], m3);
    const __m256i r = _mm256_or_si256(_mm256_or_si256(a, _mm256_slli_epi16(b, 2)),
                                      _mm256_or_si256(_mm256_slli_epi16(c, 4), _mm256_slli_epi16(d, 6)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs + 32 * h), r);
  }
}
}  // namespace

void pack_q3_K(const std::int8_t* L, std::uint8_t* hmask, std::uint8_t* qs) {
  __m256i v[8];
  __m256i hm = _mm256_setzero_si256();
  const __m256i one = _mm256_set1_epi8(1);
  for (int k = 0; k < 8; ++k) {
    v[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L + 32 * k));
    const __m256i bit = _mm256_and_si256(_mm256_srli_epi16(v[k], 2), one);  // L > 3 for L in [0, 7]
    hm = _mm256_or_si256(hm, _mm256_sll_epi16(bit, _mm_cvtsi32_si128(k)));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(hmask), hm);
  pack_2bit_planes(v, qs);
}

void pack_q2_K(const std::uint8_t* L, std::uint8_t* qs) {
  __m256i v[8];
  for (int k = 0; k < 8; ++k) v[k] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(L + 32 * k));
  pack_2bit_planes(v, qs);
}

}  // namespace lowbit::ggml::lanes
