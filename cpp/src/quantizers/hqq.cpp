// HQQ: min/max init, then hqq's default zero-point solver (optimize_weights_proximal_legacy)
// on the CPU in float32, as hqq runs it there:
//   step(z):  W_q = clamp(round(W*s + z), 0, maxq)        s = inverse scale, fixed
//             W_r = (W_q - z) / s
//             W_e = shrink_p(W - W_r; beta)                sign(x)*relu(|x| - |x|^(p-1)/beta)
//             z'  = mean over the group of (W_q - (W - W_e)*s)
//   error = mean |W - W_r| over the WHOLE tensor (one stop decision for all groups); after the
//   first step whose error is not below the best so far the loop stops, keeping that step's z'
//   (hqq's behaviour, not "roll back to the best z"). beta stays constant (hqq reads kappa but
//   never applies it in this solver).
// Determinism: every group is computed by one thread with a fixed operation order; sums are
// accumulated in double over fixed lanes/chunks and reduced in index order, so the result
// does not depend on the thread count.
#include "lowbit/hqq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lowbit/grouped_int.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/parallel.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lowbit {

namespace {

// Elements per work chunk: large enough to amortise scheduling, small enough for balance.
constexpr i64 kChunkElems = 16384;
// Axis 0: columns of the [gs, G] group matrix handled together (per-column accumulators).
constexpr i64 kAxis0Cols = 128;

// round-half-to-even of t, clamped to [0, maxq]. t is first clamped to [-1, maxq + 1] (which
// does not change the final result) so |t| < 2^22 and adding/subtracting 1.5*2^23 rounds it
// to an integer exactly as nearbyint does; unlike nearbyint it vectorizes on baseline SSE2.
inline float round_clamp(float t, float maxq) {
  constexpr float kMagic = 12582912.0f;  // 1.5 * 2^23
  t = t < -1.0f ? -1.0f : t;
  t = t > maxq + 1.0f ? maxq + 1.0f : t;
  t = (t + kMagic) - kMagic;
  t = t < 0.0f ? 0.0f : t;
  return t > maxq ? maxq : t;
}

// Sum of x[0..n) in double over 8 fixed lanes (vectorizable; same order on every ISA/thread).
double lane_sum(const float* x, i64 n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  i64 i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) acc[k] += static_cast<double>(x[i + k]);
  for (int k = 0; i < n; ++i, ++k) acc[k] += static_cast<double>(x[i]);
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

// The shrinkage step and the threshold below which it is exactly zero.
struct Shrink {
  float inv_beta;  // (1/beta) rounded to float, as torch applies a Python scalar to float32
  float pm1;       // p - 1 rounded to float
  bool l1;         // p == 1: plain soft threshold
  float thr;       // |d| <= thr  =>  shrink(d) == 0 (with a safety margin for p < 1)

  Shrink(double lp_norm, double beta)
      : inv_beta(static_cast<float>(1.0 / beta)), pm1(static_cast<float>(lp_norm - 1.0)), l1(lp_norm == 1.0) {
    if (l1) {
      thr = inv_beta;  // a - inv_beta > 0 exactly when a > inv_beta
    } else {
      // a - inv_beta * a^pm1 > 0  <=>  a > inv_beta^(1 / (1 - pm1)); the 1e-3 margin dwarfs
      // the rounding of powf and of the float products, so below it the result is 0 in float.
      thr = static_cast<float>(std::pow(static_cast<double>(inv_beta), 1.0 / (1.0 - static_cast<double>(pm1))) *
                               (1.0 - 1e-3));
    }
  }

