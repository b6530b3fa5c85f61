// Scalar vec_dot of GGUF weight blocks with quantized activation blocks: the definition the
// SIMD variants are tested against, written from ggml's block layouts (ggml_blocks.hpp) and
// the dot each ggml type pairs with its vec_dot_type (lowbit/ggml_qmatmul.hpp). Integer dots
// per (sub-)block are exact; block results are summed in block order, as ggml's generic code.
#include <cstring>

#include "lowbit/ggml_blocks.hpp"
#include "lowbit/ggml_qmatmul.hpp"
#include "lowbit/half.hpp"

namespace lowbit::scalar {

namespace {

using namespace lowbit::ggml;

inline float h2f(half h) { return fp16_to_fp32(h); }

// ---- 32-element blocks against Q8_0 / Q8_1 -------------------------------------------------
float vec_dot_q4_0(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q4_0*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK4_0; ++i) {
    std::int32_t sumi = 0;
    for (int j = 0; j < 16; ++j)
      sumi += ((x[i].qs[j] & 0xf) - 8) * y[i].qs[j] + ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + 16];
    sumf += (h2f(x[i].d) * h2f(y[i].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

float vec_dot_q4_1(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q4_1*>(wv);
  const auto* y = static_cast<const block_q8_1*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK4_1; ++i) {
    std::int32_t sumi = 0;
    for (int j = 0; j < 16; ++j) sumi += (x[i].qs[j] & 0xf) * y[i].qs[j] + (x[i].qs[j] >> 4) * y[i].qs[j + 16];
    sumf += (h2f(x[i].d) * h2f(y[i].d)) * static_cast<float>(sumi) + h2f(x[i].m) * h2f(y[i].s);
  }
  return sumf;
}

inline std::uint32_t load_u32(const std::uint8_t* p) {
  std::uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

float vec_dot_q5_0(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q5_0*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK5_0; ++i) {
    const std::uint32_t qh = load_u32(x[i].qh);
    std::int32_t sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int x0 = static_cast<int>((x[i].qs[j] & 0xf) | (((qh >> j) & 1u) << 4)) - 16;
      const int x1 = static_cast<int>((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4)) - 16;
      sumi += x0 * y[i].qs[j] + x1 * y[i].qs[j + 16];
    }
    sumf += (h2f(x[i].d) * h2f(y[i].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

float vec_dot_q5_1(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q5_1*>(wv);
  const auto* y = static_cast<const block_q8_1*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK5_1; ++i) {
    const std::uint32_t qh = load_u32(x[i].qh);
    std::int32_t sumi = 0;
    for (int j = 0; j < 16; ++j) {
      const int x0 = static_cast<int>((x[i].qs[j] & 0xf) | (((qh >> j) & 1u) << 4));
      const int x1 = static_cast<int>((x[i].qs[j] >> 4) | (((qh >> (j + 16)) & 1u) << 4));
      sumi += x0 * y[i].qs[j] + x1 * y[i].qs[j + 16];
    }
    sumf += (h2f(x[i].d) * h2f(y[i].d)) * static_cast<float>(sumi) + h2f(x[i].m) * h2f(y[i].s);
  }
  return sumf;
}

float vec_dot_q8_0(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q8_0*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK8_0; ++i) {
    std::int32_t sumi = 0;
    for (int j = 0; j < 32; ++j) sumi += x[i].qs[j] * y[i].qs[j];
    sumf += (h2f(x[i].d) * h2f(y[i].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

float vec_dot_iq4_nl(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_iq4_nl*>(wv);
  const auto* y = static_cast<const block_q8_0*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK4_NL; ++i) {
    std::int32_t sumi = 0;
    for (int j = 0; j < 16; ++j)
      sumi += kvalues_iq4nl[x[i].qs[j] & 0xf] * y[i].qs[j] + kvalues_iq4nl[x[i].qs[j] >> 4] * y[i].qs[j + 16];
    sumf += (h2f(x[i].d) * h2f(y[i].d)) * static_cast<float>(sumi);
  }
  return sumf;
}

// ---- k-quants against Q8_K ------------------------------------------------------------------
// Element order within a 256 super-block is ggml's dequantize order; each helper writes the
// 256 integer codes (before scales) and the per-sub-block scales/mins.

float vec_dot_q2_K(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q2_K*>(wv);
  const auto* y = static_cast<const block_q8_K*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK_K; ++i) {
    const std::uint8_t* q2 = x[i].qs;
    const std::int8_t* q8 = y[i].qs;
    const std::uint8_t* sc = x[i].scales;
    std::int32_t summs = 0;
    for (int j = 0; j < 16; ++j) summs += y[i].bsums[j] * (sc[j] >> 4);
    const float dall = y[i].d * h2f(x[i].d);
    const float dmin = y[i].d * h2f(x[i].dmin);
    std::int32_t isum = 0;
    int is = 0;
    for (int k = 0; k < QK_K / 128; ++k) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half16 = 0; half16 < 2; ++half16) {
          std::int32_t s = 0;
          for (int l = 16 * half16; l < 16 * half16 + 16; ++l) s += q8[l] * ((q2[l] >> shift) & 3);
          isum += (sc[is++] & 0xf) * s;
        }
        q8 += 32;
      }
      q2 += 32;
    }
    sumf += dall * static_cast<float>(isum) - dmin * static_cast<float>(summs);
  }
  return sumf;
}

// Q3_K's 16 six-bit scales (stored value; the scale is value - 32).
inline void q3_K_scales(const std::uint8_t* s, int out[16]) {
  for (int j = 0; j < 16; ++j) {
    const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
    const int hi = (s[8 + (j & 3)] >> (2 * (j >> 2))) & 3;
    out[j] = lo | (hi << 4);
  }
}

float vec_dot_q3_K(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q3_K*>(wv);
  const auto* y = static_cast<const block_q8_K*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK_K; ++i) {
    std::int8_t a[QK_K];
    const std::uint8_t* q3 = x[i].qs;
    std::uint8_t m = 1;
    int e = 0;
    for (int j = 0; j < QK_K; j += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int l = 0; l < 32; ++l)
          a[e + l] = static_cast<std::int8_t>(((q3[l] >> shift) & 3) - ((x[i].hmask[l] & m) ? 0 : 4));
        e += 32;
        m = static_cast<std::uint8_t>(m << 1);
      }
      q3 += 32;
    }
    int sc[16];
    q3_K_scales(x[i].scales, sc);
    std::int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      std::int32_t s = 0;
      for (int l = 0; l < 16; ++l) s += y[i].qs[16 * j + l] * a[16 * j + l];
      isum += (sc[j] - 32) * s;
    }
    sumf += (h2f(x[i].d) * y[i].d) * static_cast<float>(isum);
  }
  return sumf;
}

