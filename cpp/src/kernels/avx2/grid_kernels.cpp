// AVX2 grid kernels (compiled with -mavx2 -mfma -mf16c only for this file).
// Bit-identical to kernels/scalar: the same IEEE operations (min/max, division, round to
// nearest even) per element; only the order of the exact min/max reduction changes.
#include <immintrin.h>

#include <cmath>

#include "lowbit/kernels.hpp"

namespace lowbit::avx2 {

namespace {

float hmin(__m256 v) {
  __m128 m = _mm_min_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_min_ps(m, _mm_movehl_ps(m, m));
  m = _mm_min_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}
float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

bool range(const float* x, i64 n, float* lo, float* hi) {
  i64 i = 0;
  float mn = x[0], mx = x[0];
  bool finite = true;
  if (n >= 8) {
    __m256 vmn = _mm256_loadu_ps(x), vmx = vmn, probe = _mm256_setzero_ps();
    for (; i + 8 <= n; i += 8) {
      const __m256 v = _mm256_loadu_ps(x + i);
      probe = _mm256_add_ps(probe, _mm256_sub_ps(v, v));  // NaN iff some v is NaN/inf
      vmn = _mm256_min_ps(v, vmn);
      vmx = _mm256_max_ps(v, vmx);
    }
    mn = hmin(vmn);
    mx = hmax(vmx);
    // why: the movemask of (probe == probe) is 0xff only when no lane went NaN
    finite = _mm256_movemask_ps(_mm256_cmp_ps(probe, probe, _CMP_EQ_OQ)) == 0xff;
  }
  float probe_tail = 0.0f;
  for (; i < n; ++i) {
    const float v = x[i];
    probe_tail += v - v;
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  *lo = mn;
  *hi = mx;
  return finite && probe_tail == 0.0f;
}

void quantize_codes(const float* x, i64 n, float scale, float zero, int maxq, std::uint8_t* codes) {
  const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zero);
  const __m256 v0 = _mm256_setzero_ps(), vq = _mm256_set1_ps(static_cast<float>(maxq));
  i64 i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 q = _mm256_div_ps(_mm256_loadu_ps(x + i), vs);
    q = _mm256_add_ps(_mm256_round_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
    q = _mm256_min_ps(_mm256_max_ps(q, v0), vq);
    const __m256i qi = _mm256_cvtps_epi32(q);  // exact: q is integral in [0, 255]
    // pack 8 x int32 -> 8 x uint8
    const __m128i lo = _mm256_castsi256_si128(qi), hi = _mm256_extracti128_si256(qi, 1);
    const __m128i w16 = _mm_packus_epi32(lo, hi);
    const __m128i b8 = _mm_packus_epi16(w16, w16);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(codes + i), b8);
  }
  const float qmax = static_cast<float>(maxq);
  for (; i < n; ++i) {
    float q = std::nearbyint(x[i] / scale) + zero;
    q = q > 0.0f ? q : 0.0f;
    q = q < qmax ? q : qmax;
    codes[i] = static_cast<std::uint8_t>(q);
  }
}

void dequantize_codes(const std::uint8_t* codes, i64 n, float scale, float zero, float* y) {
  const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zero);
  i64 i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i b = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(codes + i));
    const __m256 c = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
    _mm256_storeu_ps(y + i, _mm256_mul_ps(vs, _mm256_sub_ps(c, vz)));
  }
  for (; i < n; ++i) y[i] = scale * (static_cast<float>(codes[i]) - zero);
}

}  // namespace

const GridKernels kGridKernels = {range, quantize_codes, dequantize_codes};

}  // namespace lowbit::avx2
