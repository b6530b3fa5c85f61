// AWQ's inner loops: its quantizer grid, scaled pseudo-quantization, the statistics of the
// scale search, the alpha search of a linear scaled on its own, and the clipping search.
#include "lowbit/awq.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "lowbit/kernels.hpp"
#include "lowbit/linalg.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

struct AwqGrid {
  float scale, zero;
};

// AWQ's grid for a group with min lo, max hi (REFERENCE §2.6), float32 as the reference.
AwqGrid awq_grid(float lo, float hi, int bits, bool zero_point) {
  if (zero_point) {
    const float maxq = static_cast<float>((1 << bits) - 1);
    const float span = std::max(hi - lo, 1e-5f);
    const float scale = span / maxq;
    float zero = -std::nearbyint(lo / scale);
    zero = std::min(std::max(zero, 0.0f), maxq);
    return {scale, zero};
  }
  const float amax = std::max(std::max(std::fabs(lo), std::fabs(hi)), 1e-5f);
  const float scale = amax / static_cast<float>((1 << (bits - 1)) - 1);
  return {scale, static_cast<float>(1 << (bits - 1))};
}

void check_grid(const AwqGridParams& p) {
  LOWBIT_CHECK(p.bits >= 2 && p.bits <= 8, "bits must be in 2..8, got ", p.bits);
  LOWBIT_CHECK(p.group_size == -1 || p.group_size > 0, "group_size must be -1 (one group per row) or > 0, got ",
               p.group_size);
}

// Pseudo-quantizes row x[0..cols) in place on AWQ's grid (groups of gs columns).
void pseudo_quantize_row(float* x, i64 cols, i64 gs, const AwqGridParams& p, std::uint8_t* codes) {
  const GridKernels& k = grid_kernels();
  const int maxq = (1 << p.bits) - 1;
  for (i64 c0 = 0; c0 < cols; c0 += gs) {
    const i64 len = std::min(gs, cols - c0);
    float lo, hi;
    k.range(x + c0, len, &lo, &hi);
    const AwqGrid g = awq_grid(lo, hi, p.bits, p.zero_point);
    k.quantize_codes(x + c0, len, g.scale, g.zero, maxq, codes);
    for (i64 j = 0; j < len; ++j) x[c0 + j] = (static_cast<float>(codes[j]) - g.zero) * g.scale;
  }
}

constexpr i64 kSumChunk = 1 << 14;  // fixed chunks: the sum does not depend on the thread count

}  // namespace

i64 awq_group_size(const AwqGridParams& p, i64 cols) {
  check_grid(p);
  return (p.group_size <= 0 || p.group_size > cols) ? cols : p.group_size;
}

void awq_pseudo_quantize(const AnyMatrixView& W, const float* s, const AwqGridParams& p, float* out) {
  LOWBIT_CHECK(W.rows > 0 && W.cols > 0, "W must be non-empty, got ", W.describe());
  const i64 gs = awq_group_size(p, W.cols);
  const i64 cols = W.cols;
  if (s != nullptr) {
    for (i64 c = 0; c < cols; ++c)
      LOWBIT_CHECK(std::isfinite(s[c]) && s[c] > 0.0f, "scales must be finite and > 0, but s[", c, "] = ", s[c]);
  }
  std::vector<i64> bad(static_cast<std::size_t>(W.rows), -1);
  parallel_for(
      W.rows,
      [&](i64 r) {
        float* x = out + r * cols;
        W.load_row(r, x);
        for (i64 c = 0; c < cols; ++c) {
          if (!std::isfinite(x[c])) {
            bad[static_cast<std::size_t>(r)] = c;
            return;
          }
        }
        if (s != nullptr)
          for (i64 c = 0; c < cols; ++c) x[c] = x[c] * s[c];
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(gs));
        pseudo_quantize_row(x, cols, gs, p, codes.data());
        if (s != nullptr)
          for (i64 c = 0; c < cols; ++c) x[c] = x[c] / s[c];
      },
      min_rows_per_thread(cols));
  for (i64 r = 0; r < W.rows; ++r) {
    const i64 c = bad[static_cast<std::size_t>(r)];
    if (c >= 0) {
      std::vector<float> row(static_cast<std::size_t>(cols));
      W.load_row(r, row.data());
      throw_non_finite_weight(W, r, c);
    }
  }
}

