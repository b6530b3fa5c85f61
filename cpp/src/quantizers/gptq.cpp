// GPTQ orchestration (REFERENCE.md §1.3-1.6); the heavy loops are in kernels/linalg_impl.hpp.
#include "lowbit/gptq.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <vector>

#include "lowbit/grid.hpp"
#include "lowbit/linalg.hpp"
#include "lowbit/parallel.hpp"
#include "lowbit/rtn.hpp"

namespace lowbit {

namespace {

constexpr i64 kRowChunk = 64;  // rows per sweep task: fixed, so results ignore the thread count

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Upper factor U of inv(A) with inv(A) = U^T U, through the reversed matrix:
// U = J inv(chol(J A J)) J (J reverses the order). Reads A's lower triangle.
bool inverse_cholesky_upper(const std::vector<float>& A, i64 n, std::vector<float>& U) {
  const LinalgKernels& k = linalg_kernels();
  std::vector<float> R(static_cast<std::size_t>(n * n));
  parallel_for(n, [&](i64 i) {
    for (i64 j = 0; j <= i; ++j) R[i * n + j] = A[(n - 1 - j) * n + (n - 1 - i)];
  }, 64);
  if (!k.cholesky_lower(R.data(), n)) return false;
  k.invert_lower(R.data(), n);
  U.assign(static_cast<std::size_t>(n * n), 0.0f);
  bool finite = true;
  for (i64 i = 0; i < n && finite; ++i)
    for (i64 j = i; j < n; ++j) {
      const float v = R[(n - 1 - i) * n + (n - 1 - j)];
      if (!std::isfinite(v)) {
        finite = false;
        break;
      }
      U[i * n + j] = v;
    }
  for (i64 i = 0; i < n && finite; ++i) finite = U[i * n + i] > 0.0f;
  return finite;
}

}  // namespace

GroupedIntShape gptq_output_shape(i64 rows, i64 cols, const GptqParams& p) {
  LOWBIT_CHECK(p.group_size == -1 || p.group_size > 0, "group_size must be -1 or > 0 for GPTQ, got ", p.group_size);
  LOWBIT_CHECK(p.block_size > 0, "block_size must be > 0, got ", p.block_size);
  LOWBIT_CHECK(p.damp_percent >= 0 && p.damp_percent < 1, "damp_percent must be in [0, 1), got ", p.damp_percent);
  LOWBIT_CHECK(p.damp_auto_increment >= 0 && p.damp_auto_increment < 1,
               "damp_auto_increment must be in [0, 1), got ", p.damp_auto_increment);
  return make_grouped_shape(p.bits, rows, cols, p.group_size);
}

GptqStats gptq_quantize(const AnyMatrixView& W, const float* H, i64 h_rows, i64 h_cols, const GptqParams& p,
                        const GroupedIntMutView& out, std::int32_t* g_idx) {
  const auto t_start = std::chrono::steady_clock::now();
  const i64 rows = W.rows, n = W.cols;
  const GroupedIntShape shape = gptq_output_shape(rows, n, p);
  LOWBIT_CHECK(h_rows == h_cols, "H must be square, got shape (", h_rows, ", ", h_cols, ")");
  LOWBIT_CHECK(h_rows == n, "H.shape=(", h_rows, ", ", h_cols, ") must match in_features=", n, " of W (", W.describe(), ")");
  const i64 gs = shape.group_size, G = shape.n_groups();
  const auto nn = static_cast<std::size_t>(n * n);
  GptqStats st;

  // Working copies: W as float32 rows, H as float32.
  std::vector<float> Wm(static_cast<std::size_t>(rows * n));
  parallel_for(rows, [&](i64 r) { W.load_row(r, Wm.data() + r * n); }, 16);
  for (i64 i = 0; i < rows * n; ++i)
    if (!std::isfinite(Wm[static_cast<std::size_t>(i)]))
      throw InvalidArgument(str_cat("W must be finite, but W[", i / n, ", ", i % n, "] = ", Wm[static_cast<std::size_t>(i)]));
  for (std::size_t i = 0; i < nn; ++i)
    if (!std::isfinite(H[i]))
      throw InvalidArgument(str_cat("H must be finite, but H[", i / n, ", ", i % n, "] = ", H[i]));
  std::vector<float> W_orig;
  if (p.compute_objective) W_orig = Wm;
  std::vector<float> Hm(H, H + nn);

  std::vector<float> scales(static_cast<std::size_t>(rows * G)), zeros(scales.size());
  const bool per_channel = gs == n;
  // One group per row: the grid comes from the whole row before dead columns are zeroed.
  if (per_channel)
    parallel_for(rows, [&](i64 r) {
      const Grid g = fit_grid(Wm.data() + r * n, n, p.bits, p.sym, p.mse);
      scales[static_cast<std::size_t>(r)] = g.scale;
      zeros[static_cast<std::size_t>(r)] = g.zero;
    }, 16);

  // Dead inputs (never active): H[i, i] = 1, W[:, i] = 0.
  for (i64 i = 0; i < n; ++i)
    if (Hm[static_cast<std::size_t>(i * n + i)] == 0.0f) {
      Hm[static_cast<std::size_t>(i * n + i)] = 1.0f;
      for (i64 r = 0; r < rows; ++r) Wm[static_cast<std::size_t>(r * n + i)] = 0.0f;
      ++st.dead_columns;
    }

  const bool static_grids = p.static_groups && !per_channel;
  if (static_grids)
    parallel_for(rows, [&](i64 r) {
      for (i64 g = 0; g < G; ++g) {
        const Grid grid = fit_grid(Wm.data() + r * n + g * gs, std::min(gs, n - g * gs), p.bits, p.sym, p.mse);
        scales[static_cast<std::size_t>(r * G + g)] = grid.scale;
        zeros[static_cast<std::size_t>(r * G + g)] = grid.zero;
      }
    }, 16);

  // Act-order: decreasing diag(H); ties keep their original order (stable).
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  if (p.desc_act) {
    std::stable_sort(perm.begin(), perm.end(), [&](std::int64_t a, std::int64_t b) {
      return Hm[static_cast<std::size_t>(a * n + a)] > Hm[static_cast<std::size_t>(b * n + b)];
    });
    std::vector<float> Wp(Wm.size()), Hp(nn);
    parallel_for(rows, [&](i64 r) {
      for (i64 c = 0; c < n; ++c) Wp[r * n + c] = Wm[r * n + perm[c]];
    }, 16);
    parallel_for(n, [&](i64 i) {
      for (i64 j = 0; j < n; ++j) Hp[i * n + j] = Hm[perm[i] * n + perm[j]];
    }, 16);
    Wm.swap(Wp);
    Hm.swap(Hp);
  }

  // Damping, raised until the factorization succeeds.
  const auto t_factor = std::chrono::steady_clock::now();
  double mean_diag = 0.0;
  for (i64 i = 0; i < n; ++i) mean_diag += Hm[static_cast<std::size_t>(i * n + i)];
  mean_diag /= static_cast<double>(n);
  std::vector<float> U;
  double damp = p.damp_percent;
  for (;;) {
    std::vector<float> A = Hm;
    const float add = static_cast<float>(damp * mean_diag);
    for (i64 i = 0; i < n; ++i) A[static_cast<std::size_t>(i * n + i)] += add;
    if (inverse_cholesky_upper(A, n, U)) break;
    ++st.damp_retries;
    damp += p.damp_auto_increment;
    if (p.damp_auto_increment <= 0.0 || damp >= 1.0)
      throw InvalidArgument(str_cat("H is not positive definite even with damp_percent=", damp - p.damp_auto_increment,
                                    " (", st.damp_retries, " tries); is it a Hessian 2 X^T X of real inputs?"));
  }
  st.damp_percent_used = damp;
  st.seconds_factor = seconds_since(t_factor);

  // The sweep, in fixed row chunks.
  const auto t_sweep = std::chrono::steady_clock::now();
  std::vector<std::uint8_t> Q(static_cast<std::size_t>(rows * n));
  std::vector<double> loss(static_cast<std::size_t>(rows), 0.0);
  GptqSweep sw;
  sw.W = Wm.data();
  sw.rows = rows;
  sw.cols = n;
  sw.U = U.data();
  sw.bits = p.bits;
  sw.sym = p.sym;
  sw.group_size = gs;
  sw.grids_given = per_channel || static_grids;
  sw.perm = static_grids && p.desc_act ? perm.data() : nullptr;
  sw.n_groups = G;
  sw.scales = scales.data();
  sw.zeros = zeros.data();
  sw.Q = Q.data();
  sw.loss = loss.data();
  sw.block_size = p.block_size;
  sw.mse = p.mse;
  const LinalgKernels& k = linalg_kernels();
  parallel_for((rows + kRowChunk - 1) / kRowChunk, [&](i64 c) {
    k.gptq_sweep_rows(sw, c * kRowChunk, std::min(rows, (c + 1) * kRowChunk));
  });
  st.seconds_sweep = seconds_since(t_sweep);
  for (double l : loss) st.obs_loss += l;

  // Canonical output: codes back in the original column order.
  parallel_for(rows, [&](i64 r) {
    std::vector<std::uint8_t> codes(static_cast<std::size_t>(n));
    for (i64 c = 0; c < n; ++c) codes[static_cast<std::size_t>(perm[c])] = Q[static_cast<std::size_t>(r * n + c)];
    pack_codes(codes.data(), n, p.bits, out.qweight + r * shape.row_bytes());
  }, 16);
  for (std::size_t i = 0; i < scales.size(); ++i) {
    out.scales[i] = scales[i];
    out.zeros[i] = static_cast<std::uint8_t>(zeros[i]);
  }
  // Group of each original column: dynamic groups follow the sweep (permuted) order; static
  // groups and no act-order give the contiguous c / group_size.
  for (i64 c = 0; c < n; ++c) {
    const i64 orig = perm[static_cast<std::size_t>(c)];
    g_idx[orig] = static_cast<std::int32_t>((static_grids || per_channel ? orig : c) / gs);
  }

  if (p.compute_objective) {
    const auto t_obj = std::chrono::steady_clock::now();
    std::vector<float> Hs(nn);  // the given H, symmetric from its lower triangle
    parallel_for(n, [&](i64 i) {
      for (i64 j = 0; j < n; ++j) Hs[i * n + j] = i >= j ? H[i * n + j] : H[j * n + i];
    }, 16);
    std::vector<float> D(W_orig.size());
    const GroupedIntConstView qv{shape, out.qweight, out.scales, out.zeros, g_idx};
    dequantize_grouped(qv, D.data());
    for (std::size_t i = 0; i < D.size(); ++i) D[i] = W_orig[i] - D[i];
    st.objective = k.quadratic_form(D.data(), rows, n, Hs.data());
    // RTN on the same grid, for comparison.
    std::vector<std::uint8_t> rq(static_cast<std::size_t>(rows * shape.row_bytes()));
    std::vector<float> rs(static_cast<std::size_t>(rows * G));
    std::vector<std::uint8_t> rz(rs.size());
    const AnyMatrixView Wo(W_orig.data(), rows, n);
    const RtnParams rp{p.bits, p.group_size, p.sym};
    rtn_quantize(Wo, rp, GroupedIntMutView{shape, rq.data(), rs.data(), rz.data()});
    dequantize_grouped(GroupedIntConstView{shape, rq.data(), rs.data(), rz.data(), nullptr}, D.data());
    for (std::size_t i = 0; i < D.size(); ++i) D[i] = W_orig[i] - D[i];
    st.objective_rtn = k.quadratic_form(D.data(), rows, n, Hs.data());
    st.seconds_objective = seconds_since(t_obj);
  }
  st.seconds = seconds_since(t_start);
  return st;
}

}  // namespace lowbit
