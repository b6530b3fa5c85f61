// GPTQ (Frantar et al., 2022): quantize W column by column, each time spreading the rounding
// error over the not-yet-quantized columns through the inverse Hessian (REFERENCE.md §1).
//
// The solver: dead columns, act-order permutation, damping (raised step by step when the
// Cholesky factorization fails), then the sweep. Where the reference forms U = chol(inv(H))
// (a factorization, an inverse and a second factorization), lowbit factors the damped H once,
// H = V^T V with V = inv(U), and runs the equivalent left-looking sweep (see GptqSweep in
// linalg.hpp): one third of the factorization work, one deep GEMM per block. Results equal
// the reference's up to float rounding (a code on a rounding tie may move by one step).
// Rows are independent given V, so they are processed in fixed chunks in parallel: output is
// bit-identical for any thread count.
#pragma once

#include <cstdint>

#include "lowbit/grid.hpp"
#include "lowbit/grouped_int.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

struct GptqParams {
  int bits = 4;                    // 2..8
  i64 group_size = 128;            // -1: one group per row; > 0: groups of columns
  bool sym = true;
  bool desc_act = false;           // act-order: columns by decreasing diag(H)
  bool static_groups = false;      // grids fitted on the original W before the sweep
  bool act_group_aware = false;    // GAR: act-order inside groups, groups by max diag(H); ignored with desc_act
  double damp_percent = 0.01;      // damping = damp_percent * mean(diag(H))
  double damp_auto_increment = 0.01;  // added to damp_percent after each failed factorization
  i64 block_size = 128;            // columns per lazy-batch block
  MseSearch mse;                   // optional MSE grid search for scales
  bool compute_objective = true;   // tr((W - Q) H (W - Q)^T) for GPTQ and for RTN
};

struct GptqStats {
  double damp_percent_used = 0;
  int damp_retries = 0;
  i64 dead_columns = 0;
  double objective = -1;      // tr((W - W_hat) H (W - W_hat)^T) with the given (undamped) H
  double objective_rtn = -1;  // the same for RTN on the same grid (bits, groups, sym)
  double obs_loss = 0;        // sum of (w - q)^2 / d^2: the objective under the damped H
  double seconds = 0, seconds_factor = 0, seconds_sweep = 0, seconds_objective = 0;
};

// Output shape for W [rows, cols] (validates the params).
GroupedIntShape gptq_output_shape(i64 rows, i64 cols, const GptqParams& p);

// W [rows, cols] any dtype/strides; H [cols, cols] float32 row-major, symmetric (its lower
// triangle is read). Writes the canonical grouped layout into `out` and the group of every
// input column into g_idx [cols]. Throws InvalidArgument for bad shapes, non-finite W or H,
// or an H that no damping makes positive definite.
GptqStats gptq_quantize(const AnyMatrixView& W, const float* H, i64 h_rows, i64 h_cols, const GptqParams& p,
                        const GroupedIntMutView& out, std::int32_t* g_idx);

}  // namespace lowbit
