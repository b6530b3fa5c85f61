// The min-max quantization grid shared by RTN and GPTQ (GPTQ's `find_params`, REFERENCE §1.4).
#pragma once

#include "lowbit/common.hpp"

namespace lowbit {

struct Grid {
  float scale;  // > 0
  float zero;   // integer-valued, in [0, maxq]
};

// Settings of the optional MSE grid search for scales (GPTQ's Quantizer with mse=True).
struct MseSearch {
  bool enabled = false;
  int grid = 100;           // shrink factors p = 1 - i/grid
  float max_shrink = 0.8f;  // for i < max_shrink * grid
  float norm = 2.4f;        // minimise sum |q(x) - x|^norm
};

// Grid for values spanning [lo, hi] with `bits` bits.
//  * the range always contains 0: xmin = min(lo, 0), xmax = max(hi, 0);
//  * sym: xmax = max(|xmin|, xmax), xmin = -xmax, zero = 2^(bits-1). Deliberate difference
//    from the reference code: a group with no negative value is still made symmetric (the
//    reference keeps xmin = 0 there and can represent only ~7/15 of xmax at 4 bits);
//  * asym: zero = round(-xmin / scale) (half to even);
//  * xmin == xmax == 0 -> [-1, 1] (no zero scale);
//  * scale = (xmax - xmin) / maxq in float32 as the reference; it falls back to double when
//    the difference overflows, and is floored at FLT_MIN so subnormal-only groups never
//    divide by zero.
Grid minmax_grid(float lo, float hi, int bits, bool sym);

// The grid for x[0..n): min-max, or with mse.enabled the shrink factor p of [p*xmin, p*xmax]
// that minimises sum |q(x) - x|^norm (first minimum wins). x must be finite.
Grid fit_grid(const float* x, i64 n, int bits, bool sym, const MseSearch& mse);

}  // namespace lowbit
