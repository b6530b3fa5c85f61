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

constexpr i64 kRowChunk = 128;  // rows per sweep task: fixed, so results ignore the thread count

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// V, the upper Cholesky factor of Hp + damping (Hp = H[perm][:, perm] with the diagonal
// replaced by `diag`: dead columns fixed, damping added), as Hp = V^T V. Computed as
// V = J chol(J Hp J) J (J reverses the order). Returns Vs = V with each column j divided
// by V[j, j], and vdiag = diag(V). Reads H's lower triangle only.
bool reversed_cholesky(const float* H, i64 n, const std::vector<std::int64_t>& perm, const std::vector<float>& diag,
                       std::vector<float>& Vs, std::vector<float>& vdiag) {
  const LinalgKernels& k = linalg_kernels();
  std::vector<float> R(static_cast<std::size_t>(n * n));
  constexpr i64 kT = 64;  // tiles: H is read along its rows, R written within a small tile
  const i64 nt = (n + kT - 1) / kT;
  parallel_for(nt, [&](i64 ti) {
    const i64 i0 = ti * kT, i1 = std::min(n, i0 + kT);
    for (i64 j0 = 0; j0 < i1; j0 += kT) {
      const i64 j1 = std::min(i1, j0 + kT);
      for (i64 j = j0; j < j1; ++j) {
        const std::int64_t a = perm[static_cast<std::size_t>(n - 1 - j)];
        for (i64 i = std::max(i0, j + 1); i < i1; ++i) {
          const std::int64_t b = perm[static_cast<std::size_t>(n - 1 - i)];
          R[static_cast<std::size_t>(i * n + j)] = a >= b ? H[a * n + b] : H[b * n + a];
        }
      }
    }
    for (i64 i = i0; i < i1; ++i) R[static_cast<std::size_t>(i * n + i)] = diag[static_cast<std::size_t>(n - 1 - i)];
  });
  if (!k.cholesky_lower(R.data(), n)) return false;
  vdiag.resize(static_cast<std::size_t>(n));
  for (i64 j = 0; j < n; ++j) vdiag[static_cast<std::size_t>(j)] = R[static_cast<std::size_t>((n - 1 - j) * n + (n - 1 - j))];
  for (float d : vdiag)
    if (!(d > 0.0f) || !std::isfinite(d)) return false;
  Vs.resize(static_cast<std::size_t>(n * n));
  std::vector<char> ok(static_cast<std::size_t>(n), 1);
  parallel_for(n, [&](i64 i) {
    float* v = Vs.data() + i * n;
    for (i64 j = 0; j < i; ++j) v[j] = 0.0f;
    const float* r = R.data() + (n - 1 - i) * n + (n - 1);  // r[-j] = R[n-1-i, n-1-j] = V[i, j]
    bool fine = true;
    for (i64 j = i; j < n; ++j) {
      const float x = r[-j] / vdiag[static_cast<std::size_t>(j)];
      fine = fine && std::isfinite(x);
      v[j] = x;
    }
    ok[static_cast<std::size_t>(i)] = fine;
  }, 64);
  return std::all_of(ok.begin(), ok.end(), [](char c) { return c != 0; });
}

