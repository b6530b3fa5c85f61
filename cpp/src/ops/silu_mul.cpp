// SwiGLU's elementwise step: silu(gate) * up, in chunks over the threads with the active
// ISA's kernel (kernels/<isa>/activation.cpp). Elementwise, so any split gives the same bits.
#include <algorithm>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

namespace {

constexpr i64 kChunk = 16384;  // elements per parallel item

}  // namespace

void silu_mul(const float* gate, const float* up, i64 n, float* y) {
  LOWBIT_CHECK(n >= 0, "silu_mul: n must be >= 0, got ", n);
  const ActivationKernels& k = activation_kernels();
  parallel_for((n + kChunk - 1) / kChunk, [&](i64 c) {
    const i64 begin = c * kChunk;
    k.silu_mul(gate + begin, up + begin, std::min(kChunk, n - begin), y + begin);
  });
}

}  // namespace lowbit
