#include "lowbit/grid.hpp"

#include <cfloat>
#include <cmath>

namespace lowbit {

Grid minmax_grid(float lo, float hi, int bits, bool sym) {
  const int maxq = (1 << bits) - 1;
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

}  // namespace lowbit
