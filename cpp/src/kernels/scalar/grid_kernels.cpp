// Scalar grid kernels: the definition every SIMD variant must match bit for bit.
#include <cmath>

#include "lowbit/kernels.hpp"

namespace lowbit::scalar {

namespace {

bool range(const float* x, i64 n, float* lo, float* hi) {
  float mn = x[0], mx = x[0];
  float probe = 0.0f;  // x - x is NaN exactly when x is NaN or inf
  for (i64 i = 0; i < n; ++i) {
    const float v = x[i];
    probe += v - v;
    mn = v < mn ? v : mn;
    mx = v > mx ? v : mx;
  }
  *lo = mn;
  *hi = mx;
  return probe == 0.0f;
}

void quantize_codes(const float* x, i64 n, float scale, float zero, int maxq, std::uint8_t* codes) {
  const float qmax = static_cast<float>(maxq);
  for (i64 i = 0; i < n; ++i) {
    float q = std::nearbyint(x[i] / scale) + zero;  // default rounding mode: half to even
    q = q > 0.0f ? q : 0.0f;  // written so that a NaN becomes 0, as _mm256_max_ps does
    q = q < qmax ? q : qmax;
    codes[i] = static_cast<std::uint8_t>(q);
  }
}

void dequantize_codes(const std::uint8_t* codes, i64 n, float scale, float zero, float* y) {
  for (i64 i = 0; i < n; ++i) y[i] = scale * (static_cast<float>(codes[i]) - zero);
}

}  // namespace

const GridKernels kGridKernels = {range, quantize_codes, dequantize_codes};

}  // namespace lowbit::scalar