GroupedIntShape awq_output_shape(i64 rows, i64 cols, const AwqGridParams& p) {
  check_grid(p);
  return make_grouped_shape(p.bits, rows, cols, p.group_size <= 0 ? -1 : p.group_size);
}

void awq_quantize(const AnyMatrixView& W, const AwqGridParams& p, const GroupedIntMutView& out) {
  const GroupedIntShape s = awq_output_shape(W.rows, W.cols, p);
  LOWBIT_CHECK(out.shape.rows == s.rows && out.shape.cols == s.cols && out.shape.bits == s.bits &&
                   out.shape.group_size == s.group_size && !out.shape.per_tensor,
               "output buffers do not match the AWQ output shape");
  const GridKernels& k = grid_kernels();
  const i64 G = s.n_groups();
  const int maxq = s.maxq();
  std::vector<i64> bad(static_cast<std::size_t>(s.rows), -1);
  parallel_for(
      s.rows,
      [&](i64 r) {
        std::vector<float> row(static_cast<std::size_t>(s.cols));
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(s.cols));
        W.load_row(r, row.data());
        for (i64 g = 0; g < G; ++g) {
          const i64 c0 = g * s.group_size;
          const i64 len = std::min(s.group_size, s.cols - c0);
          float lo, hi;
          if (!k.range(row.data() + c0, len, &lo, &hi)) {
            for (i64 c = c0; c < c0 + len; ++c)
              if (!std::isfinite(row[static_cast<std::size_t>(c)])) {
                bad[static_cast<std::size_t>(r)] = c;
                break;
              }
            return;
          }
          const AwqGrid grid = awq_grid(lo, hi, s.bits, p.zero_point);
          out.scales[r * G + g] = grid.scale;
          out.zeros[r * G + g] = static_cast<std::uint8_t>(grid.zero);
          k.quantize_codes(row.data() + c0, len, grid.scale, grid.zero, maxq, codes.data() + c0);
        }
        pack_codes(codes.data(), s.cols, s.bits, out.qweight + r * s.row_bytes());
      },
      min_rows_per_thread(s.cols));
  for (i64 r = 0; r < s.rows; ++r) {
    const i64 c = bad[static_cast<std::size_t>(r)];
    if (c >= 0) {
      std::vector<float> row(static_cast<std::size_t>(s.cols));
      W.load_row(r, row.data());
      throw_non_finite_weight(W, r, c);
    }
  }
}

void awq_weight_mean(const std::vector<AnyMatrixView>& Ws, i64 group_size, float* w_mean) {
  LOWBIT_CHECK(!Ws.empty(), "at least one weight matrix is needed");
  const i64 cols = Ws[0].cols;
  i64 rows = 0;
  for (const AnyMatrixView& W : Ws) {
    LOWBIT_CHECK(W.cols == cols && W.rows > 0, "the weights of one scaling group must share in_features=", cols,
                 ", got ", W.describe());
    rows += W.rows;
  }
  const i64 gs = (group_size <= 0 || group_size > cols) ? cols : group_size;
  // Work items: (matrix, block of rows); each sums |w| / (group amax + 1e-6) over its rows in
  // order, and the items' partial sums are added in item order.
  constexpr i64 kRowBlock = 64;
  struct Item {
    std::size_t m;
    i64 r0;
  };
  std::vector<Item> items;
  for (std::size_t m = 0; m < Ws.size(); ++m)
    for (i64 r0 = 0; r0 < Ws[m].rows; r0 += kRowBlock) items.push_back({m, r0});
  std::vector<std::vector<double>> partial(items.size());
  parallel_for(static_cast<i64>(items.size()), [&](i64 it) {
    const Item item = items[static_cast<std::size_t>(it)];
    const AnyMatrixView& W = Ws[item.m];
    const i64 r1 = std::min(item.r0 + kRowBlock, W.rows);
    std::vector<double>& acc = partial[static_cast<std::size_t>(it)];
    acc.assign(static_cast<std::size_t>(cols), 0.0);
    std::vector<float> row(static_cast<std::size_t>(cols));
    for (i64 r = item.r0; r < r1; ++r) {
      W.load_row(r, row.data());
      for (i64 c0 = 0; c0 < cols; c0 += gs) {
        const i64 len = std::min(gs, cols - c0);
        float amax = 0.0f;
        for (i64 j = 0; j < len; ++j) amax = std::max(amax, std::fabs(row[static_cast<std::size_t>(c0 + j)]));
        const float denom = amax + 1e-6f;
        for (i64 j = 0; j < len; ++j)
          acc[static_cast<std::size_t>(c0 + j)] += std::fabs(row[static_cast<std::size_t>(c0 + j)]) / denom;
      }
    }
  });
  for (i64 c = 0; c < cols; ++c) {
    double sum = 0.0;
    for (const auto& acc : partial) sum += acc[static_cast<std::size_t>(c)];
    w_mean[c] = static_cast<float>(sum / static_cast<double>(rows));
  }
}