  // hqq's shrink_lp_op in float32: sign(d) * max(|d| - (1/beta) * |d|^(p-1), 0).
  float operator()(float d) const {
    const float a = std::fabs(d);
    float u = l1 ? a - inv_beta : a - inv_beta * std::pow(a, pm1);
    u = u > 0.0f ? u : 0.0f;
    return d > 0.0f ? u : (d < 0.0f ? -u : 0.0f);
  }
};

// One solver step over `n` elements: one group's (s, z) shared by all (axis 1), or one row
// segment of the [gs, G] group matrix with per-element (s[j], z[j]) (axis 0). Writes
// |W - W_r| to err_out and W_q - (W - W_e)*s to zt_out.
template <bool kPerElement>
inline void step_span(const float* __restrict w, i64 n, const float* __restrict s, const float* __restrict z,
                      float maxq, const Shrink& sh, bool simd, float* __restrict err_out, float* __restrict zt_out) {
  const float s0 = s[0], z0 = z[0], thr = sh.thr;
  int flagged = 0;
  i64 j = 0;
#if defined(__SSE2__)
  // The scalar loop below, 4 lanes at a time (GCC does not if-convert the float clamps
  // itself). Same IEEE operations per element, so identical results (round_clamp never
  // yields -0); skipped when the scalar kernels are forced, so tests can compare the two.
  if (simd) {
    const __m128 vmaxq = _mm_set1_ps(maxq), vmaxq1 = _mm_set1_ps(maxq + 1.0f), vm1 = _mm_set1_ps(-1.0f);
    const __m128 v0 = _mm_setzero_ps(), magic = _mm_set1_ps(12582912.0f), vthr = _mm_set1_ps(thr);
    const __m128 absmask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 vflag = _mm_setzero_ps();
    for (; j + 4 <= n; j += 4) {
      const __m128 sj = kPerElement ? _mm_loadu_ps(s + j) : _mm_set1_ps(s0);
      const __m128 zj = kPerElement ? _mm_loadu_ps(z + j) : _mm_set1_ps(z0);
      const __m128 wv = _mm_loadu_ps(w + j);
      const __m128 ws = _mm_mul_ps(wv, sj);
      __m128 q = _mm_min_ps(_mm_max_ps(_mm_add_ps(ws, zj), vm1), vmaxq1);
      q = _mm_sub_ps(_mm_add_ps(q, magic), magic);
      q = _mm_min_ps(_mm_max_ps(q, v0), vmaxq);
      const __m128 r = _mm_div_ps(_mm_sub_ps(q, zj), sj);
      const __m128 a = _mm_and_ps(_mm_sub_ps(wv, r), absmask);
      _mm_storeu_ps(err_out + j, a);
      _mm_storeu_ps(zt_out + j, _mm_sub_ps(q, ws));
      vflag = _mm_or_ps(vflag, _mm_cmpgt_ps(a, vthr));
    }
    flagged = _mm_movemask_ps(vflag);
  }
#else
  (void)simd;
#endif
  for (; j < n; ++j) {
    const float sj = kPerElement ? s[j] : s0, zj = kPerElement ? z[j] : z0;
    const float ws = w[j] * sj;
    const float q = round_clamp(ws + zj, maxq);
    const float r = (q - zj) / sj;
    const float a = std::fabs(w[j] - r);
    err_out[j] = a;
    zt_out[j] = q - ws;  // W_e == 0 here: (w - 0) * s == ws exactly
    flagged += a > thr ? 1 : 0;
  }
  if (flagged == 0) return;
  for (j = 0; j < n; ++j) {
    if (!(err_out[j] > thr)) continue;
    const float sj = kPerElement ? s[j] : s0, zj = kPerElement ? z[j] : z0;
    const float q = round_clamp(w[j] * sj + zj, maxq);
    const float d = w[j] - (q - zj) / sj;
    zt_out[j] = q - (w[j] - sh(d)) * sj;
  }
}

// Walks the groups of consecutive flat elements f0, f0+1, ... without a division per element.
class GroupCursor {
 public:
  GroupCursor(const HqqShape& s, i64 f0)
      : axis1_(s.axis == 1), gs_(s.group_size), G_(s.n_groups()),
        g_(axis1_ ? f0 / gs_ : f0 % G_), k_(axis1_ ? f0 % gs_ : 0) {}
  i64 group() const { return g_; }
  void next() {
    if (axis1_) {
      if (++k_ == gs_) k_ = 0, ++g_;
    } else if (++g_ == G_) {
      g_ = 0;
    }
  }

