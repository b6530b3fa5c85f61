// The elementwise activations of lowbit's ops, written once and compiled once per ISA. Each
// kernels/<isa>/activation.cpp defines LOWBIT_ACTIVATION_NS <isa> (the namespace of the
// exported table) before including this file. The loops are plain arithmetic that the compiler
// vectorises (no libm call per element).
#include <cstdint>

#include "lowbit/ops.hpp"
#include "exp_poly.hpp"

namespace lowbit::LOWBIT_ACTIVATION_NS {

namespace {

// silu(g) = g / (1 + exp(-g)), written on e = exp(-|g|) in (0, 1] so that nothing overflows:
// g >= 0: g / (1 + e); g < 0: g e / (1 + e) (the same fraction multiplied through by e).
// A few roundings from the formula in float32 (exp within ~2 ulp). Limits: g > 87 gives g
// (e < 2^-125 vanishes beside 1), g < -87 gives -0 (e flushes to 0: the true value is below
// 1e-35), g = -inf gives -0 (not -inf * 0), NaN gives NaN. Masks, not `?:`, so GCC vectorises.
inline float silu(float g) {
  const std::uint32_t gb = float_bits(g);
  const float e = exp_nonpositive(bits_float(gb | 0x80000000u));
  const std::uint32_t neg = 0u - (gb >> 31);                      // all ones where g < 0 (or -0)
  const float num = bits_float((float_bits(g * e) & neg) | (gb & ~neg));
  const float s = num / (1.0f + e);
  const std::uint32_t minus_inf = 0u - static_cast<std::uint32_t>(gb == 0xff800000u);
  return bits_float((float_bits(s) & ~minus_inf) | (0x80000000u & minus_inf));
}

void silu_mul(const float* gate, const float* up, i64 n, float* y) {
  for (i64 i = 0; i < n; ++i) y[i] = silu(gate[i]) * up[i];
}

}  // namespace

const ActivationKernels kActivationKernels = {silu_mul};

}  // namespace lowbit::LOWBIT_ACTIVATION_NS