void awq_act_mean_abs(const AnyMatrixView& X, double* x_mean) {
  LOWBIT_CHECK(X.rows > 0 && X.cols > 0, "X must hold at least one token, got ", X.describe());
  const i64 n = X.cols;
  constexpr i64 kTokens = 256;  // fixed token chunks, added in order
  const i64 chunks = (X.rows + kTokens - 1) / kTokens;
  std::vector<std::vector<double>> partial(static_cast<std::size_t>(chunks));
  parallel_for(chunks, [&](i64 k) {
    std::vector<double>& acc = partial[static_cast<std::size_t>(k)];
    acc.assign(static_cast<std::size_t>(n), 0.0);
    std::vector<float> row(static_cast<std::size_t>(n));
    for (i64 t = k * kTokens; t < std::min(X.rows, (k + 1) * kTokens); ++t) {
      X.load_row(t, row.data());
      for (i64 c = 0; c < n; ++c) acc[static_cast<std::size_t>(c)] += std::fabs(static_cast<double>(row[static_cast<std::size_t>(c)]));
    }
  });
  for (i64 c = 0; c < n; ++c) {
    double sum = 0.0;
    for (const auto& acc : partial) sum += acc[static_cast<std::size_t>(c)];
    x_mean[c] = sum / static_cast<double>(X.rows);
  }
}

void awq_scales(const float* x_mean, const float* w_mean, i64 n, float alpha, bool duo, float* s) {
  LOWBIT_CHECK(n > 0, "the scales need at least one channel");
  LOWBIT_CHECK(!duo || w_mean != nullptr, "duo scaling needs w_mean");
  float smax = -std::numeric_limits<float>::infinity(), smin = std::numeric_limits<float>::infinity();
  for (i64 c = 0; c < n; ++c) {
    // powers in double, rounded once to float: the float result is then the correctly rounded
    // one (barring ties), the same on every libm and SIMD width; float powf differs by an ulp
    // between libms and NumPy's vectorised paths
    float v = static_cast<float>(std::pow(static_cast<double>(x_mean[c]), static_cast<double>(alpha)));
    if (duo) {
      const float wp = static_cast<float>(std::pow(static_cast<double>(w_mean[c]), static_cast<double>(1.0f - alpha)));
      v = v / (wp + 1e-4f);
    }
    v = std::max(v, 1e-4f);  // NaN stays NaN here (as torch.clamp) and becomes 1 below
    s[c] = v;
    smax = std::max(smax, v);
    smin = std::min(smin, v);
  }
  const float norm = std::sqrt(smax * smin);
  for (i64 c = 0; c < n; ++c) {
    const float v = s[c] / norm;
    s[c] = std::isfinite(v) ? v : 1.0f;
  }
}

double awq_sum_sq_diff(const float* a, const float* b, i64 n) {
  if (n <= 0) return 0.0;
  const i64 chunks = (n + kSumChunk - 1) / kSumChunk;
  std::vector<double> part(static_cast<std::size_t>(chunks));
  parallel_for(chunks, [&](i64 k) {
    const i64 i0 = k * kSumChunk, i1 = std::min(n, i0 + kSumChunk);
    double acc = 0.0;
    for (i64 i = i0; i < i1; ++i) {
      const double d = static_cast<double>(a[i]) - static_cast<double>(b[i]);
      acc += d * d;
    }
    part[static_cast<std::size_t>(k)] = acc;
  }, 4);
  double total = 0.0;
  for (double v : part) total += v;
  return total;
}

namespace {
// float32 rows of X, contiguous (a copy only when X is not already so).
const float* contiguous_rows(const AnyMatrixView& X, std::vector<float>& buf, i64* ld) {
  if (X.dtype == DType::F32 && X.col_stride == 1 && X.row_stride >= X.cols) {
    *ld = X.row_stride;
    return static_cast<const float*>(X.data);
  }
  buf.resize(static_cast<std::size_t>(X.rows * X.cols));
  parallel_for(X.rows, [&](i64 t) { X.load_row(t, buf.data() + t * X.cols); }, 64);
  *ld = X.cols;
  return buf.data();
}
}  // namespace

