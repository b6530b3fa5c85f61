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

constexpr i64 kSyrkTile = 256;   // H tiles of the statistics pass
constexpr i64 kFactorTile = 128; // Cholesky / triangular inverse blocks
constexpr i64 kQuadRows = 64;    // row chunk of the quadratic form

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
    if constexpr (std::is_same_v<Acc, float>) {
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
  MapRM<float> Wc(s.W + r0 * cols, R, cols, Eigen::OuterStride<>(cols));
  MatRM<float> W1(R, B), Err(R, B);
  std::vector<float> sc(static_cast<std::size_t>(R)), zp(static_cast<std::size_t>(R));
  for (i64 i1 = 0; i1 < cols; i1 += B) {
    const i64 i2 = std::min(i1 + B, cols), cnt = i2 - i1;
    W1.leftCols(cnt) = Wc.middleCols(i1, cnt);
    for (i64 i = 0; i < cnt; ++i) {
      const i64 col = i1 + i;
      const float* urow = s.U + col * cols;
      const float d = urow[col];
      if (!s.grids_given && col % gs == 0) {
        // Dynamic groups fit the grid on W (not W1): columns of this group inside the current
        // block have not received the block's own updates yet, as in the reference.
        const i64 g = col / gs, len = std::min(gs, cols - col);
        for (i64 r = 0; r < R; ++r) {
          const Grid grid = fit_grid(&Wc(r, col), len, s.bits, s.sym, s.mse);
          s.scales[(r0 + r) * G + g] = grid.scale;
          s.zeros[(r0 + r) * G + g] = grid.zero;
        }
      }
      const i64 g = (s.perm != nullptr ? s.perm[col] : col) / gs;
      for (i64 r = 0; r < R; ++r) {
        const float scale = s.scales[(r0 + r) * G + g], zero = s.zeros[(r0 + r) * G + g];
        const float w = W1(r, i);
        float q = std::nearbyint(w / scale) + zero;
        q = q > 0.0f ? q : 0.0f;
        q = q < qmax ? q : qmax;
        s.Q[(r0 + r) * cols + col] = static_cast<std::uint8_t>(q);
        const float diff = w - scale * (q - zero);
        const float e = diff / d;
        Err(r, i) = e;
        s.loss[r0 + r] += static_cast<double>(e) * static_cast<double>(e);
      }
      const i64 rest = cnt - i - 1;
      if (rest > 0) {
        const Eigen::Map<const Eigen::Matrix<float, 1, Eigen::Dynamic>> u(urow + col + 1, rest);
        for (i64 r = 0; r < R; ++r) W1.row(r).segment(i + 1, rest) -= Err(r, i) * u;
      }
    }
    if (i2 < cols) {
      const CMapRM<float> Ub(s.U + i1 * cols + i2, cnt, cols - i2, Eigen::OuterStride<>(cols));
      Wc.rightCols(cols - i2).noalias() -= Err.leftCols(cnt) * Ub;
    }
  }
}

double quadratic_form(const float* D, i64 rows, i64 n, const float* H) {
  const CMapRM<float> Hm(H, n, n, Eigen::OuterStride<>(n));
  const i64 nchunks = (rows + kQuadRows - 1) / kQuadRows;
  std::vector<double> part(static_cast<std::size_t>(nchunks), 0.0);
  parallel_for(nchunks, [&](i64 c) {
    const i64 q0 = c * kQuadRows, qr = std::min(kQuadRows, rows - q0);
    const CMapRM<float> Dc(D + q0 * n, qr, n, Eigen::OuterStride<>(n));
    const MatRM<float> E = Dc * Hm;
    part[static_cast<std::size_t>(c)] = (E.template cast<double>().array() * Dc.template cast<double>().array()).sum();
  });
  double total = 0.0;
  for (double p : part) total += p;
  return total;
}

}  // namespace

const LinalgKernels kLinalgKernels = {syrk_lower_f32, syrk_lower_f64, cholesky_lower,
                                      invert_lower,   gptq_sweep_rows, quadratic_form};

}  // namespace lowbit::LOWBIT_LINALG_NS