 private:
  bool axis1_;
  i64 gs_, G_, g_, k_;
};

// Index (row, col) of the first non-finite element of W in row-major order, or (-1, -1).
void find_non_finite(const AnyMatrixView& W, i64* row, i64* col) {
  std::vector<i64> bad(static_cast<std::size_t>(W.rows), -1);
  parallel_for(
      W.rows,
      [&](i64 r) {
        std::vector<float> buf(static_cast<std::size_t>(W.cols));
        W.load_row(r, buf.data());
        for (i64 c = 0; c < W.cols; ++c)
          if (!std::isfinite(buf[static_cast<std::size_t>(c)])) {
            bad[static_cast<std::size_t>(r)] = c;
            return;
          }
      },
      min_rows_per_thread(W.cols));
  for (i64 r = 0; r < W.rows; ++r)
    if (bad[static_cast<std::size_t>(r)] >= 0) {
      *row = r;
      *col = bad[static_cast<std::size_t>(r)];
      return;
    }
  *row = *col = -1;
}

class Solver {
 public:
  Solver(const float* w, const HqqShape& s, const HqqParams& p)
      : w_(w), s_(s), p_(p), G_(s.n_groups()), maxq_(static_cast<float>(s.maxq())), shrink_(p.lp_norm, p.beta),
        simd_(active_isa() != Isa::Scalar) {
    if (s.axis == 1) {
      groups_per_chunk_ = std::max<i64>(1, kChunkElems / s.group_size);
      n_chunks_ = (G_ + groups_per_chunk_ - 1) / groups_per_chunk_;
    } else {
      n_chunks_ = (G_ + kAxis0Cols - 1) / kAxis0Cols;
    }
    chunk_err_.assign(static_cast<std::size_t>(n_chunks_), 0.0);
  }

  // Min/max init of inv_scale / zero (hqq's Quantizer.quantize). Returns the first group
  // whose value range overflows float32, or -1.
  i64 init(float* inv_scale, float* zero) const {
    std::vector<i64> bad(static_cast<std::size_t>(n_chunks_), -1);
    parallel_for(n_chunks_, [&](i64 ch) {
      i64 g0, g1;
      chunk_groups(ch, &g0, &g1);
      std::vector<float> lo_buf(static_cast<std::size_t>(g1 - g0)), hi_buf(lo_buf.size());
      float* lo = lo_buf.data() - g0;  // indexed by group
      float* hi = hi_buf.data() - g0;
      if (s_.axis == 1) {
        for (i64 g = g0; g < g1; ++g) {
          const float* x = w_ + g * s_.group_size;
          float mn = x[0], mx = x[0];
          for (i64 j = 1; j < s_.group_size; ++j) {
            mn = x[j] < mn ? x[j] : mn;
            mx = x[j] > mx ? x[j] : mx;
          }
          lo[g] = mn;
          hi[g] = mx;
        }
      } else {
        std::copy(w_ + g0, w_ + g1, lo + g0);
        std::copy(w_ + g0, w_ + g1, hi + g0);
        for (i64 i = 1; i < s_.group_size; ++i) {
          const float* x = w_ + i * G_;
          for (i64 g = g0; g < g1; ++g) {
            lo[g] = x[g] < lo[g] ? x[g] : lo[g];
            hi[g] = x[g] > hi[g] ? x[g] : hi[g];
          }
        }
      }
      for (i64 g = g0; g < g1; ++g) {
        const float denom = hi[g] - lo[g];
        if (!std::isfinite(denom)) {
          if (bad[static_cast<std::size_t>(ch)] < 0) bad[static_cast<std::size_t>(ch)] = g;
          continue;
        }
        // torch evaluates `max_v / denom` (a Python number over a tensor) as max_v * (1 / denom)
        float s = maxq_ * (1.0f / denom);
        if (std::fabs(denom) <= 1e-4f) s = 1.0f;  // avoid tiny denominators (hqq)
        s = std::min(s, 2e4f);                       // hqq's fp16 safety clamp
        float z = -lo[g] * s;
        if (p_.round_zero) z = std::nearbyint(z);
        inv_scale[g] = s;
        zero[g] = z;
      }
    });
    for (i64 b : bad)
      if (b >= 0) return b;
    return -1;
  }

