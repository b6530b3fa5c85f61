// SwiGLU's elementwise step: silu(gate) * up.
#include <algorithm>
#include <cmath>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

// Hugging Face's g / (1 + exp(-g)). Large negative g: exp(-g) overflows to inf and the
// quotient is -0 (the right limit), except for g = -inf where it would be -inf/inf = NaN.
inline float silu(float g) {
  if (g == -INFINITY) return -0.0f;
  return g / (1.0f + std::exp(-g));
}

constexpr i64 kChunk = 16384;  // elements per parallel item

}  // namespace

void silu_mul(const float* gate, const float* up, i64 n, float* y) {
  LOWBIT_CHECK(n >= 0, "silu_mul: n must be >= 0, got ", n);
  parallel_for((n + kChunk - 1) / kChunk, [&](i64 c) {
    const i64 end = std::min(n, (c + 1) * kChunk);
    for (i64 i = c * kChunk; i < end; ++i) y[i] = silu(gate[i]) * up[i];
  });
}

}  // namespace lowbit
