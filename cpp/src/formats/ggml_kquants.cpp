// ggml's k-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K (256-element super-blocks) and Q8_K.
//
// Quantize = what llama.cpp's ggml_quantize_chunk writes for one row: the quantize_row_*_ref
// searches without an importance matrix, the quantize_row_*_impl searches with one
// (REFERENCE.md §5.4-5.6). Dequantize = ggml's to_float. Byte-exact only with strict float
// semantics (-ffp-contract=off) and sums kept in loop order.
#include <algorithm>
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

// The 8-wide final requantization where enabled (same codes as the scalar loops below).
bool lanes_requantize(int n, const float* x, float dm, float d, int lo, int hi, int off, void* L) {
#ifdef LOWBIT_HAVE_X86_KERNELS
  if (lanes::enabled()) {
    lanes::requantize(n, x, dm, d, lo, hi, off, static_cast<std::uint8_t*>(L));
    return true;
  }
#endif
  (void)n, (void)x, (void)dm, (void)d, (void)lo, (void)hi, (void)off, (void)L;
  return false;
}

// 2-bit codes of 256 elements: byte 32h+l holds elements 128h+l+32k at bit 2k.
void pack_2bit(const std::uint8_t* L, std::uint8_t* qs) {
#ifdef LOWBIT_HAVE_X86_KERNELS
  if (lanes::enabled()) {
    lanes::pack_q2_K(L, qs);
    return;
  }
#endif
  for (int j = 0; j < QK_K; j += 128)
    for (int l = 0; l < 32; ++l)
      qs[j / 4 + l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) |
                                                (L[j + l + 96] << 6));
}

// 6-bit scale ls and min lm of sub-block j into Q4_K/Q5_K's 12 bytes (bytes zeroed first).
void put_scale_min_k4(int j, std::uint8_t ls, std::uint8_t lm, std::uint8_t* q) {
  if (j < 4) {
    q[j] = ls;
    q[j + 4] = lm;
  } else {
    q[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
    q[j - 4] |= static_cast<std::uint8_t>((ls >> 4) << 6);
    q[j] |= static_cast<std::uint8_t>((lm >> 4) << 6);
  }
}

void get_scale_min_k4(int j, const std::uint8_t* q, std::uint8_t& d, std::uint8_t& m) {
  if (j < 4) {
    d = q[j] & 63;
    m = q[j + 4] & 63;
  } else {
    d = static_cast<std::uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    m = static_cast<std::uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Q3_K's 16 6-bit scales (stored +32): low nibbles in bytes 0..7, high 2 bits in bytes 8..11.
void put_scale_q3(int j, int l, std::uint8_t* s) {
  if (j < 8) s[j] = static_cast<std::uint8_t>(l & 0xF);
  else s[j - 8] |= static_cast<std::uint8_t>((l & 0xF) << 4);
  l >>= 4;
  s[j % 4 + 8] |= static_cast<std::uint8_t>(l << (2 * (j / 4)));
}
std::int8_t get_scale_q3(int j, const std::uint8_t* s) {
  const int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
  return static_cast<std::int8_t>((lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32);
}

// Q3_K: requantize with the stored scales, split off the high bit into hmask, pack.
void q3_finish(const float* x, block_q3_K& b, std::int8_t* L) {
  for (int j = 0; j < QK_K / 16; ++j) {
    const float d = half_to_fp32(b.d) * static_cast<float>(get_scale_q3(j, b.scales));
    if (d == 0 || lanes_requantize(16, x + 16 * j, 0.f, d, -4, 3, 4, L + 16 * j)) continue;
    for (int ii = 0; ii < 16; ++ii) {
      const int l = std::max(-4, std::min(3, nearest_int(x[16 * j + ii] / d)));
      L[16 * j + ii] = static_cast<std::int8_t>(l + 4);
    }
  }
#ifdef LOWBIT_HAVE_X86_KERNELS
  if (lanes::enabled()) {  // codes are in [0, 7] here
    lanes::pack_q3_K(L, b.hmask, b.qs);
    return;
  }
#endif
  std::memset(b.hmask, 0, sizeof b.hmask);
  int m = 0;
  std::uint8_t hm = 1;
  for (int j = 0; j < QK_K; ++j) {
    if (L[j] > 3) {
      b.hmask[m] |= hm;
      L[j] = static_cast<std::int8_t>(L[j] - 4);
    }
    if (++m == QK_K / 8) {
      m = 0;
      hm = static_cast<std::uint8_t>(hm << 1);
    }
  }
  pack_2bit(reinterpret_cast<const std::uint8_t*>(L), b.qs);
}

// Q4_K / Q5_K: requantize every sub-block against the stored 6-bit scales and mins.
template <int NMAX>
void requantize_k4(const float* x, const std::uint8_t* scales, half dh, half dminh, std::uint8_t* L) {
  for (int j = 0; j < QK_K / 32; ++j) {
    std::uint8_t sc, m;
    get_scale_min_k4(j, scales, sc, m);
    const float d = half_to_fp32(dh) * static_cast<float>(sc);
    if (d == 0) continue;
    const float dm = half_to_fp32(dminh) * static_cast<float>(m);
    if (lanes_requantize(32, x + 32 * j, dm, d, 0, NMAX, 0, L + 32 * j)) continue;
    for (int ii = 0; ii < 32; ++ii) {
      const int l = nearest_int((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(NMAX, l)));
    }
  }
}

void pack_q5_K(const std::uint8_t* L, std::uint8_t* ql, std::uint8_t* qh) {
  std::memset(qh, 0, QK_K / 8);
  std::uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < QK_K; n += 64) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) {
        l1 -= 16;
        qh[j] |= m1;
      }
      if (l2 > 15) {
        l2 -= 16;
        qh[j] |= m2;
      }
      ql[j] = static_cast<std::uint8_t>(l1 | (l2 << 4));
    }
    m1 = static_cast<std::uint8_t>(m1 << 2);
    m2 = static_cast<std::uint8_t>(m2 << 2);
    ql += 32;
  }
}