  // One step for every group: reads zero, writes zero_next; returns mean |W - W_r| (float).
  float step(const float* inv_scale, const float* zero, float* zero_next) {
    double* errs = chunk_err_.data();
    parallel_for(
        n_chunks_, [&](i64 ch) { errs[ch] = step_chunk(ch, inv_scale, zero, zero_next); },
        std::max<i64>(1, 4 * kChunkElems / chunk_elems()));
    double total = 0.0;
    for (double e : chunk_err_) total += e;
    return static_cast<float>(total) / static_cast<float>(s_.numel());
  }

 private:
  i64 chunk_elems() const {
    return s_.axis == 1 ? groups_per_chunk_ * s_.group_size : kAxis0Cols * s_.group_size;
  }

  void chunk_groups(i64 ch, i64* g0, i64* g1) const {
    const i64 per = s_.axis == 1 ? groups_per_chunk_ : kAxis0Cols;
    *g0 = ch * per;
    *g1 = std::min(G_, *g0 + per);
  }

  double step_chunk(i64 ch, const float* inv_scale, const float* zero, float* zero_next) const {
    i64 g0, g1;
    chunk_groups(ch, &g0, &g1);
    const i64 gs = s_.group_size;
    double err = 0.0;
    if (s_.axis == 1) {
      std::vector<float> a(static_cast<std::size_t>(gs)), zt(a.size());
      for (i64 g = g0; g < g1; ++g) {
        step_span<false>(w_ + g * gs, gs, inv_scale + g, zero + g, maxq_, shrink_, simd_, a.data(), zt.data());
        err += lane_sum(a.data(), gs);
        zero_next[g] = static_cast<float>(lane_sum(zt.data(), gs)) / static_cast<float>(gs);
      }
      return err;
    }
    const i64 n = g1 - g0;
    std::vector<float> a(static_cast<std::size_t>(n)), zt(a.size());
    std::vector<double> err_buf(a.size(), 0.0), z_buf(a.size(), 0.0);
    double* err_acc = err_buf.data();  // per group (column of the [gs, G] view), summed over rows
    double* z_acc = z_buf.data();
    for (i64 i = 0; i < gs; ++i) {
      step_span<true>(w_ + i * G_ + g0, n, inv_scale + g0, zero + g0, maxq_, shrink_, simd_, a.data(), zt.data());
      for (i64 j = 0; j < n; ++j) {
        err_acc[j] += static_cast<double>(a[static_cast<std::size_t>(j)]);
        z_acc[j] += static_cast<double>(zt[static_cast<std::size_t>(j)]);
      }
    }
    for (i64 j = 0; j < n; ++j) {
      err += err_acc[j];
      zero_next[g0 + j] = static_cast<float>(z_acc[j]) / static_cast<float>(gs);
    }
    return err;
  }

  const float* w_;
  HqqShape s_;
  HqqParams p_;
  i64 G_;
  float maxq_;
  Shrink shrink_;
  bool simd_;
  i64 groups_per_chunk_ = 1;
  i64 n_chunks_ = 0;
  std::vector<double> chunk_err_;
};

}  // namespace

HqqShape hqq_shape(i64 rows, i64 cols, const HqqParams& p) {
  LOWBIT_CHECK(p.nbits >= 1 && p.nbits <= 8 && p.nbits != 7, "nbits must be one of 1, 2, 3, 4, 5, 6, 8, got ",
               p.nbits);
  LOWBIT_CHECK(rows > 0 && cols > 0, "W must be non-empty, got shape (", rows, ", ", cols, ")");
  LOWBIT_CHECK(p.axis == 0 || p.axis == 1, "axis must be 0 or 1, got ", p.axis);
  LOWBIT_CHECK(p.group_size > 0, "group_size must be > 0, got ", p.group_size);
  LOWBIT_CHECK((rows * cols) % p.group_size == 0, "group_size=", p.group_size,
               " must divide the number of weights ", rows, " x ", cols, " = ", rows * cols);
  LOWBIT_CHECK(p.lp_norm > 0.0 && p.lp_norm <= 1.0, "lp_norm must be in (0, 1], got ", p.lp_norm);
  LOWBIT_CHECK(p.beta > 0.0 && std::isfinite(p.beta), "beta must be a finite number > 0, got ", p.beta);
  LOWBIT_CHECK(p.iters >= 1, "iters must be >= 1, got ", p.iters);
  HqqShape s;
  s.rows = rows;
  s.cols = cols;
  s.group_size = p.group_size;
  s.axis = p.axis;
  s.nbits = p.nbits;
  return s;
}

