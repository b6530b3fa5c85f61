#include "lowbit/grid.hpp"

#include <cfloat>
#include <cmath>

namespace lowbit {

namespace {

// The grid's range after the reference's adjustments (contains 0, symmetric, never empty).
void adjusted_range(float lo, float hi, bool sym, float* xmin_out, float* xmax_out) {
  float xmin = lo < 0.0f ? lo : 0.0f;
  float xmax = hi > 0.0f ? hi : 0.0f;
  if (sym) {
    const float amax = -xmin > xmax ? -xmin : xmax;
    xmin = -amax;
    xmax = amax;
  }
  if (xmin == 0.0f && xmax == 0.0f) {
    xmin = -1.0f;
    xmax = 1.0f;
  }
  *xmin_out = xmin;
  *xmax_out = xmax;
}

Grid grid_from_range(float xmin, float xmax, int bits, bool sym) {
  const int maxq = (1 << bits) - 1;
  float scale;
  const float span = xmax - xmin;
  if (std::isfinite(span)) {
    scale = span / static_cast<float>(maxq);
  } else {  // |x| near FLT_MAX: the float32 difference overflows, the quotient does not
    scale = static_cast<float>((static_cast<double>(xmax) - static_cast<double>(xmin)) / maxq);
  }
  if (!(scale >= FLT_MIN)) scale = FLT_MIN;
  float zero;
  if (sym) {
    zero = static_cast<float>((maxq + 1) / 2);
  } else {
    zero = std::nearbyint(-xmin / scale);
    zero = zero < static_cast<float>(maxq) ? zero : static_cast<float>(maxq);
    zero = zero > 0.0f ? zero : 0.0f;
  }
  return {scale, zero};
}

}  // namespace

Grid minmax_grid(float lo, float hi, int bits, bool sym) {
  float xmin, xmax;
  adjusted_range(lo, hi, sym, &xmin, &xmax);
  return grid_from_range(xmin, xmax, bits, sym);
}

Grid fit_grid(const float* x, i64 n, int bits, bool sym, const MseSearch& mse) {
  float lo = x[0], hi = x[0];
  for (i64 i = 1; i < n; ++i) {
    lo = x[i] < lo ? x[i] : lo;
    hi = x[i] > hi ? x[i] : hi;
  }
  if (!mse.enabled) return minmax_grid(lo, hi, bits, sym);
  float xmin, xmax;
  adjusted_range(lo, hi, sym, &xmin, &xmax);
  const float qmax = static_cast<float>((1 << bits) - 1);
  Grid best = grid_from_range(xmin, xmax, bits, sym);
  double best_err = INFINITY;
  const int steps = static_cast<int>(mse.max_shrink * static_cast<float>(mse.grid));
  for (int i = 0; i < steps; ++i) {
    const float p = static_cast<float>(1.0 - static_cast<double>(i) / mse.grid);
    const Grid g = grid_from_range(p * xmin, p * xmax, bits, sym);
    double err = 0.0;
    for (i64 k = 0; k < n; ++k) {
      float q = std::nearbyint(x[k] / g.scale) + g.zero;
      q = q > 0.0f ? q : 0.0f;
      q = q < qmax ? q : qmax;
      err += std::pow(std::fabs(g.scale * (q - g.zero) - x[k]), static_cast<double>(mse.norm));
    }
    if (err < best_err) {
      best_err = err;
      best = g;
    }
  }
  return best;
}

}  // namespace lowbit