// Q4_K / Q5_K: 8 sub-blocks of 32, asymmetric. NMAX = 15 or 31.
template <int NMAX>
void k4_quantize_block(const float* x, std::uint8_t* scales12, half& d_out, half& dmin_out, std::uint8_t* L,
                       const float* qw) {
  float mins[QK_K / 32], scales[QK_K / 32];
  std::memset(scales12, 0, K_SCALE_SIZE);
  if (!qw) {
    const float rmin = NMAX == 15 ? -1.f : -0.5f;
    const int nstep = NMAX == 15 ? 20 : 15;
    float w[QK_K];
    for (int j = 0; j < QK_K / 32; ++j) {
      const float* xs = x + 32 * j;
      float sum_x2 = 0;
      for (int l = 0; l < 32; ++l) sum_x2 += xs[l] * xs[l];
      const float av_x = std::sqrt(sum_x2 / 32);
      for (int l = 0; l < 32; ++l) w[32 * j + l] = av_x + std::fabs(xs[l]);
    }
    qkx_quants_x8(32, 32, NMAX, x, w, L, scales, mins, rmin, 0.1f, nstep, false, false);
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }
    const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    for (int j = 0; j < QK_K / 32; ++j) {
      std::uint8_t ls = static_cast<std::uint8_t>(nearest_int(inv_scale * scales[j]));
      std::uint8_t lm = static_cast<std::uint8_t>(nearest_int(inv_min * mins[j]));
      ls = std::min<std::uint8_t>(63, ls);
      lm = std::min<std::uint8_t>(63, lm);
      put_scale_min_k4(j, ls, lm, scales12);
    }
    d_out = fp32_to_half(max_scale / 63.f);
    dmin_out = fp32_to_half(max_min / 63.f);
  } else {
    float sum_x2 = 0;
    for (int l = 0; l < QK_K; ++l) sum_x2 += x[l] * x[l];
    const float sigma2 = 2 * sum_x2 / QK_K;
    float sw[QK_K / 32];
    std::uint8_t Ls[QK_K / 32], Lm[QK_K / 32];
    float w[QK_K];
    for (int j = 0; j < QK_K / 32; ++j) {
      const float* xs = x + 32 * j;
      const float* q = qw + 32 * j;
      float* ws = w + 32 * j;
      for (int l = 0; l < 32; ++l) ws[l] = q[l] * std::sqrt(sigma2 + xs[l] * xs[l]);
      float sumw = 0;
      for (int l = 0; l < 32; ++l) sumw += ws[l];
      sw[j] = sumw;
    }
    qkx_quants_x8(32, 32, NMAX, x, w, L, scales, mins, -0.9f, 0.05f, 36, false, true);
    const float d_block = make_qp_quants(QK_K / 32, 63, scales, Ls, sw);
    const float m_block = make_qp_quants(QK_K / 32, 63, mins, Lm, sw);
    for (int j = 0; j < QK_K / 32; ++j)
      put_scale_min_k4(j, std::min<std::uint8_t>(63, Ls[j]), std::min<std::uint8_t>(63, Lm[j]), scales12);
    d_out = fp32_to_half(d_block);
    dmin_out = fp32_to_half(m_block);
  }
  requantize_k4<NMAX>(x, scales12, d_out, dmin_out, L);
}

}  // namespace

