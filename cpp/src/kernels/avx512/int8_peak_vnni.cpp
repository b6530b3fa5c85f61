// AVX-512 VNNI int8 dot chains for measure_int8_peak (lowbit/int8_peak.hpp).
#include <immintrin.h>

#include "lowbit/int8_peak.hpp"

namespace lowbit::avx512 {

// 8 chains, each with its own weight register (17 of the 32 zmm registers).
std::int64_t int8_peak_loop_vnni(std::int64_t iters, std::int32_t* sink) {
  __m512i a = _mm512_set1_epi8(3);
  __m512i b0 = _mm512_set1_epi8(-2), b1 = _mm512_set1_epi8(-1), b2 = _mm512_set1_epi8(1), b3 = _mm512_set1_epi8(2),
          b4 = _mm512_set1_epi8(3), b5 = _mm512_set1_epi8(4), b6 = _mm512_set1_epi8(5), b7 = _mm512_set1_epi8(6);
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
  for (std::int64_t i = 0; i < iters; ++i) {
    // why: the operands may change each round, so the products cannot be hoisted or shared
    asm volatile("" : "+v"(a), "+v"(b0), "+v"(b1), "+v"(b2), "+v"(b3), "+v"(b4), "+v"(b5), "+v"(b6), "+v"(b7));
    c0 = _mm512_dpbusd_epi32(c0, a, b0);
    c1 = _mm512_dpbusd_epi32(c1, a, b1);
    c2 = _mm512_dpbusd_epi32(c2, a, b2);
    c3 = _mm512_dpbusd_epi32(c3, a, b3);
    c4 = _mm512_dpbusd_epi32(c4, a, b4);
    c5 = _mm512_dpbusd_epi32(c5, a, b5);
    c6 = _mm512_dpbusd_epi32(c6, a, b6);
    c7 = _mm512_dpbusd_epi32(c7, a, b7);
  }
  const __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(c0, c1), _mm512_add_epi32(c2, c3)),
                                     _mm512_add_epi32(_mm512_add_epi32(c4, c5), _mm512_add_epi32(c6, c7)));
  *sink = _mm512_reduce_add_epi32(s);
  return iters * 8 * 64;
}

}  // namespace lowbit::avx512
