// ggml's 32-element block formats: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 and IQ4_NL.
//
// Quantize = what llama.cpp's ggml_quantize_chunk writes for one row: the *_ref rounding
// (REFERENCE.md §5.3) without an importance matrix, the weighted searches of §5.6 with one
// (Q8_0/Q8_1 ignore it; IQ4_NL always searches). Dequantize = ggml's to_float.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "ggml_lanes.hpp"
#include "ggml_numerics.hpp"
#include "ggml_solvers.hpp"
#include "lowbit/formats_impl.hpp"

namespace lowbit::formats {

using namespace lowbit::ggml;

namespace {

const float* imatrix_of(const GroupParams* p) { return p ? p->quant_weights : nullptr; }

// sigma^2 of the imatrix weighting for the legacy types: mean of x^2 over the whole row.
float row_sigma2(const float* x, i64 n) {
  float sum_x2 = 0;
  for (i64 j = 0; j < n; ++j) sum_x2 += x[j] * x[j];
  return sum_x2 / static_cast<float>(n);
}

void fill_weights(const float* xb, const float* qw, float sigma2, float* weight, int n = 32) {
  for (int j = 0; j < n; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
}

// 5-bit codes (0..31) -> low nibbles in qs, bit 4 in the little-endian u32 qh.
template <class L>
void pack_5bit(const L* codes, std::uint8_t* qs, std::uint8_t* qh_bytes) {
  std::uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    const std::uint8_t x0 = static_cast<std::uint8_t>(codes[j]), x1 = static_cast<std::uint8_t>(codes[j + 16]);
    qs[j] = static_cast<std::uint8_t>((x0 & 0x0F) | ((x1 & 0x0F) << 4));
    qh |= ((x0 & 0x10u) >> 4) << j;
    qh |= ((x1 & 0x10u) >> 4) << (j + 16);
  }
  std::memcpy(qh_bytes, &qh, 4);
}

// Signed value of largest magnitude (the first one on ties), as the *_ref loops find it.
float signed_absmax(const float* xb, int n) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < n; ++j) {
    if (amax < std::fabs(xb[j])) {
      amax = std::fabs(xb[j]);
      max = xb[j];
    }
  }
  return max;
}

// The 8-wide *_ref rounding (ggml_lanes_avx2.cpp) where built and enabled; false = do it here.
#ifdef LOWBIT_HAVE_X86_KERNELS
bool lanes_on() { return lanes::enabled(); }
bool lanes_sym(const float* x, int nmax, float* d, std::uint8_t* c) { return lanes::sym_codes32(x, nmax, d, c); }
bool lanes_asym(const float* x, int lv, bool c15, float* d, float* m, std::uint8_t* c) {
  return lanes::asym_codes32(x, lv, c15, d, m, c);
}
bool lanes_q8(const float* x, float* d, std::int8_t* c) { return lanes::q8_codes32(x, d, c); }
void lanes_pack4(const std::uint8_t* c, std::uint8_t* qs) { lanes::pack_nibbles32(c, qs); }
void lanes_pack5(const std::uint8_t* c, std::uint8_t* qs, std::uint8_t* qh) { lanes::pack_5bit32(c, qs, qh); }
#else
bool lanes_on() { return false; }
bool lanes_sym(const float*, int, float*, std::uint8_t*) { return false; }
bool lanes_asym(const float*, int, bool, float*, float*, std::uint8_t*) { return false; }
bool lanes_q8(const float*, float*, std::int8_t*) { return false; }
void lanes_pack4(const std::uint8_t*, std::uint8_t*) {}
void lanes_pack5(const std::uint8_t*, std::uint8_t*, std::uint8_t*) {}
#endif

void minmax(const float* xb, int n, float& mn, float& mx) {
  mn = FLT_MAX;
  mx = -FLT_MAX;
  for (int j = 0; j < n; ++j) {
    if (xb[j] < mn) mn = xb[j];
    if (xb[j] > mx) mx = xb[j];
  }
}

}  // namespace