// ---------------------------------------------------------------------------------- Q2_K
void q2_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q2_K*>(dst);
  const float* qw_row = imatrix_of(p);
  std::uint8_t L[QK_K];
  float weights[QK_K], mins[QK_K / 16], scales[QK_K / 16];
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q2_K& b = y[i];
    if (!qw_row) {
      const float q4scale = 15.f;
      float max_scale = 0, max_min = 0;
      for (int l = 0; l < QK_K; ++l) weights[l] = std::fabs(x[l]);
      for (int h = 0; h < 2; ++h)
        qkx_quants_x8(16, 16, 3, x + 128 * h, weights + 128 * h, L + 128 * h, scales + 8 * h, mins + 8 * h, -0.5f,
                      0.1f, 15, true, false);
      for (int j = 0; j < QK_K / 16; ++j) {
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
      }
      if (max_scale > 0) {
        const float iscale = q4scale / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = static_cast<std::uint8_t>(nearest_int(iscale * scales[j]));
        b.d = fp32_to_half(max_scale / q4scale);
      } else {
        std::memset(b.scales, 0, sizeof b.scales);
        b.d = fp32_to_half(0.f);
      }
      if (max_min > 0) {
        const float iscale = q4scale / max_min;
        for (int j = 0; j < QK_K / 16; ++j)
          b.scales[j] = static_cast<std::uint8_t>(b.scales[j] | (nearest_int(iscale * mins[j]) << 4));
        b.dmin = fp32_to_half(max_min / q4scale);
      } else {
        b.dmin = fp32_to_half(0.f);
      }
    } else {
      const float* qw_blk = qw_row + QK_K * i;
      float sw[QK_K / 16] = {};
      std::uint8_t Ls[QK_K / 16], Lm[QK_K / 16];
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = sumx2 / QK_K;
      for (int j = 0; j < QK_K / 16; ++j) {
        const float* q = qw_blk + 16 * j;
        float* ws = weights + 16 * j;
        for (int l = 0; l < 16; ++l) ws[l] = q[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        for (int l = 0; l < 16; ++l) sw[j] += ws[l];
      }
      for (int h = 0; h < 2; ++h)
        qkx_quants_x8(16, 16, 3, x + 128 * h, weights + 128 * h, L + 128 * h, scales + 8 * h, mins + 8 * h, -0.9f,
                      0.05f, 36, false, true);
      const float dm = make_qp_quants(QK_K / 16, 15, scales, Ls, sw);
      const float mm = make_qp_quants(QK_K / 16, 15, mins, Lm, sw);
      b.d = fp32_to_half(dm);
      b.dmin = fp32_to_half(mm);
      for (int j = 0; j < QK_K / 16; ++j) b.scales[j] = static_cast<std::uint8_t>(Ls[j] | (Lm[j] << 4));
    }
    const float dd = half_to_fp32(b.d), dmin = half_to_fp32(b.dmin);
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = dd * static_cast<float>(b.scales[j] & 0xF);
      if (d == 0) continue;
      const float dm = dmin * static_cast<float>(b.scales[j] >> 4);
      if (lanes_requantize(16, x + 16 * j, dm, d, 0, 3, 0, L + 16 * j)) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = nearest_int((x[16 * j + ii] + dm) / d);
        L[16 * j + ii] = static_cast<std::uint8_t>(std::max(0, std::min(3, l)));
      }
    }
    pack_2bit(L, b.qs);
  }
}

