// AVX-512 grid kernels (compiled with -mavx512f/bw/vl/dq only for this file).
// Bit-identical to kernels/scalar, as the AVX2 variant; masked loads handle the tail.
#include <immintrin.h>

#include "lowbit/kernels.hpp"

namespace lowbit::avx512 {

namespace {

__mmask16 tail_mask(i64 left) {
  return left >= 16 ? static_cast<__mmask16>(0xffff) : static_cast<__mmask16>((1u << left) - 1u);
}

bool range(const float* x, i64 n, float* lo, float* hi) {
  const __m512 first = _mm512_set1_ps(x[0]);
  __m512 vmn = first, vmx = first, probe = _mm512_setzero_ps();
  for (i64 i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    // why: masked-off lanes load x[0], which cannot change the min/max
    const __m512 v = _mm512_mask_loadu_ps(first, m, x + i);
    probe = _mm512_add_ps(probe, _mm512_sub_ps(v, v));
    vmn = _mm512_min_ps(v, vmn);
    vmx = _mm512_max_ps(v, vmx);
  }
  *lo = _mm512_reduce_min_ps(vmn);
  *hi = _mm512_reduce_max_ps(vmx);
  return _mm512_cmp_ps_mask(probe, probe, _CMP_EQ_OQ) == 0xffff;
}

void quantize_codes(const float* x, i64 n, float scale, float zero, int maxq, std::uint8_t* codes) {
  const __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(zero);
  const __m512 v0 = _mm512_setzero_ps(), vq = _mm512_set1_ps(static_cast<float>(maxq));
  for (i64 i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    __m512 q = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), vs);
    q = _mm512_add_ps(_mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC), vz);
    q = _mm512_min_ps(_mm512_max_ps(q, v0), vq);
    _mm_mask_storeu_epi8(codes + i, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(q)));
  }
}

void dequantize_codes(const std::uint8_t* codes, i64 n, float scale, float zero, float* y) {
  const __m512 vs = _mm512_set1_ps(scale), vz = _mm512_set1_ps(zero);
  for (i64 i = 0; i < n; i += 16) {
    const __mmask16 m = tail_mask(n - i);
    const __m128i b = _mm_maskz_loadu_epi8(m, codes + i);
    const __m512 c = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
    _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(vs, _mm512_sub_ps(c, vz)));
  }
}

}  // namespace

const GridKernels kGridKernels = {range, quantize_codes, dequantize_codes};

}  // namespace lowbit::avx512