// ---------------------------------------------------------------------------------- Q4_0
void q4_0_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q4_0*>(dst);
  const i64 nb = n / QK4_0;
  if (const float* qw = imatrix_of(p)) {
    const float sigma2 = row_sigma2(x, n);
    float weight[256], d[8];
    std::int8_t L[256];
    for (i64 ib = 0; ib < nb; ++ib) {
      const float* xb = x + 32 * ib;
      const int k = static_cast<int>(ib % 8);
      if (k == 0 && ib + 8 <= nb) {  // eight blocks at once (same results as one by one)
        fill_weights(xb, qw + 32 * ib, sigma2, weight, 256);
        qx_quants_x8(32, 32, 8, xb, weight, L, d);
      } else if (ib + 8 - k > nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight + 32 * k);
        d[k] = make_qx_quants(32, 8, xb, L + 32 * k, 1, weight + 32 * k);
      }
      y[ib].d = fp32_to_half(d[k]);
      const std::int8_t* Lb = L + 32 * k;
      for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<std::uint8_t>(Lb[j] | (Lb[j + 16] << 4));
    }
    return;
  }
  const bool fast = lanes_on();
  for (i64 i = 0; i < nb; ++i) {
    const float* xb = x + 32 * i;
    std::uint8_t codes[32];
    float dv;
    if (fast && lanes_sym(xb, 8, &dv, codes)) {
      y[i].d = fp32_to_half(dv);
      lanes_pack4(codes, y[i].qs);
      continue;
    }
    const float d = signed_absmax(xb, 32) / -8;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_half(d);
    for (int j = 0; j < 16; ++j) {
      const std::uint8_t x0 = static_cast<std::uint8_t>(std::min<int>(15, cvtt_i8(xb[j] * id + 8.5f)));
      const std::uint8_t x1 = static_cast<std::uint8_t>(std::min<int>(15, cvtt_i8(xb[j + 16] * id + 8.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>(x0 | (x1 << 4));
    }
  }
}

void q4_0_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q4_0*>(src);
  for (i64 i = 0; i < n / QK4_0; ++i) {
    const float d = half_to_fp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[32 * i + j] = static_cast<float>((b[i].qs[j] & 0x0F) - 8) * d;
      y[32 * i + j + 16] = static_cast<float>((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

// ---------------------------------------------------------------------------------- Q4_1
void q4_1_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q4_1*>(dst);
  const i64 nb = n / QK4_1;
  if (const float* qw = imatrix_of(p)) {
    const float sigma2 = row_sigma2(x, n);
    float weight[256], d[8], the_min[8];
    std::uint8_t L[256], Laux[32];
    for (i64 ib = 0; ib < nb; ++ib) {
      const float* xb = x + 32 * ib;
      const int k = static_cast<int>(ib % 8);
      if (k == 0 && ib + 8 <= nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight, 256);
        qkx_quants_x8(32, 32, 15, xb, weight, L, d, the_min, -0.9f, 0.05f, 36, false, true);
      } else if (ib + 8 - k > nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight + 32 * k);
        d[k] = make_qkx3_quants(32, 15, xb, weight + 32 * k, L + 32 * k, &the_min[k], Laux, -0.9f, 0.05f, 36, false);
      }
      y[ib].d = fp32_to_half(d[k]);
      y[ib].m = fp32_to_half(-the_min[k]);
      for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<std::uint8_t>(L[32 * k + j] | (L[32 * k + j + 16] << 4));
    }
    return;
  }
  const bool fast = lanes_on();
  for (i64 i = 0; i < nb; ++i) {
    const float* xb = x + 32 * i;
    std::uint8_t codes[32];
    float dv, mv;
    if (fast && lanes_asym(xb, 15, true, &dv, &mv, codes)) {
      y[i].d = fp32_to_half(dv);
      y[i].m = fp32_to_half(mv);
      lanes_pack4(codes, y[i].qs);
      continue;
    }
    float mn, mx;
    minmax(xb, 32, mn, mx);
    const float d = (mx - mn) / 15;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_half(d);
    y[i].m = fp32_to_half(mn);
    for (int j = 0; j < 16; ++j) {
      const std::uint8_t x0 = static_cast<std::uint8_t>(std::min<int>(15, cvtt_i8((xb[j] - mn) * id + 0.5f)));
      const std::uint8_t x1 = static_cast<std::uint8_t>(std::min<int>(15, cvtt_i8((xb[j + 16] - mn) * id + 0.5f)));
      y[i].qs[j] = static_cast<std::uint8_t>(x0 | (x1 << 4));
    }
  }
}

void q4_1_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q4_1*>(src);
  for (i64 i = 0; i < n / QK4_1; ++i) {
    const float d = half_to_fp32(b[i].d), m = half_to_fp32(b[i].m);
    for (int j = 0; j < 16; ++j) {
      y[32 * i + j] = static_cast<float>(b[i].qs[j] & 0x0F) * d + m;
      y[32 * i + j + 16] = static_cast<float>(b[i].qs[j] >> 4) * d + m;
    }
  }
}

// ---------------------------------------------------------------------------------- Q5_0
void q5_0_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q5_0*>(dst);
  const i64 nb = n / QK5_0;
  if (const float* qw = imatrix_of(p)) {
    const float sigma2 = row_sigma2(x, n);
    float weight[256], d[8];
    std::int8_t L[256];
    for (i64 ib = 0; ib < nb; ++ib) {
      const float* xb = x + 32 * ib;
      const int k = static_cast<int>(ib % 8);
      if (k == 0 && ib + 8 <= nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight, 256);
        qx_quants_x8(32, 32, 16, xb, weight, L, d);
      } else if (ib + 8 - k > nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight + 32 * k);
        d[k] = make_qx_quants(32, 16, xb, L + 32 * k, 1, weight + 32 * k);
      }
      y[ib].d = fp32_to_half(d[k]);
      pack_5bit(L + 32 * k, y[ib].qs, y[ib].qh);
    }
    return;
  }
  const bool fast = lanes_on();
  for (i64 i = 0; i < nb; ++i) {
    const float* xb = x + 32 * i;
    std::uint8_t codes[32];
    float dv;
    if (fast && lanes_sym(xb, 16, &dv, codes)) {
      y[i].d = fp32_to_half(dv);
      lanes_pack5(codes, y[i].qs, y[i].qh);
      continue;
    }
    const float d = signed_absmax(xb, 32) / -16;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_half(d);
    for (int j = 0; j < 32; ++j) codes[j] = static_cast<std::uint8_t>(std::min<int>(31, cvtt_i8(xb[j] * id + 16.5f)));
    pack_5bit(codes, y[i].qs, y[i].qh);
  }
}

