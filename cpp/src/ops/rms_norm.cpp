// RMSNorm, rounded as Hugging Face's LlamaRMSNorm computes it in float32.
#include <cmath>

#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

void rms_norm(const float* x, i64 M, i64 D, const float* weight, float eps, float* y) {
  LOWBIT_CHECK(M >= 0 && D >= 1, "rms_norm: x must be [M, D] with D >= 1, got M=", M, " D=", D);
  parallel_for(
      M,
      [&](i64 m) {
        const float* xr = x + m * D;
        float* yr = y + m * D;
        // the sum of squares in double: the float32 mean below is then (nearly) the exact one,
        // whatever order a float32 reduction (torch's, ours) would have summed in
        double ss = 0.0;
        for (i64 d = 0; d < D; ++d) ss += static_cast<double>(xr[d]) * xr[d];
        const float var = static_cast<float>(ss / static_cast<double>(D));
        const float r = static_cast<float>(1.0 / std::sqrt(static_cast<double>(var + eps)));
        for (i64 d = 0; d < D; ++d) yr[d] = (xr[d] * r) * weight[d];
      },
      min_rows_per_thread(D));
}

}  // namespace lowbit
