// The dense linear algebra kernels, written once and compiled once per ISA. Each
// kernels/<isa>/linalg.cpp defines, before including this file:
//   #define Eigen lowbit_eigen_<isa>   (a private copy of Eigen: no cross-ISA symbol mixing)
//   #define LOWBIT_LINALG_NS <isa>     (the namespace of the exported table)
// Tiles have fixed sizes and each tile is computed by one thread in a fixed order, so the
// results do not depend on the number of threads.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Cholesky>
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include "lowbit/grid.hpp"
#include "lowbit/linalg.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit::LOWBIT_LINALG_NS {

namespace {

template <class T>
using MatRM = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <class T>
using MapRM = Eigen::Map<MatRM<T>, 0, Eigen::OuterStride<>>;
template <class T>
using CMapRM = Eigen::Map<const MatRM<T>, 0, Eigen::OuterStride<>>;

constexpr i64 kSyrkTile = 512;   // H tiles of the statistics pass
constexpr i64 kFactorTile = 128; // Cholesky / triangular inverse blocks

// Tile t of the lower triangle of an nb x nb tile grid -> (bi, bj), bj <= bi.
void lower_tile(i64 t, i64* bi, i64* bj) {
  i64 i = static_cast<i64>((std::sqrt(8.0 * static_cast<double>(t) + 1.0) - 1.0) / 2.0);
  while (i * (i + 1) / 2 > t) --i;
  while ((i + 1) * (i + 2) / 2 <= t) ++i;
  *bi = i;
  *bj = t - i * (i + 1) / 2;
}

template <class Acc>
void syrk_lower(const float* X, i64 T, i64 n, i64 ldx, Acc alpha, Acc beta, Acc* H) {
  const i64 nb = (n + kSyrkTile - 1) / kSyrkTile;
  parallel_for_dynamic(nb * (nb + 1) / 2, [&](i64 t) {
    i64 bi, bj;
    lower_tile(t, &bi, &bj);
    const i64 i0 = bi * kSyrkTile, ni = std::min(kSyrkTile, n - i0);
    const i64 j0 = bj * kSyrkTile, nj = std::min(kSyrkTile, n - j0);
    const CMapRM<float> Xi(X + i0, T, ni, Eigen::OuterStride<>(ldx));
    const CMapRM<float> Xj(X + j0, T, nj, Eigen::OuterStride<>(ldx));
    MatRM<Acc> G(ni, nj);
    if (bi == bj) {  // diagonal tile: a triangular product skips (most of) the upper half
      G.setZero();
      if constexpr (std::is_same_v<Acc, float>) {
        G.template selfadjointView<Eigen::Lower>().rankUpdate(Xi.transpose(), Acc(1));
      } else {
        G.template selfadjointView<Eigen::Lower>().rankUpdate(Xi.template cast<Acc>().transpose(), Acc(1));
      }
    } else if constexpr (std::is_same_v<Acc, float>) {
      G.noalias() = Xi.transpose() * Xj;
    } else {
      G.noalias() = Xi.template cast<Acc>().transpose() * Xj.template cast<Acc>();
    }
    MapRM<Acc> Ht(H + i0 * n + j0, ni, nj, Eigen::OuterStride<>(n));
    for (i64 r = 0; r < ni; ++r) {
      const i64 last = bi == bj ? r + 1 : nj;  // diagonal tiles: lower part only
      for (i64 c = 0; c < last; ++c) Ht(r, c) = beta * Ht(r, c) + alpha * G(r, c);
    }
  });
}

void syrk_lower_f32(const float* X, i64 T, i64 n, i64 ldx, float alpha, float beta, float* H) {
  syrk_lower<float>(X, T, n, ldx, alpha, beta, H);
}
void syrk_lower_f64(const float* X, i64 T, i64 n, i64 ldx, double alpha, double beta, double* H) {
  syrk_lower<double>(X, T, n, ldx, alpha, beta, H);
}

// Right-looking blocked Cholesky: factor a diagonal block, solve the panel below it, update
// the trailing lower triangle tile by tile.
bool cholesky_lower(float* A, i64 n) {
  const i64 b = kFactorTile;
  for (i64 k0 = 0; k0 < n; k0 += b) {
    const i64 kb = std::min(b, n - k0);
    MapRM<float> Akk(A + k0 * n + k0, kb, kb, Eigen::OuterStride<>(n));
    MatRM<float> D = Akk;
    Eigen::LLT<MatRM<float>, Eigen::Lower> llt(D);
    if (llt.info() != Eigen::Success) return false;
    const MatRM<float> L = llt.matrixL();
    for (i64 d = 0; d < kb; ++d)
      if (!(L(d, d) > 0.0f) || !std::isfinite(L(d, d))) return false;
    Akk.template triangularView<Eigen::Lower>() = L;
    const i64 below = n - k0 - kb;
    if (below <= 0) break;
    const i64 nbelow = (below + b - 1) / b;
    parallel_for(nbelow, [&](i64 t) {
      const i64 i0 = k0 + kb + t * b, ib = std::min(b, n - i0);
      MapRM<float> Aik(A + i0 * n + k0, ib, kb, Eigen::OuterStride<>(n));
      L.transpose().template triangularView<Eigen::Upper>().template solveInPlace<Eigen::OnTheRight>(Aik);
    });
    // Trailing update, one block row at a time (a wider GEMM than tile by tile):
    // A[i, k0+kb .. i0+ib) -= A[i, k] A[k0+kb .. i0+ib, k]^T.
    parallel_for_dynamic(nbelow, [&](i64 t) {
      const i64 bi = nbelow - 1 - t;  // longest rows first
      const i64 i0 = k0 + kb + bi * b, ib = std::min(b, n - i0);
      const i64 j0 = k0 + kb, width = i0 + ib - j0;
      const CMapRM<float> Aik(A + i0 * n + k0, ib, kb, Eigen::OuterStride<>(n));
      const CMapRM<float> Ajk(A + j0 * n + k0, width, kb, Eigen::OuterStride<>(n));
      MapRM<float> Aij(A + i0 * n + j0, ib, width, Eigen::OuterStride<>(n));
      Aij.noalias() -= Aik * Ajk.transpose();
    });
  }
  return true;
}

// inv(L) block column by block column: column j solves L X = E_j by forward substitution,
// independently of the other columns. Only L's lower triangle is read; the strict upper
// triangle of the result is zero (the solved rows of a column are read back, so the
// diagonal blocks must be clean).
void invert_lower(float* Lp, i64 n) {
  const i64 b = kFactorTile;
  const MatRM<float> L = MapRM<float>(Lp, n, n, Eigen::OuterStride<>(n));  // read-only copy
  const i64 nb = (n + b - 1) / b;
  parallel_for_dynamic(nb, [&](i64 bj) {
    const i64 j0 = bj * b, jb = std::min(b, n - j0), m = n - j0;
    // Block column j of inv(L) solves L[j0:, j0:] X = [I; 0] (blocked TRSM inside Eigen).
    MatRM<float> X = MatRM<float>::Zero(m, jb);
    X.topRows(jb).setIdentity();
    L.bottomRightCorner(m, m).template triangularView<Eigen::Lower>().solveInPlace(X);
    MapRM<float>(Lp + j0 * n + j0, m, jb, Eigen::OuterStride<>(n)) = X;
    for (i64 r = j0; r < j0 + jb; ++r)  // zero the strict upper triangle right of this block
      for (i64 c = j0 + jb; c < n; ++c) Lp[r * n + c] = 0.0f;
  });
}

void gptq_sweep_rows(const GptqSweep& s, i64 r0, i64 r1) {
  const i64 R = r1 - r0, cols = s.cols, B = s.block_size, G = s.n_groups, gs = s.group_size;
  const float qmax = static_cast<float>((1 << s.bits) - 1);
  MapRM<float> Wc(s.W + r0 * cols, R, cols, Eigen::OuterStride<>(cols));  // columns < i1 hold W - Q
  const CMapRM<float> Vs(s.Vs, cols, cols, Eigen::OuterStride<>(cols));
  // The block is kept transposed (a column of W is a contiguous row of W1T), so rounding a
  // column and the rank-1 updates run over contiguous vectors of the chunk's rows.
  MatRM<float> W1T(B, R), WoT(B, R), DT(B, R), P, corr(R, B);
  std::vector<double> loss(static_cast<std::size_t>(R), 0.0);
  Eigen::Matrix<std::uint8_t, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> QT(B, R);
  std::vector<float> sc(static_cast<std::size_t>(R)), zp(static_cast<std::size_t>(R));
  i64 cur_group = -1;
  for (i64 i1 = 0; i1 < cols; i1 += B) {
    const i64 i2 = std::min(i1 + B, cols), cnt = i2 - i1;
    WoT.topRows(cnt) = Wc.middleCols(i1, cnt).transpose();
    if (i1 > 0) {  // all earlier columns' corrections: one deep-k GEMM (row-major: Eigen's fast form)
      corr.leftCols(cnt).noalias() = Wc.leftCols(i1) * Vs.block(0, i1, i1, cnt);
      corr.leftCols(cnt) += Wc.middleCols(i1, cnt);
      W1T.topRows(cnt) = corr.leftCols(cnt).transpose();
    } else {
      W1T.topRows(cnt) = WoT.topRows(cnt);
    }
    if (!s.grids_given) {
      // Dynamic groups are fitted, as in the reference, on the weights as they stand after the
      // earlier *blocks* only (the right-looking partial state), and a group may run past this
      // block. That state is W + D Vs[:i1, i1:] inv(Vs[i1:, i1:]) with D the processed W - Q;
      // its leading Lb columns need only the inverse of the leading Lb x Lb triangle
      // (precomputed once per block by the caller).
      const i64 b = i1 / B, Lb = s.block_inv_size[b];
      if (Lb > 0) {
        P.resize(R, Lb);
        if (i1 > 0) {
          MatRM<float> Y(R, Lb);
          Y.leftCols(cnt) = W1T.topRows(cnt).transpose() - Wc.middleCols(i1, cnt);  // D Vs[:i1, block]
          if (Lb > cnt) Y.rightCols(Lb - cnt).noalias() = Wc.leftCols(i1) * Vs.block(0, i2, i1, Lb - cnt);
          const CMapRM<float> Tinv(s.block_inv + s.block_inv_offset[b], Lb, Lb, Eigen::OuterStride<>(Lb));
          P.noalias() = Y * Tinv;
          P += Wc.middleCols(i1, Lb);
        } else {
          P = Wc.middleCols(i1, Lb);
        }
      }
    }
    for (i64 i = 0; i < cnt; ++i) {
      const i64 col = i1 + i;
      if (!s.grids_given && col % gs == 0) {
        const i64 g = col / gs, len = std::min(gs, cols - col);
        for (i64 r = 0; r < R; ++r) {
          const Grid grid = fit_grid(&P(r, i), len, s.bits, s.sym, s.mse);  // P's rows are contiguous
          s.scales[(r0 + r) * G + g] = grid.scale;
          s.zeros[(r0 + r) * G + g] = grid.zero;
        }
        cur_group = -1;
      }
      const i64 g = (s.perm != nullptr ? s.perm[col] : col) / gs;
      if (g != cur_group) {  // this group's grids as contiguous vectors over the rows
        for (i64 r = 0; r < R; ++r) {
          sc[static_cast<std::size_t>(r)] = s.scales[(r0 + r) * G + g];
          zp[static_cast<std::size_t>(r)] = s.zeros[(r0 + r) * G + g];
        }
        cur_group = g;
      }
      const float vjj = s.vdiag[col];
      const float* __restrict w = W1T.row(i).data();
      const float* __restrict wo = WoT.row(i).data();
      const float* __restrict scl = sc.data();
      const float* __restrict zpt = zp.data();
      float* __restrict d = DT.row(i).data();
      std::uint8_t* __restrict qc = QT.row(i).data();
      double* __restrict lv = loss.data();
      for (i64 r = 0; r < R; ++r) {
        float q = std::nearbyint(w[r] / scl[r]) + zpt[r];
        q = q > 0.0f ? q : 0.0f;
        q = q < qmax ? q : qmax;
        qc[r] = static_cast<std::uint8_t>(q);
        const float qf = scl[r] * (q - zpt[r]);
        const float e = (w[r] - qf) * vjj;  // (w - q) / U[j, j]
        lv[r] += static_cast<double>(e) * static_cast<double>(e);
        d[r] = wo[r] - qf;  // original W minus the rounded value
      }
      const float* v = s.Vs + col * cols;
      for (i64 k = i + 1; k < cnt; ++k) {  // rank-1: later columns of the block
        const float vk = v[i1 + k];
        float* __restrict wk = W1T.row(k).data();
        for (i64 r = 0; r < R; ++r) wk[r] += d[r] * vk;
      }
    }
    Wc.middleCols(i1, cnt) = DT.topRows(cnt).transpose();
    for (i64 r = 0; r < R; ++r)
      for (i64 i = 0; i < cnt; ++i) s.Q[(r0 + r) * cols + i1 + i] = QT(i, r);
  }
  for (i64 r = 0; r < R; ++r) s.loss[r0 + r] += loss[static_cast<std::size_t>(r)];
}

// tr(D H D^T) = sum_ij H_ij (D^T D)_ij: the Gram matrix's lower triangle costs half of D H.
double quadratic_form(const float* D, i64 rows, i64 n, const float* H) {
  std::vector<float> Gm(static_cast<std::size_t>(n * n));
  syrk_lower<float>(D, rows, n, n, 1.0f, 0.0f, Gm.data());
  std::vector<double> part(static_cast<std::size_t>(n), 0.0);
  parallel_for(n, [&](i64 i) {
    double acc = 0.0;
    const float* g = Gm.data() + i * n;
    const float* h = H + i * n;
    for (i64 j = 0; j < i; ++j) acc += 2.0 * static_cast<double>(g[j]) * h[j];
    part[static_cast<std::size_t>(i)] = acc + static_cast<double>(g[i]) * h[i];
  }, 64);
  double total = 0.0;
  for (double p : part) total += p;
  return total;
}

}  // namespace

const LinalgKernels kLinalgKernels = {syrk_lower_f32, syrk_lower_f64, cholesky_lower,
                                      invert_lower,   gptq_sweep_rows, quadratic_form};

}  // namespace lowbit::LOWBIT_LINALG_NS
