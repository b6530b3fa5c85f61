// AVX2 int8 dot chains for measure_int8_peak (lowbit/int8_peak.hpp).
#include <immintrin.h>

#include "lowbit/int8_peak.hpp"

namespace lowbit::avx2 {

// 4 chains, each with its own operand register (10 of the 16 ymm registers, no spills; more
// chains made GCC spill accumulators to the stack inside the loop).
std::int64_t int8_peak_loop(std::int64_t iters, std::int32_t* sink) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i a = _mm256_set1_epi8(3);
  __m256i b0 = _mm256_set1_epi8(-2), b1 = _mm256_set1_epi8(-1), b2 = _mm256_set1_epi8(1), b3 = _mm256_set1_epi8(2);
  __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0;
  for (std::int64_t i = 0; i < iters; ++i) {
    // why: the operands may change each round, so the products cannot be hoisted or shared
    asm volatile("" : "+x"(a), "+x"(b0), "+x"(b1), "+x"(b2), "+x"(b3));
    c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b0), ones));
    c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b1), ones));
    c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b2), ones));
    c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b3), ones));
  }
  const __m256i s = _mm256_add_epi32(_mm256_add_epi32(c0, c1), _mm256_add_epi32(c2, c3));
  *sink = _mm256_extract_epi32(s, 0);
  return iters * 4 * 32;
}

}  // namespace lowbit::avx2