void awq_gram(const AnyMatrixView& X, float* G) {
  LOWBIT_CHECK(X.rows > 0 && X.cols > 0, "X must hold at least one token, got ", X.describe());
  std::vector<float> buf;
  i64 ld = 0;
  const float* x = contiguous_rows(X, buf, &ld);
  const i64 n = X.cols;
  std::fill(G, G + n * n, 0.0f);  // syrk computes beta * G + ...: uninitialized memory could hold NaN
  linalg_kernels().syrk_lower_f32(x, X.rows, n, ld, 1.0f, 0.0f, G);
  for (i64 i = 0; i < n; ++i)
    for (i64 j = i + 1; j < n; ++j) G[i * n + j] = G[j * n + i];
}

AwqScaleResult awq_search_linear(const AnyMatrixView& W, const float* G, i64 n_tokens, const float* x_mean,
                                 const float* w_mean, const AwqScaleSearch& p) {
  LOWBIT_CHECK(p.n_grid >= 1, "n_grid must be >= 1, got ", p.n_grid);
  LOWBIT_CHECK(n_tokens > 0, "n_tokens must be > 0, got ", n_tokens);
  const i64 rows = W.rows, cols = W.cols;
  std::vector<float> Wf(static_cast<std::size_t>(rows * cols));
  parallel_for(rows, [&](i64 r) { W.load_row(r, Wf.data() + r * cols); }, min_rows_per_thread(cols));
  const AnyMatrixView Wv(Wf.data(), rows, cols);
  std::vector<float> s(static_cast<std::size_t>(cols)), D(static_cast<std::size_t>(rows * cols));
  AwqScaleResult res;
  res.losses.assign(static_cast<std::size_t>(p.n_grid), 0.0);
  double best = std::numeric_limits<double>::infinity();
  for (int k = 0; k < p.n_grid; ++k) {
    const float alpha = static_cast<float>(static_cast<double>(k) / p.n_grid);
    awq_scales(x_mean, w_mean, cols, alpha, p.duo_scaling, s.data());
    awq_pseudo_quantize(Wv, s.data(), p.grid, D.data());
    parallel_for(rows, [&](i64 r) {
      float* d = D.data() + r * cols;
      const float* w = Wf.data() + r * cols;
      for (i64 c = 0; c < cols; ++c) d[c] -= w[c];
    }, min_rows_per_thread(cols));
    const double loss = linalg_kernels().quadratic_form(D.data(), rows, cols, G) /
                        (static_cast<double>(n_tokens) * static_cast<double>(rows));
    res.losses[static_cast<std::size_t>(k)] = loss;
    if (loss < best) {
      best = loss;
      res.best = k;
      res.scales = s;
    }
  }
  LOWBIT_CHECK(res.best >= 0, "AWQ scale search: no candidate gave a finite loss (non-finite inputs?)");
  return res;
}