void q5_0_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q5_0*>(src);
  for (i64 i = 0; i < n / QK5_0; ++i) {
    const float d = half_to_fp32(b[i].d);
    std::uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
      y[32 * i + j] = static_cast<float>(((b[i].qs[j] & 0x0F) | h0) - 16) * d;
      y[32 * i + j + 16] = static_cast<float>(((b[i].qs[j] >> 4) | h1) - 16) * d;
    }
  }
}

// ---------------------------------------------------------------------------------- Q5_1
void q5_1_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q5_1*>(dst);
  const i64 nb = n / QK5_1;
  if (const float* qw = imatrix_of(p)) {
    const float sigma2 = row_sigma2(x, n);
    float weight[256], d[8], the_min[8];
    std::uint8_t L[256], Laux[32];
    for (i64 ib = 0; ib < nb; ++ib) {
      const float* xb = x + 32 * ib;
      const int k = static_cast<int>(ib % 8);
      if (k == 0 && ib + 8 <= nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight, 256);
        qkx_quants_x8(32, 32, 31, xb, weight, L, d, the_min, -0.9f, 0.05f, 36, false, true);
      } else if (ib + 8 - k > nb) {
        fill_weights(xb, qw + 32 * ib, sigma2, weight + 32 * k);
        d[k] = make_qkx3_quants(32, 31, xb, weight + 32 * k, L + 32 * k, &the_min[k], Laux, -0.9f, 0.05f, 36, false);
      }
      y[ib].d = fp32_to_half(d[k]);
      y[ib].m = fp32_to_half(-the_min[k]);
      pack_5bit(L + 32 * k, y[ib].qs, y[ib].qh);
    }
    return;
  }
  const bool fast = lanes_on();
  for (i64 i = 0; i < nb; ++i) {
    const float* xb = x + 32 * i;
    std::uint8_t codes[32];
    float dv, mv;
    if (fast && lanes_asym(xb, 31, false, &dv, &mv, codes)) {
      y[i].d = fp32_to_half(dv);
      y[i].m = fp32_to_half(mv);
      lanes_pack5(codes, y[i].qs, y[i].qh);
      continue;
    }
    float mn, mx;
    minmax(xb, 32, mn, mx);
    const float d = (mx - mn) / 31;
    const float id = d != 0 ? 1.0f / d : 0.0f;
    y[i].d = fp32_to_half(d);
    y[i].m = fp32_to_half(mn);
    for (int j = 0; j < 32; ++j) codes[j] = cvtt_u8((xb[j] - mn) * id + 0.5f);
    pack_5bit(codes, y[i].qs, y[i].qh);
  }
}