HqqStats hqq_quantize(const AnyMatrixView& W, const HqqParams& p, std::uint8_t* qweight, float* scale, float* zero) {
  const HqqShape s = hqq_shape(W.rows, W.cols, p);
  const i64 G = s.n_groups();

  i64 bad_r, bad_c;
  find_non_finite(W, &bad_r, &bad_c);
  if (bad_r >= 0) throw_non_finite_weight(W, bad_r, bad_c);

  // The flattened float32 weight: W itself when it already is one, else a converted copy.
  std::vector<float> copy;
  const float* w = nullptr;
  if (W.dtype == DType::F32 && W.col_stride == 1 && W.row_stride == W.cols) {
    w = static_cast<const float*>(W.data);
  } else {
    copy.resize(static_cast<std::size_t>(s.numel()));
    parallel_for(W.rows, [&](i64 r) { W.load_row(r, copy.data() + r * W.cols); }, min_rows_per_thread(W.cols));
    w = copy.data();
  }

  Solver solver(w, s, p);
  std::vector<float> inv_scale(static_cast<std::size_t>(G));
  const i64 bad_g = solver.init(inv_scale.data(), zero);
  LOWBIT_CHECK(bad_g < 0, "the values of group ", bad_g, " span more than the float32 range (max - min overflows); "
               "W ", W.describe(), " cannot be quantized with a finite scale");

  HqqStats st;
  if (p.optimize) {
    std::vector<float> next(static_cast<std::size_t>(G));
    float best = std::numeric_limits<float>::infinity();
    for (int it = 0; it < p.iters; ++it) {
      const float err = solver.step(inv_scale.data(), zero, next.data());
      std::copy(next.begin(), next.end(), zero);  // hqq keeps this step's zero even when it stops
      st.errors.push_back(err);
      ++st.steps;
      if (p.early_stop) {
        if (err < best)
          best = err;
        else
          break;
      }
    }
  }

  // Final codes from the original weights with the final (inverse scale, zero), row by row.
  const float maxq = static_cast<float>(s.maxq());
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        const i64 f0 = r * s.cols;
        GroupCursor cur(s, f0);
        for (i64 c = 0; c < s.cols; ++c, cur.next()) {
          const i64 g = cur.group();
          codes[static_cast<std::size_t>(c)] =
              static_cast<std::uint8_t>(round_clamp(w[f0 + c] * inv_scale[static_cast<std::size_t>(g)] + zero[g], maxq));
        }
        pack_codes(codes.data(), s.cols, s.nbits, qweight + r * s.row_bytes());
      },
      min_rows_per_thread(s.cols));
  for (i64 g = 0; g < G; ++g) scale[g] = 1.0f / inv_scale[static_cast<std::size_t>(g)];
  return st;
}

void hqq_dequantize(const HqqShape& s, const std::uint8_t* qweight, const float* scale, const float* zero,
                    float* out) {
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        unpack_codes(qweight + r * s.row_bytes(), s.cols, s.nbits, codes.data());
        const i64 f0 = r * s.cols;
        float* y = out + f0;
        GroupCursor cur(s, f0);
        for (i64 c = 0; c < s.cols; ++c, cur.next()) {
          const i64 g = cur.group();
          y[c] = (static_cast<float>(codes[static_cast<std::size_t>(c)]) - zero[g]) * scale[g];
        }
      },
      min_rows_per_thread(s.cols));
}

}  // namespace lowbit