// Index of the first non-finite element of a row-major buffer, or -1 (parallel, exact).
i64 first_non_finite(const float* x, i64 rows, i64 cols) {
  std::vector<i64> bad(static_cast<std::size_t>(rows), -1);
  parallel_for(rows, [&](i64 r) {
    for (i64 c = 0; c < cols; ++c)
      if (!std::isfinite(x[r * cols + c])) {
        bad[static_cast<std::size_t>(r)] = r * cols + c;
        break;
      }
  }, 64);
  for (i64 b : bad)
    if (b >= 0) return b;
  return -1;
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
  GptqStats st;

  // Working copies: W as float32 rows, H as float32.
  std::vector<float> Wm(static_cast<std::size_t>(rows * n));
  parallel_for(rows, [&](i64 r) { W.load_row(r, Wm.data() + r * n); }, 16);
  if (const i64 b = first_non_finite(Wm.data(), rows, n); b >= 0)
    throw InvalidArgument(str_cat("W must be finite, but W[", b / n, ", ", b % n, "] = ", Wm[static_cast<std::size_t>(b)]));
  if (const i64 b = first_non_finite(H, n, n); b >= 0)
    throw InvalidArgument(str_cat("H must be finite, but H[", b / n, ", ", b % n, "] = ", H[b]));
  std::vector<float> W_orig;
  if (p.compute_objective) W_orig = Wm;

  std::vector<float> scales(static_cast<std::size_t>(rows * G)), zeros(scales.size());
  const bool per_channel = gs == n;
  // One group per row: the grid comes from the whole row before dead columns are zeroed.
  if (per_channel)
    parallel_for(rows, [&](i64 r) {
      const Grid g = fit_grid(Wm.data() + r * n, n, p.bits, p.sym, p.mse);
      scales[static_cast<std::size_t>(r)] = g.scale;
      zeros[static_cast<std::size_t>(r)] = g.zero;
    }, 16);

  // Dead inputs (never active): H[i, i] = 1, W[:, i] = 0. H itself is never copied: the
  // modified diagonal and the permutation are applied while the factorization is set up.
  std::vector<float> diag(static_cast<std::size_t>(n));
  std::vector<i64> dead;
  for (i64 i = 0; i < n; ++i) {
    diag[static_cast<std::size_t>(i)] = H[i * n + i];
    if (diag[static_cast<std::size_t>(i)] == 0.0f) {
      diag[static_cast<std::size_t>(i)] = 1.0f;
      dead.push_back(i);
    }
  }
  st.dead_columns = static_cast<i64>(dead.size());
  if (!dead.empty())
    parallel_for(rows, [&](i64 r) {
      for (i64 i : dead) Wm[static_cast<std::size_t>(r * n + i)] = 0.0f;
    }, 64);

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
  // Group-aware reordering (GAR, GPTQModel's act_group_aware): the same inside each full group,
  // and whole groups by decreasing max diag(H); a partial last group stays last. Groups stay
  // sets of contiguous original columns, so the output needs no g_idx.
  std::vector<std::int64_t> perm(static_cast<std::size_t>(n));
  std::iota(perm.begin(), perm.end(), 0);
  const bool gar = p.act_group_aware && !p.desc_act && !per_channel;
  const auto by_diag = [&](std::int64_t a, std::int64_t b) {
    return diag[static_cast<std::size_t>(a)] > diag[static_cast<std::size_t>(b)];
  };
  if (p.desc_act) std::stable_sort(perm.begin(), perm.end(), by_diag);
  if (gar) {
    const i64 full = n / gs;
    std::vector<std::int64_t> order(static_cast<std::size_t>(full));
    std::vector<float> score(static_cast<std::size_t>(full));
    for (i64 g = 0; g < full; ++g) {
      order[static_cast<std::size_t>(g)] = g;
      score[static_cast<std::size_t>(g)] = *std::max_element(diag.begin() + g * gs, diag.begin() + (g + 1) * gs);
    }
    std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
      return score[static_cast<std::size_t>(a)] > score[static_cast<std::size_t>(b)];
    });
    for (i64 k = 0; k < full; ++k) {
      auto* dst = perm.data() + k * gs;
      std::iota(dst, dst + gs, order[static_cast<std::size_t>(k)] * gs);
      std::stable_sort(dst, dst + gs, by_diag);
    }
  }
  if (p.desc_act || gar) {
    std::vector<float> Wp(Wm.size());
    parallel_for(rows, [&](i64 r) {
      for (i64 c = 0; c < n; ++c) Wp[r * n + c] = Wm[r * n + perm[c]];
    }, 16);
    Wm.swap(Wp);
  }

  // Damping, raised until the factorization succeeds.
  const auto t_factor = std::chrono::steady_clock::now();
  double mean_diag = 0.0;
  for (float d : diag) mean_diag += d;
  mean_diag /= static_cast<double>(n);
  std::vector<float> Vs, vdiag, damped(static_cast<std::size_t>(n));
  double damp = p.damp_percent;
  for (;;) {
    const float add = static_cast<float>(damp * mean_diag);
    for (i64 c = 0; c < n; ++c) damped[static_cast<std::size_t>(c)] = diag[static_cast<std::size_t>(perm[c])] + add;
    if (reversed_cholesky(H, n, perm, damped, Vs, vdiag)) break;
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
  sw.Vs = Vs.data();
  sw.vdiag = vdiag.data();
  sw.bits = p.bits;
  sw.sym = p.sym;
  sw.group_size = gs;
  sw.grids_given = per_channel || static_grids;
  sw.perm = static_grids && (p.desc_act || gar) ? perm.data() : nullptr;
  sw.n_groups = G;
  sw.scales = scales.data();
  sw.zeros = zeros.data();
  sw.Q = Q.data();
  sw.loss = loss.data();
  sw.block_size = p.block_size;
  sw.mse = p.mse;
  const LinalgKernels& k = linalg_kernels();
  // Dynamic groups: per block, the inverse of the leading triangle of Vs that the grids need
  // (see gptq_sweep_rows); shared by every row chunk.
  std::vector<float> block_inv;
  std::vector<i64> inv_offset, inv_size;
  if (!sw.grids_given) {
    const i64 B = p.block_size, nb = (n + B - 1) / B;
    inv_offset.resize(static_cast<std::size_t>(nb));
    inv_size.resize(static_cast<std::size_t>(nb));
    i64 total = 0;
    for (i64 b = 0; b < nb; ++b) {
      const i64 i1 = b * B, i2 = std::min(i1 + B, n), last_start = (i2 - 1) / gs * gs;
      const i64 L = last_start >= i1 ? std::max(i2 - i1, std::min(n, last_start + gs) - i1) : 0;
      inv_offset[static_cast<std::size_t>(b)] = total;
      inv_size[static_cast<std::size_t>(b)] = L;
      total += L * L;
    }
    block_inv.assign(static_cast<std::size_t>(total), 0.0f);
    parallel_for(nb, [&](i64 b) {
      const i64 L = inv_size[static_cast<std::size_t>(b)], i1 = b * B;
      if (L == 0 || b == 0) return;  // block 0 needs none (nothing before it)
      float* T = block_inv.data() + inv_offset[static_cast<std::size_t>(b)];
      for (i64 r = 0; r < L; ++r)  // the transposed (lower) triangle
        for (i64 c = 0; c <= r; ++c) T[r * L + c] = Vs[static_cast<std::size_t>((i1 + c) * n + i1 + r)];
      k.invert_lower(T, L);  // inv(Vs_b^T) = inv(Vs_b)^T, strict upper zeroed
      for (i64 r = 0; r < L; ++r)  // transpose back: inv(Vs_b), upper
        for (i64 c = r + 1; c < L; ++c) std::swap(T[r * L + c], T[c * L + r]);
    });
    sw.block_inv = block_inv.data();
    sw.block_inv_offset = inv_offset.data();
    sw.block_inv_size = inv_size.data();
  }
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
  // GAR with dynamic grids: the sweep's k-th group is original group perm[k * gs] / gs.
  const bool remap_groups = gar && !static_grids;
  for (i64 r = 0; r < rows; ++r)
    for (i64 sg = 0; sg < G; ++sg) {  // sg: group in sweep order
      const i64 g = remap_groups ? perm[static_cast<std::size_t>(sg * gs)] / gs : sg;
      out.scales[r * G + g] = scales[static_cast<std::size_t>(r * G + sg)];
      out.zeros[r * G + g] = static_cast<std::uint8_t>(zeros[static_cast<std::size_t>(r * G + sg)]);
    }
  // Group of each original column: dynamic act-order groups follow the sweep (permuted) order;
  // static groups, GAR and no reordering give the contiguous c / group_size.
  for (i64 c = 0; c < n; ++c) {
    const i64 orig = perm[static_cast<std::size_t>(c)];
    g_idx[orig] = static_cast<std::int32_t>((static_grids || per_channel || gar ? orig : c) / gs);
  }

  if (p.compute_objective) {
    const auto t_obj = std::chrono::steady_clock::now();
    std::vector<float> D(W_orig.size());
    const GroupedIntConstView qv{shape, out.qweight, out.scales, out.zeros, g_idx};
    dequantize_grouped(qv, D.data());
    for (std::size_t i = 0; i < D.size(); ++i) D[i] = W_orig[i] - D[i];
    st.objective = k.quadratic_form(D.data(), rows, n, H);
    // RTN on the same grid, for comparison.
    std::vector<std::uint8_t> rq(static_cast<std::size_t>(rows * shape.row_bytes()));
    std::vector<float> rs(static_cast<std::size_t>(rows * G));
    std::vector<std::uint8_t> rz(rs.size());
    const AnyMatrixView Wo(W_orig.data(), rows, n);
    const RtnParams rp{p.bits, p.group_size, p.sym};
    rtn_quantize(Wo, rp, GroupedIntMutView{shape, rq.data(), rs.data(), rz.data()});
    dequantize_grouped(GroupedIntConstView{shape, rq.data(), rs.data(), rz.data(), nullptr}, D.data());
    for (std::size_t i = 0; i < D.size(); ++i) D[i] = W_orig[i] - D[i];
    st.objective_rtn = k.quadratic_form(D.data(), rows, n, H);
    st.seconds_objective = seconds_since(t_obj);
  }
  st.seconds = seconds_since(t_start);
  return st;
}

}  // namespace lowbit