void q5_1_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q5_1*>(src);
  for (i64 i = 0; i < n / QK5_1; ++i) {
    const float d = half_to_fp32(b[i].d), m = half_to_fp32(b[i].m);
    std::uint32_t qh;
    std::memcpy(&qh, b[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
      y[32 * i + j] = static_cast<float>((b[i].qs[j] & 0x0F) | h0) * d + m;
      y[32 * i + j + 16] = static_cast<float>((b[i].qs[j] >> 4) | h1) * d + m;
    }
  }
}

// ------------------------------------------------------------------------------ Q8_0/Q8_1
namespace {
// d = amax/127 and the codes roundf(x/d) (half away from zero) of one 32-block.
float q8_block(const float* xb, std::int8_t* qs) {
  float d_fast;
  if (lanes_on() && lanes_q8(xb, &d_fast, qs)) return d_fast;
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    amax = amax > ax ? amax : ax;  // ggml's MAX macro (a NaN is dropped unless it comes last)
  }
  const float d = amax / 127;
  const float id = d != 0 ? 1.0f / d : 0.0f;
  for (int j = 0; j < 32; ++j) qs[j] = cvtt_i8(std::round(xb[j] * id));
  return d;
}
}  // namespace

void q8_0_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  auto* y = static_cast<block_q8_0*>(dst);
  for (i64 i = 0; i < n / QK8_0; ++i) y[i].d = fp32_to_half(q8_block(x + 32 * i, y[i].qs));
}