void q2_K_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q2_K*>(src);
  for (i64 i = 0; i < n / QK_K; ++i) {
    const float d = half_to_fp32(b[i].d), mn = half_to_fp32(b[i].dmin);
    const std::uint8_t* q = b[i].qs;
    int is = 0;
    for (int nn = 0; nn < QK_K; nn += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half_ = 0; half_ < 2; ++half_) {
          const std::uint8_t sc = b[i].scales[is++];
          const float dl = d * static_cast<float>(sc & 0xF), ml = mn * static_cast<float>(sc >> 4);
          for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * half_] >> shift) & 3) - ml;
        }
      }
      q += 32;
    }
  }
}

// ---------------------------------------------------------------------------------- Q3_K
void q3_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q3_K*>(dst);
  const float* qw_row = imatrix_of(p);
  std::int8_t L[QK_K];
  float scales[QK_K / 16];
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q3_K& b = y[i];
    std::memset(b.scales, 0, sizeof b.scales);
    if (!qw_row) {
      float max_scale = 0, amax = 0;
      for (int h = 0; h < 2; ++h) q3_quants_x8(16, 16, 4, x + 128 * h, L + 128 * h, scales + 8 * h);
      for (int j = 0; j < QK_K / 16; ++j) {
        const float scale = std::fabs(scales[j]);
        if (scale > amax) {
          amax = scale;
          max_scale = scales[j];
        }
      }
      if (max_scale != 0) {
        const float iscale = -32.f / max_scale;
        for (int j = 0; j < QK_K / 16; ++j) {
          std::int8_t l = static_cast<std::int8_t>(nearest_int(iscale * scales[j]));
          l = static_cast<std::int8_t>(std::max<int>(-32, std::min<int>(31, l)) + 32);
          put_scale_q3(j, l, b.scales);
        }
        b.d = fp32_to_half(1 / iscale);
      } else {
        b.d = fp32_to_half(0.f);
      }
    } else {
      const float* qw_blk = qw_row + QK_K * i;
      float weight[QK_K], sw[QK_K / 16];
      std::int8_t Ls[QK_K / 16];
      float sumx2 = 0;
      for (int j = 0; j < QK_K; ++j) sumx2 += x[j] * x[j];
      const float sigma2 = 2 * sumx2 / QK_K;
      for (int j = 0; j < QK_K / 16; ++j) {
        const float* q = qw_blk + 16 * j;
        float* ws = weight + 16 * j;
        for (int l = 0; l < 16; ++l) ws[l] = q[l] * std::sqrt(sigma2 + x[16 * j + l] * x[16 * j + l]);
        float sumw = 0;
        for (int l = 0; l < 16; ++l) sumw += ws[l];
        sw[j] = sumw;
      }
      for (int h = 0; h < 2; ++h) qx_quants_x8(16, 16, 4, x + 128 * h, weight + 128 * h, L + 128 * h, scales + 8 * h);
      const float d_block = make_qx_quants(QK_K / 16, 32, scales, Ls, 1, sw);
      for (int j = 0; j < QK_K / 16; ++j) put_scale_q3(j, Ls[j], b.scales);
      b.d = fp32_to_half(d_block);
    }
    q3_finish(x, b, L);
  }
}