// Q4_K/Q5_K: 6-bit scale and min of sub-block j (0..7) (ggml's get_scale_min_k4).
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
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK_K; ++i) {
    const std::uint8_t *scales, *qs, *qh = nullptr;
    half xd, xdmin;
    if constexpr (Five) {
      const auto& b = static_cast<const block_q5_K*>(wv)[i];
      scales = b.scales, qs = b.qs, qh = b.qh, xd = b.d, xdmin = b.dmin;
    } else {
      const auto& b = static_cast<const block_q4_K*>(wv)[i];
      scales = b.scales, qs = b.qs, xd = b.d, xdmin = b.dmin;
    }
    std::int32_t sumi = 0, summ = 0;
    for (int j = 0; j < 8; ++j) {
      int sc, mn;
      scale_min_k4(j, scales, &sc, &mn);
      const std::uint8_t* q = qs + 32 * (j / 2);
      const int shift = 4 * (j & 1);
      const std::int8_t* q8 = y[i].qs + 32 * j;
      std::int32_t s = 0;
      for (int l = 0; l < 32; ++l) {
        int v = (q[l] >> shift) & 0xf;
        if constexpr (Five) v += ((qh[l] >> j) & 1) << 4;
        s += v * q8[l];
      }
      sumi += sc * s;
      summ += mn * (y[i].bsums[2 * j] + y[i].bsums[2 * j + 1]);
    }
    const float d = y[i].d * h2f(xd), dmin = y[i].d * h2f(xdmin);
    sumf += d * static_cast<float>(sumi) - dmin * static_cast<float>(summ);
  }
  return sumf;
}

float vec_dot_q4_K(i64 n, const void* w, const void* a) { return vec_dot_q45_K<false>(n, w, a); }
float vec_dot_q5_K(i64 n, const void* w, const void* a) { return vec_dot_q45_K<true>(n, w, a); }

float vec_dot_q6_K(i64 n, const void* wv, const void* av) {
  const auto* x = static_cast<const block_q6_K*>(wv);
  const auto* y = static_cast<const block_q8_K*>(av);
  float sumf = 0.0f;
  for (i64 i = 0; i < n / QK_K; ++i) {
    std::int8_t a[QK_K];
    for (int c = 0; c < 2; ++c) {  // two 128-element halves
      const std::uint8_t* ql = x[i].ql + 64 * c;
      const std::uint8_t* qh = x[i].qh + 32 * c;
      std::int8_t* o = a + 128 * c;
      for (int l = 0; l < 32; ++l) {
        o[l] = static_cast<std::int8_t>(((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = static_cast<std::int8_t>(((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = static_cast<std::int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = static_cast<std::int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
      }
    }
    std::int32_t isum = 0;
    for (int j = 0; j < 16; ++j) {
      std::int32_t s = 0;
      for (int l = 0; l < 16; ++l) s += y[i].qs[16 * j + l] * a[16 * j + l];
      isum += x[i].scales[j] * s;
    }
    sumf += (h2f(x[i].d) * y[i].d) * static_cast<float>(isum);
  }
  return sumf;
}

// kGgmlDotRows outputs of one weight row: the definition is one vec_dot each.
template <GgmlVecDotFn F>
void rows(i64 n, const void* w, const void* const* a, float* out) {
  for (int j = 0; j < kGgmlDotRows; ++j) out[j] = F(n, w, a[j]);
}

}  // namespace

#define LOWBIT_GGML_DOTS(f) {f, rows<f>}
const GgmlDotKernels kGgmlDotKernels = {
    LOWBIT_GGML_DOTS(vec_dot_q4_0), LOWBIT_GGML_DOTS(vec_dot_q4_1), LOWBIT_GGML_DOTS(vec_dot_q5_0),
    LOWBIT_GGML_DOTS(vec_dot_q5_1), LOWBIT_GGML_DOTS(vec_dot_q8_0), LOWBIT_GGML_DOTS(vec_dot_iq4_nl),
    LOWBIT_GGML_DOTS(vec_dot_q2_K), LOWBIT_GGML_DOTS(vec_dot_q3_K), LOWBIT_GGML_DOTS(vec_dot_q4_K),
    LOWBIT_GGML_DOTS(vec_dot_q5_K), LOWBIT_GGML_DOTS(vec_dot_q6_K), nullptr, nullptr};
#undef LOWBIT_GGML_DOTS

}  // namespace lowbit::scalar
