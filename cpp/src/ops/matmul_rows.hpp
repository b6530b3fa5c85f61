// Helpers the matmul drivers share (ops/qmatmul.cpp, ops/ggml_qmatmul.cpp, ops/lut_qmatmul.cpp):
// per-thread scratch and reading one activation row as float32.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "lowbit/ops.hpp"
#include "lowbit/qmatmul.hpp"

namespace lowbit::matmul_rows {

// v grown to at least n elements (scratch reused across calls); its data.
template <class T>
T* grow(std::vector<T>& v, i64 n) {
  if (static_cast<i64>(v.size()) < n) v.resize(static_cast<std::size_t>(n));
  return v.data();
}

// Row m of x as float32: in place for float32, else widened from f16/bf16 into tmp [K].
inline const float* act_row(const void* x, ActDType xt, i64 ldx, i64 m, i64 K, float* tmp) {
  if (xt == ActDType::F32) return static_cast<const float*>(x) + m * ldx;
  const auto* h = static_cast<const std::uint16_t*>(x) + m * ldx;
  const LinearKernels& lk = linear_kernels();
  (xt == ActDType::F16 ? lk.widen_f16 : lk.widen_bf16)(h, K, tmp);
  return tmp;
}

// Row m of x as float32 in a packed weight's padded column order: dst [Kp]. col_of empty: the
// K columns then zeros; else dst[p] = x[col_of[p]] (0 where col_of[p] < 0).
inline void load_act_row(const void* x, ActDType xt, i64 ldx, i64 m, i64 K, i64 Kp,
                         const std::vector<std::int32_t>& col_of, float* tmp, float* dst) {
  const float* src = act_row(x, xt, ldx, m, K, tmp);
  if (col_of.empty()) {
    std::memcpy(dst, src, static_cast<std::size_t>(K) * sizeof(float));
    std::fill(dst + K, dst + Kp, 0.0f);
  } else {
    for (i64 p = 0; p < Kp; ++p) {
      const std::int32_t c = col_of[static_cast<std::size_t>(p)];
      dst[p] = c < 0 ? 0.0f : src[c];
    }
  }
}

}  // namespace lowbit::matmul_rows
