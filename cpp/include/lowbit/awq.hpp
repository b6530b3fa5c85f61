// AWQ (Lin et al., 2023; AutoAWQ): activation-aware per-input-channel scaling, clipping search,
// and AWQ's own min-max quantizer (REFERENCE.md §2.3-2.6).
//
// These are the inner loops of the search; Python (lowbit/methods/awq.py) walks the scaling
// groups of a decoder block and runs the block's sub-modules with the runtime's ops.
//
//  * AWQ's grid (§2.6), per group of `group_size` consecutive input columns of a row:
//      zero_point: scale = max(hi - lo, 1e-5) / maxq, zero = clamp(-round(lo / scale), 0, maxq)
//                  (0 is not forced into [lo, hi], unlike GPTQ's grid);
//      symmetric:  scale = max(amax, 1e-5) / (2^(bits-1) - 1), codes in [-2^(bits-1), 2^(bits-1)-1]
//                  stored with zero = 2^(bits-1);
//    code = clamp(round_half_even(w / scale) + zero, 0, maxq), w_hat = (code - zero) * scale.
//    With group_size <= 0 a group is a whole row; a last partial group is allowed (AutoAWQ
//    requires cols % group_size == 0; lowbit does not).
//  * Scales for the exponent a (duo scaling): s = max(x_mean^a / (w_mean^(1-a) + 1e-4), 1e-4),
//    or s = max(x_mean^a, 1e-4) without; then s /= sqrt(max(s) * min(s)); inf/NaN -> 1.
//  * Losses of a linear scaled on its own (o_proj, down_proj) use the Gram matrix of its inputs:
//    sum_t |X_t (W_hat - W)^T|^2 = tr(D G D^T) with D = W_hat - W and G = X^T X, which is the
//    reference's sum of squared output differences without a GEMM over tokens per candidate.
//  * The clipping search's objective per (row, group) is mean_t (x_t,g . (q_g - w_g))^2
//    = d^T G_g d / n with G_g the group's diagonal block of the Gram of the (subsampled) inputs.
// Everything is float32 in, float32 weights out; sums of squares are accumulated in double.
// Parallel over rows (or fixed tiles); results are bit-identical for any thread count.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/grouped_int.hpp"
#include "lowbit/matrix_view.hpp"

namespace lowbit {

struct AwqGridParams {
  int bits = 4;           // 2..8
  i64 group_size = 128;   // <= 0: one group per row; > 0: groups of columns (last may be partial)
  bool zero_point = true;
};

// Effective group size for `cols` columns (validates the params).
i64 awq_group_size(const AwqGridParams& p, i64 cols);

// out[r, c] = Q(W[r, c] * s[c]) / s[c] with Q AWQ's grid on the scaled row's groups; s may be
// nullptr (no scaling). out: float32 [rows, cols] row-major. Throws InvalidArgument for a
// non-finite weight or a non-positive / non-finite scale.
void awq_pseudo_quantize(const AnyMatrixView& W, const float* s, const AwqGridParams& p, float* out);

// Real quantization onto AWQ's grid, in lowbit's canonical grouped layout (per-row groups).
GroupedIntShape awq_output_shape(i64 rows, i64 cols, const AwqGridParams& p);
void awq_quantize(const AnyMatrixView& W, const AwqGridParams& p, const GroupedIntMutView& out);

// w_mean[c] = mean over the rows of all matrices of |w[r, c]| / (max |w| of (r, group of c) + 1e-6).
// Every matrix has `cols` columns. The mean is accumulated in double (rows in order).
void awq_weight_mean(const std::vector<AnyMatrixView>& Ws, i64 group_size, float* w_mean);

// x_mean[c] = mean over tokens of |X[t, c]| (double accumulation; X [T, cols]).
void awq_act_mean_abs(const AnyMatrixView& X, double* x_mean);

// Candidate scales s [n] for exponent `alpha` (w_mean ignored when !duo; may then be nullptr).
void awq_scales(const float* x_mean, const float* w_mean, i64 n, float alpha, bool duo, float* s);

// sum_i (a[i] - b[i])^2 in double, fixed-size chunks summed in order (thread-count independent).
double awq_sum_sq_diff(const float* a, const float* b, i64 n);

// Gram matrix G = X^T X of X [T, n] (full symmetric, float32 [n, n]).
void awq_gram(const AnyMatrixView& X, float* G);

struct AwqScaleSearch {
  int n_grid = 20;       // alpha = k / n_grid, k = 0 .. n_grid - 1
  bool duo_scaling = true;
  AwqGridParams grid;
};

struct AwqScaleResult {
  std::vector<double> losses;  // [n_grid]: mean squared output error of each candidate
  int best = -1;               // index of the first minimum
  std::vector<float> scales;   // [cols]: the best candidate's s
};

// The alpha search for one linear scaled on its own (its output is what the loss measures).
// W [rows, cols]; G = X^T X [cols, cols] of its n_tokens inputs; x_mean, w_mean [cols].
// Loss of a candidate = tr(D G D^T) / (n_tokens * rows), D = Q(W s)/s - W.
AwqScaleResult awq_search_linear(const AnyMatrixView& W, const float* G, i64 n_tokens, const float* x_mean,
                                 const float* w_mean, const AwqScaleSearch& p);

struct AwqClipSearch {
  int n_grid = 20;          // shrink factors 1 - i / n_grid
  double max_shrink = 0.5;  // for i < int(max_shrink * n_grid)
  AwqGridParams grid;
};

// Clipping search (§2.5) for W [rows, cols] with inputs X [T, cols] (already subsampled by the
// caller). Writes max_val [rows, n_groups] (the chosen clamp bound, amax * (1 - i/n_grid)) and
// the chosen objective err [rows, n_groups] (nullable). The first minimum wins.
void awq_clip_search(const AnyMatrixView& W, const AnyMatrixView& X, const AwqClipSearch& p, float* max_val,
                     double* err);

}  // namespace lowbit