void q8_0_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q8_0*>(src);
  for (i64 i = 0; i < n / QK8_0; ++i) {
    const float d = half_to_fp32(b[i].d);
    for (int j = 0; j < 32; ++j) y[32 * i + j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void q8_1_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  auto* y = static_cast<block_q8_1*>(dst);
  for (i64 i = 0; i < n / QK8_1; ++i) {
    const float d = q8_block(x + 32 * i, y[i].qs);
    y[i].d = fp32_to_half(d);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += y[i].qs[j];
    y[i].s = fp32_to_half(static_cast<float>(sum) * d);
  }
}

// ggml has no to_float for Q8_1 (it is an activation type); this is the same d*q as Q8_0.
void q8_1_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q8_1*>(src);
  for (i64 i = 0; i < n / QK8_1; ++i) {
    const float d = half_to_fp32(b[i].d);
    for (int j = 0; j < 32; ++j) y[32 * i + j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

// -------------------------------------------------------------------------------- IQ4_NL
namespace {
// Index of the level nearest to x (ties to the upper level, as llama.cpp's binary search).
int best_index_iq4nl(float x) {
  const std::int8_t* val = kvalues_iq4nl;
  if (x <= val[0]) return 0;
  if (x >= val[15]) return 15;
  int ml = 0, mu = 15;
  while (mu - ml > 1) {
    const int mav = (ml + mu) / 2;
    if (x < val[mav]) mu = mav;
    else ml = mav;
  }
  return x - val[mu - 1] < val[mu] - x ? mu - 1 : mu;
}
}  // namespace

namespace {
// IQ4_NL's scale search on one 32-block (ggml_quantize_chunk: ntry = 7, sigma^2 = 2*mean(x^2)
// of the block); returns the scale, writes the final indices.
float iq4_nl_block(const float* xb, const float* qw, std::uint8_t* L) {
  const int ntry = 7;
  float sigma2 = 0;
  for (int j = 0; j < 32; ++j) sigma2 += xb[j] * xb[j];
  sigma2 *= 2.f / 32;
  float weight[32];
  if (qw) {
    for (int j = 0; j < 32; ++j) weight[j] = qw[j] * std::sqrt(sigma2 + xb[j] * xb[j]);
  } else {
    for (int j = 0; j < 32; ++j) weight[j] = xb[j] * xb[j];
  }
  float amax = 0, max = 0;
  for (int j = 0; j < 32; ++j) {
    const float ax = std::fabs(xb[j]);
    if (ax > amax) {
      amax = ax;
      max = xb[j];
    }
  }
  float scale = 0;
  if (!(amax < GROUP_MAX_EPS)) {
    const float v0 = static_cast<float>(kvalues_iq4nl[0]);
    float d = -max / v0;
    float id = 1 / d;
    float sumqx = 0, sumq2 = 0;
    for (int j = 0; j < 32; ++j) {
      const float q = static_cast<float>(kvalues_iq4nl[best_index_iq4nl(id * xb[j])]), w = weight[j];
      sumqx += w * q * xb[j];
      sumq2 += w * q * q;
    }
    d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
    float best = d * sumqx;
    for (int itry = -ntry; itry <= ntry; ++itry) {
      id = (static_cast<float>(itry) + v0) / max;
      sumqx = sumq2 = 0;
      for (int j = 0; j < 32; ++j) {
        const float q = static_cast<float>(kvalues_iq4nl[best_index_iq4nl(id * xb[j])]), w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
      }
      if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
        d = sumqx / sumq2;
        best = d * sumqx;
      }
    }
    scale = d;
  }
  // llama.cpp requantizes with the fp32 scale (an all-zero block: scale 0, id 0)
  const float id = scale != 0 ? 1 / scale : 0;
  for (int j = 0; j < 32; ++j) L[j] = static_cast<std::uint8_t>(best_index_iq4nl(id * xb[j]));
  return scale;
}
}  // namespace

// ggml_quantize_chunk's IQ4_NL (not quantize_row_iq4_nl_ref, which skips the search).
void iq4_nl_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_iq4_nl*>(dst);
  const float* qw_row = imatrix_of(p);
  const i64 nb = n / QK4_NL;
  float scale[8];
  std::uint8_t L[256];
  for (i64 ib = 0; ib < nb; ++ib) {
    const float* xb = x + 32 * ib;
    const float* qw = qw_row ? qw_row + 32 * ib : nullptr;
    const int k = static_cast<int>(ib % 8);
#ifdef LOWBIT_HAVE_X86_KERNELS
    if (k == 0 && ib + 8 <= nb && lanes::enabled()) lanes::iq4_nl_blocks8(xb, qw, scale, L);
    else if (k == 0 || ib + 8 - k > nb || !lanes::enabled())
#endif
      scale[k] = iq4_nl_block(xb, qw, L + 32 * k);
    y[ib].d = fp32_to_half(scale[k]);
    const std::uint8_t* Lb = L + 32 * k;
    for (int j = 0; j < 16; ++j) y[ib].qs[j] = static_cast<std::uint8_t>(Lb[j] | (Lb[j + 16] << 4));
  }
}

void iq4_nl_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_iq4_nl*>(src);
  for (i64 i = 0; i < n / QK4_NL; ++i) {
    const float d = half_to_fp32(b[i].d);
    for (int j = 0; j < 16; ++j) {
      y[32 * i + j] = d * static_cast<float>(kvalues_iq4nl[b[i].qs[j] & 0xf]);
      y[32 * i + j + 16] = d * static_cast<float>(kvalues_iq4nl[b[i].qs[j] >> 4]);
    }
  }
}

}  // namespace lowbit::formats