void awq_clip_search(const AnyMatrixView& W, const AnyMatrixView& X, const AwqClipSearch& p, float* max_val,
                     double* err) {
  LOWBIT_CHECK(W.rows > 0 && W.cols > 0, "W must be non-empty, got ", W.describe());
  LOWBIT_CHECK(X.cols == W.cols, "X.shape[1]=", X.cols, " must equal W.shape[1]=", W.cols);
  LOWBIT_CHECK(X.rows > 0, "X must hold at least one token, got ", X.describe());
  LOWBIT_CHECK(p.n_grid >= 1, "n_grid must be >= 1, got ", p.n_grid);
  LOWBIT_CHECK(p.max_shrink >= 0.0 && p.max_shrink < 1.0, "max_shrink must be in [0, 1), got ", p.max_shrink);
  const i64 rows = W.rows, cols = W.cols, T = X.rows;
  const i64 gs = awq_group_size(p.grid, cols);
  const i64 G = (cols + gs - 1) / gs;
  const int n_shrink = std::max(1, static_cast<int>(p.max_shrink * p.n_grid));
  const LinearKernels& lk = linear_kernels();
  const GridKernels& gk = grid_kernels();
  const int maxq = (1 << p.grid.bits) - 1;

  std::vector<float> xbuf;
  i64 ldx = 0;
  const float* x = contiguous_rows(X, xbuf, &ldx);
  // Diagonal Gram blocks G_g = X_g^T X_g [len, len], one per group.
  std::vector<std::vector<float>> gram(static_cast<std::size_t>(G));
  parallel_for(G, [&](i64 g) {
    const i64 c0 = g * gs, len = std::min(gs, cols - c0);
    std::vector<float> xt(static_cast<std::size_t>(len * T));
    for (i64 t = 0; t < T; ++t)
      for (i64 j = 0; j < len; ++j) xt[static_cast<std::size_t>(j * T + t)] = x[t * ldx + c0 + j];
    auto& Gg = gram[static_cast<std::size_t>(g)];
    Gg.resize(static_cast<std::size_t>(len * len));
    lk.gemm_nt(xt.data(), len, T, T, xt.data(), len, T, Gg.data(), len);
  });

  std::vector<float> Wf(static_cast<std::size_t>(rows * cols));
  std::vector<i64> bad(static_cast<std::size_t>(rows), -1);
  parallel_for(rows, [&](i64 r) {
    float* w = Wf.data() + r * cols;
    W.load_row(r, w);
    for (i64 c = 0; c < cols; ++c)
      if (!std::isfinite(w[c])) {
        bad[static_cast<std::size_t>(r)] = c;
        return;
      }
  }, min_rows_per_thread(cols));
  check_non_finite_marks(W, bad);

  // Work items: (group, tile of rows). Each (row, group) is decided by one item, in order.
  constexpr i64 kRowTile = 64;
  const i64 n_tiles = (rows + kRowTile - 1) / kRowTile;
  parallel_for_dynamic(G * n_tiles, [&](i64 item) {
    const i64 g = item / n_tiles, tile = item % n_tiles;
    const i64 c0 = g * gs, len = std::min(gs, cols - c0);
    const i64 r0 = tile * kRowTile, nr = std::min(kRowTile, rows - r0);
    const float* Gg = gram[static_cast<std::size_t>(g)].data();
    std::vector<float> amax(static_cast<std::size_t>(nr)), D(static_cast<std::size_t>(nr * len)),
        Y(static_cast<std::size_t>(nr * len)), cur(static_cast<std::size_t>(len));
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(len));
    std::vector<double> best(static_cast<std::size_t>(nr), std::numeric_limits<double>::infinity());
    for (i64 i = 0; i < nr; ++i) {
      const float* w = Wf.data() + (r0 + i) * cols + c0;
      float a = 0.0f;
      for (i64 j = 0; j < len; ++j) a = std::max(a, std::fabs(w[j]));
      amax[static_cast<std::size_t>(i)] = a;
      max_val[(r0 + i) * G + g] = a;
    }
    for (int k = 0; k < n_shrink; ++k) {
      const float factor = static_cast<float>(1.0 - static_cast<double>(k) / p.n_grid);
      for (i64 i = 0; i < nr; ++i) {
        const float* w = Wf.data() + (r0 + i) * cols + c0;
        const float m = amax[static_cast<std::size_t>(i)] * factor;
        for (i64 j = 0; j < len; ++j) cur[static_cast<std::size_t>(j)] = std::min(std::max(w[j], -m), m);
        float lo, hi;
        gk.range(cur.data(), len, &lo, &hi);
        const AwqGrid grid = awq_grid(lo, hi, p.grid.bits, p.grid.zero_point);
        gk.quantize_codes(cur.data(), len, grid.scale, grid.zero, maxq, codes.data());
        float* d = D.data() + i * len;
        for (i64 j = 0; j < len; ++j)
          d[j] = (static_cast<float>(codes[static_cast<std::size_t>(j)]) - grid.zero) * grid.scale - w[j];
      }
      lk.gemm_nt(D.data(), nr, len, len, Gg, len, len, Y.data(), len);  // Y = D G_g (G_g symmetric)
      for (i64 i = 0; i < nr; ++i) {
        double e = 0.0;
        for (i64 j = 0; j < len; ++j)
          e += static_cast<double>(Y[static_cast<std::size_t>(i * len + j)]) * D[static_cast<std::size_t>(i * len + j)];
        e /= static_cast<double>(T);
        if (e < best[static_cast<std::size_t>(i)]) {
          best[static_cast<std::size_t>(i)] = e;
          max_val[(r0 + i) * G + g] = amax[static_cast<std::size_t>(i)] * factor;
        }
      }
    }
    if (err != nullptr)
      for (i64 i = 0; i < nr; ++i) err[(r0 + i) * G + g] = best[static_cast<std::size_t>(i)];
  });
}

}  // namespace lowbit