void q3_K_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q3_K*>(src);
  for (i64 i = 0; i < n / QK_K; ++i) {
    const float d_all = half_to_fp32(b[i].d);
    const std::uint8_t* q = b[i].qs;
    const std::uint8_t* hm = b[i].hmask;
    std::uint8_t m = 1;
    int is = 0;
    for (int nn = 0; nn < QK_K; nn += 128) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int half_ = 0; half_ < 2; ++half_) {
          const float dl = d_all * static_cast<float>(get_scale_q3(is++, b[i].scales));
          for (int l = 0; l < 16; ++l) {
            const int k = l + 16 * half_;
            *y++ = dl * static_cast<float>(((q[k] >> shift) & 3) - ((hm[k] & m) ? 0 : 4));
          }
        }
        m = static_cast<std::uint8_t>(m << 1);
      }
      q += 32;
    }
  }
}

// ---------------------------------------------------------------------------------- Q4_K
void q4_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q4_K*>(dst);
  const float* qw_row = imatrix_of(p);
  std::uint8_t L[QK_K];
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q4_K& b = y[i];
    k4_quantize_block<15>(x, b.scales, b.d, b.dmin, L, qw_row ? qw_row + QK_K * i : nullptr);
    std::uint8_t* q = b.qs;
    for (int j = 0; j < QK_K; j += 64, q += 32)
      for (int l = 0; l < 32; ++l) q[l] = static_cast<std::uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

void q4_K_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q4_K*>(src);
  for (i64 i = 0; i < n / QK_K; ++i) {
    const std::uint8_t* q = b[i].qs;
    const float d = half_to_fp32(b[i].d), mn = half_to_fp32(b[i].dmin);
    int is = 0;
    for (int j = 0; j < QK_K; j += 64) {
      std::uint8_t sc, m;
      get_scale_min_k4(is, b[i].scales, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = mn * static_cast<float>(m);
      get_scale_min_k4(is + 1, b[i].scales, sc, m);
      const float d2 = d * static_cast<float>(sc), m2 = mn * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

// ---------------------------------------------------------------------------------- Q5_K
void q5_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q5_K*>(dst);
  const float* qw_row = imatrix_of(p);
  std::uint8_t L[QK_K];
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q5_K& b = y[i];
    k4_quantize_block<31>(x, b.scales, b.d, b.dmin, L, qw_row ? qw_row + QK_K * i : nullptr);
    pack_q5_K(L, b.qs, b.qh);
  }
}

void q5_K_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q5_K*>(src);
  for (i64 i = 0; i < n / QK_K; ++i) {
    const std::uint8_t* ql = b[i].qs;
    const std::uint8_t* qh = b[i].qh;
    const float d = half_to_fp32(b[i].d), mn = half_to_fp32(b[i].dmin);
    int is = 0;
    std::uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < QK_K; j += 64) {
      std::uint8_t sc, m;
      get_scale_min_k4(is, b[i].scales, sc, m);
      const float d1 = d * static_cast<float>(sc), m1 = mn * static_cast<float>(m);
      get_scale_min_k4(is + 1, b[i].scales, sc, m);
      const float d2 = d * static_cast<float>(sc), m2 = mn * static_cast<float>(m);
      for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
      for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
      ql += 32;
      is += 2;
      u1 = static_cast<std::uint8_t>(u1 << 2);
      u2 = static_cast<std::uint8_t>(u2 << 2);
    }
  }
}

