// Dense linear algebra behind GPTQ and the statistics pass, dispatched per ISA.
//
// Eigen is compiled once per ISA (kernels/<isa>/linalg.cpp, each with its own flags and its
// own copy of Eigen in a renamed namespace, so the linker never mixes AVX2 and SSE2
// instantiations). Eigen's internal threading is off: every parallel loop goes through
// parallel_for over fixed tiles, so results are bit-identical for any thread count.
// Matrices are row-major float32 with a leading dimension (elements between rows).
#pragma once

#include <cstdint>

#include "lowbit/common.hpp"
#include "lowbit/cpu_features.hpp"
#include "lowbit/grid.hpp"

namespace lowbit {

// One GPTQ column sweep over a range of rows (REFERENCE.md §1.5-1.6), in the left-looking
// form that needs no matrix inverse. With V the upper Cholesky factor of the damped H
// (H = V^T V; V = inv(U) for the reference's U), the weight column j sees just before it is
// rounded
//     W_eff[:, j] = W[:, j] + sum_{i<j} (W - Q)[:, i] * V[i, j] / V[j, j],
// which equals the reference's sequence of error-feedback updates (E U = W - Q). Blocks of
// `block_size` columns get the contribution of all earlier columns in one GEMM; inside a
// block the columns update each other by rank-1 steps. The caller prepared the permuted
// working weights and (for per-channel or static groups) the grids.
struct GptqSweep {
  float* W = nullptr;              // [rows, cols] permuted weights; processed columns become W - Q
  i64 rows = 0, cols = 0;
  const float* Vs = nullptr;       // [cols, cols] upper: V[i, j] / V[j, j] (unit diagonal)
  const float* vdiag = nullptr;    // [cols] V[j, j] = 1 / U[j, j]
  int bits = 4;
  bool sym = true;
  i64 group_size = 0;              // > 0; == cols for one group per row
  bool grids_given = false;        // scales/zeros are inputs (per-channel or static groups)
  // Dynamic groups only: for block b, inv(Vs[i1:i1+L, i1:i1+L]) (upper, row-major L x L) at
  // block_inv + block_inv_offset[b], L = block_inv_size[b] (0: no group starts in the block).
  const float* block_inv = nullptr;
  const i64* block_inv_offset = nullptr;
  const i64* block_inv_size = nullptr;
  const std::int64_t* perm = nullptr;  // static groups + act-order: original column of position c
  i64 n_groups = 1;
  float* scales = nullptr;         // [rows, n_groups]
  float* zeros = nullptr;          // [rows, n_groups] (integer-valued)
  std::uint8_t* Q = nullptr;       // [rows, cols] codes, permuted column order
  double* loss = nullptr;          // [rows] sum over columns of (w - q)^2 / d^2 (OBS loss)
  i64 block_size = 128;
  MseSearch mse;
};

struct LinalgKernels {
  // H[i, j] (i >= j) = beta * H[i, j] + alpha * sum_t X[t, i] X[t, j]; X [T, n] with row
  // stride ldx; H [n, n] row-major. Only the lower triangle is written.
  void (*syrk_lower_f32)(const float* X, i64 T, i64 n, i64 ldx, float alpha, float beta, float* H);
  void (*syrk_lower_f64)(const float* X, i64 T, i64 n, i64 ldx, double alpha, double beta, double* H);
  // In place: the lower triangle of A [n, n] becomes L with A = L L^T. Returns false when A
  // is not (numerically) positive definite; A's contents are then unspecified.
  bool (*cholesky_lower)(float* A, i64 n);
  // In place: lower-triangular L [n, n] (lower triangle read) becomes inv(L), with the strict
  // upper triangle zeroed.
  void (*invert_lower)(float* L, i64 n);
  // Rows [r0, r1) of a GPTQ sweep.
  void (*gptq_sweep_rows)(const GptqSweep& s, i64 r0, i64 r1);
  // sum_r (D H D^T)[r, r] for D [rows, n] (ld n) and symmetric H [n, n] (lower triangle read).
  double (*quadratic_form)(const float* D, i64 rows, i64 n, const float* H);
};

const LinalgKernels& linalg_kernels();           // active ISA
const LinalgKernels& linalg_kernels(Isa isa);    // a specific one (tests)

namespace scalar { extern const LinalgKernels kLinalgKernels; }
namespace avx2 { extern const LinalgKernels kLinalgKernels; }
namespace avx512 { extern const LinalgKernels kLinalgKernels; }

}  // namespace lowbit
