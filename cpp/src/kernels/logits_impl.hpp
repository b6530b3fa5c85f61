// The per-row sums behind token_logprobs and kl_divergence (ops/logits.cpp), written once and
// compiled once per ISA. Each kernels/<isa>/logits.cpp defines LOWBIT_LOGITS_NS <isa> before
// including this file. A vocabulary-wide row (49152 logits for SmolLM2) is exponentiated per
// scored token, so the exp is exp_nonpositive's double polynomial, not a libm call per element.
//
// The definition, the same for every ISA (only the exp's multiply-adds fuse where the ISA has
// FMA): e[j] = exp_nonpositive(double(r[j]) - m) in double (within a few ulp of exp), summed in
// 8 striped lanes (lane k takes j = k mod 8 of the whole blocks of 8, then the tail j = V8 + k),
// the lanes then added in one fixed order. Plain loops over 8-lane arrays: the compiler
// vectorises them without reordering a single addition, so the results do not depend on the
// thread count (a row is one thread's work).
#include <cstdint>
#include <limits>

#ifdef __AVX2__
#include <immintrin.h>
#endif

#include "lowbit/ops.hpp"
#include "exp_poly.hpp"

namespace lowbit::LOWBIT_LOGITS_NS {

namespace {

constexpr int kLanes = 8;

double lanes_total(const double* a) {
  return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
}

// Index of the row's largest logit, the first one on ties; the first NaN if the row has one (as
// numpy.argmax). Per lane: its largest value and the first index reaching it (strict >), and
// whether it saw a NaN; then the lanes' maximum with the smallest index. Exact: the same on
// every ISA. (A scalar loop with the NaN branch cost two thirds of a KL evaluation.)
i64 argmax(const float* r, i64 V) {
  if (V < kLanes || V > std::numeric_limits<std::uint32_t>::max()) {
    i64 best = 0;
    for (i64 j = 0; j < V; ++j) {
      if (r[j] != r[j]) return j;
      if (r[j] > r[best]) best = j;
    }
    return best;
  }
  float mx[kLanes];
  std::uint32_t ix[kLanes], nan[kLanes];
  for (int k = 0; k < kLanes; ++k) {
    mx[k] = r[k];
    ix[k] = static_cast<std::uint32_t>(k);
    nan[k] = 0u - static_cast<std::uint32_t>(r[k] != r[k]);
  }
  const i64 V8 = V - V % kLanes;
#ifdef __AVX2__
  // GCC does not vectorise the loop below (the index blend): the same lanes by hand
  __m256 vmx = _mm256_loadu_ps(mx);
  __m256 vnan = _mm256_castsi256_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(nan)));
  __m256i vix = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ix));
  __m256i cur = vix;
  const __m256i step = _mm256_set1_epi32(kLanes);
  for (i64 j = kLanes; j < V8; j += kLanes) {
    const __m256 v = _mm256_loadu_ps(r + j);
    cur = _mm256_add_epi32(cur, step);
    const __m256 gt = _mm256_cmp_ps(v, vmx, _CMP_GT_OQ);
    vmx = _mm256_blendv_ps(vmx, v, gt);
    vix = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(vix), _mm256_castsi256_ps(cur), gt));
    vnan = _mm256_or_ps(vnan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
  }
  _mm256_storeu_ps(mx, vmx);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(ix), vix);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(nan), _mm256_castps_si256(vnan));
#else
  for (i64 j = kLanes; j < V8; j += kLanes) {
    for (int k = 0; k < kLanes; ++k) {
      const float v = r[j + k];
      const std::uint32_t gt = 0u - static_cast<std::uint32_t>(v > mx[k]);
      mx[k] = bits_float((float_bits(v) & gt) | (float_bits(mx[k]) & ~gt));
      ix[k] = (static_cast<std::uint32_t>(j + k) & gt) | (ix[k] & ~gt);
      nan[k] |= 0u - static_cast<std::uint32_t>(v != v);
    }
  }
#endif
  for (i64 j = V8; j < V; ++j) {
    const int k = static_cast<int>(j - V8);
    if (r[j] > mx[k]) {
      mx[k] = r[j];
      ix[k] = static_cast<std::uint32_t>(j);
    }
    nan[k] |= 0u - static_cast<std::uint32_t>(r[j] != r[j]);
  }
  std::uint32_t any_nan = 0;
  for (int k = 0; k < kLanes; ++k) any_nan |= nan[k];
  if (any_nan != 0) {
    for (i64 j = 0; j < V; ++j)
      if (r[j] != r[j]) return j;
  }
  int best = 0;
  for (int k = 1; k < kLanes; ++k)
    if (mx[k] > mx[best] || (mx[k] == mx[best] && ix[k] < ix[best])) best = k;
  return static_cast<i64>(ix[best]);
}

// sum_j exp(r[j] - m): for m = the row's maximum every term is in (0, 1] and the sum is >= 1.
double sum_exp_shifted(const float* r, i64 V, float m) {
  const double md = m;
  double acc[kLanes] = {};
  const i64 V8 = V - V % kLanes;
  for (i64 j = 0; j < V8; j += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += exp_nonpositive(static_cast<double>(r[j + k]) - md);
  for (i64 j = V8; j < V; ++j) acc[j - V8] += exp_nonpositive(static_cast<double>(r[j]) - md);
  return lanes_total(acc);
}

// d = (log p_ref - log p) at one logit, in double from the float logits; a term whose reference
// weight e is 0 counts 0 (0 * log 0 = 0, also against a -inf model logit), selected by a mask so
// the loop stays branch-free
inline double kl_term(float rj, float lj, double mr, double cr, double cl) {
  const double e = exp_nonpositive(static_cast<double>(rj) - mr);
  const double d = (static_cast<double>(rj) - cr) - (static_cast<double>(lj) - cl);
  const double t = e * d;
  return bits_double(double_bits(t) & (0ull - static_cast<std::uint64_t>(e != 0.0)));
}

// sum_j e[j] (log p_ref[j] - log p[j]) with log p_ref[j] = (r[j] - mr) - lr and
// log p[j] = (l[j] - ml) - ll; divided by the reference's sum it is the KL divergence
double kl_sum(const float* r, const float* l, i64 V, float mr, double lr, float ml, double ll) {
  const double mrd = mr, cr = mrd + lr, cl = static_cast<double>(ml) + ll;
  double acc[kLanes] = {};
  const i64 V8 = V - V % kLanes;
  for (i64 j = 0; j < V8; j += kLanes)
    for (int k = 0; k < kLanes; ++k) acc[k] += kl_term(r[j + k], l[j + k], mrd, cr, cl);
  for (i64 j = V8; j < V; ++j) acc[j - V8] += kl_term(r[j], l[j], mrd, cr, cl);
  return lanes_total(acc);
}

}  // namespace

const LogitsKernels kLogitsKernels = {argmax, sum_exp_shifted, kl_sum};

}  // namespace lowbit::LOWBIT_LOGITS_NS