// ---------------------------------------------------------------------------------- Q6_K
void q6_K_from_float(const float* x, void* dst, i64 n, const GroupParams* p) {
  auto* y = static_cast<block_q6_K*>(dst);
  const float* qw_row = imatrix_of(p);
  std::int8_t L[QK_K];
  float scales[QK_K / 16];
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q6_K& b = y[i];
    float max_scale = 0, max_abs_scale = 0;
    float x2[QK_K];
    const float* w = qw_row ? qw_row + QK_K * i : x2;
    if (!qw_row)
      for (int l = 0; l < QK_K; ++l) x2[l] = x[l] * x[l];  // make_qx_quants' default weights
    for (int h = 0; h < 2; ++h) qx_quants_x8(16, 16, 32, x + 128 * h, w + 128 * h, L + 128 * h, scales + 8 * h);
    for (int ib = 0; ib < QK_K / 16; ++ib) {
      const float scale = scales[ib];
      const float abs_scale = std::fabs(scale);
      if (abs_scale > max_abs_scale) {
        max_abs_scale = abs_scale;
        max_scale = scale;
      }
    }
    if (max_abs_scale < GROUP_MAX_EPS) {
      std::memset(&b, 0, sizeof b);
      b.d = fp32_to_half(0.f);
      continue;
    }
    const float iscale = -128.f / max_scale;
    b.d = fp32_to_half(1 / iscale);
    for (int ib = 0; ib < QK_K / 16; ++ib)
      b.scales[ib] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * scales[ib])));
    for (int j = 0; j < QK_K / 16; ++j) {
      const float d = half_to_fp32(b.d) * static_cast<float>(b.scales[j]);
      if (d == 0 || lanes_requantize(16, x + 16 * j, 0.f, d, -32, 31, 32, L + 16 * j)) continue;
      for (int ii = 0; ii < 16; ++ii) {
        const int l = std::max(-32, std::min(31, nearest_int(x[16 * j + ii] / d)));
        L[16 * j + ii] = static_cast<std::int8_t>(l + 32);
      }
    }
    std::uint8_t* ql = b.ql;
    std::uint8_t* qh = b.qh;
    for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (int l = 0; l < 32; ++l) {
        const int q1 = L[j + l] & 0xF, q2 = L[j + l + 32] & 0xF, q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
        ql[l] = static_cast<std::uint8_t>(q1 | (q3 << 4));
        ql[l + 32] = static_cast<std::uint8_t>(q2 | (q4 << 4));
        qh[l] = static_cast<std::uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) |
                                          ((L[j + l + 96] >> 4) << 6));
      }
    }
  }
}

void q6_K_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q6_K*>(src);
  for (i64 i = 0; i < n / QK_K; ++i) {
    const float d = half_to_fp32(b[i].d);
    const std::uint8_t* ql = b[i].ql;
    const std::uint8_t* qh = b[i].qh;
    const std::int8_t* sc = b[i].scales;
    for (int nn = 0; nn < QK_K; nn += 128, y += 128, ql += 64, qh += 32, sc += 8) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<std::int8_t>((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<std::int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<std::int8_t>((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<std::int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
        y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
        y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
        y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
      }
    }
  }
}

// ---------------------------------------------------------------------------------- Q8_K
void q8_K_from_float(const float* x, void* dst, i64 n, const GroupParams*) {
  auto* y = static_cast<block_q8_K*>(dst);
  for (i64 i = 0; i < n / QK_K; ++i, x += QK_K) {
    block_q8_K& b = y[i];
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; ++j) {
      const float ax = std::fabs(x[j]);
      if (ax > amax) {
        amax = ax;
        max = x[j];
      }
    }
    if (amax == 0) {
      b.d = 0;
      std::memset(b.qs, 0, sizeof b.qs);
      std::memset(b.bsums, 0, sizeof b.bsums);  // (llama.cpp leaves them unwritten)
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; ++j) b.qs[j] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * x[j])));
    for (int j = 0; j < QK_K / 16; ++j) {
      int sum = 0;
      for (int ii = 0; ii < 16; ++ii) sum += b.qs[j * 16 + ii];
      b.bsums[j] = static_cast<std::int16_t>(sum);
    }
    b.d = 1 / iscale;
  }
}

void q8_K_to_float(const void* src, float* y, i64 n, const GroupParams*) {
  const auto* b = static_cast<const block_q8_K*>(src);
  for (i64 i = 0; i < n / QK_K; ++i)
    for (int j = 0; j < QK_K; ++j) *y++ = b[i].d * static_cast<float>(b[i].qs[j]);
}

}  // namespace lowbit::formats
