// The inner kernels of lowbit::linear, written once and compiled once per ISA. Each
// kernels/<isa>/linear.cpp defines, before including this file:
//   #define Eigen lowbit_eigen_linear_<isa>   (a private copy of Eigen: no cross-ISA symbol mixing)
//   #define LOWBIT_LINEAR_NS <isa>            (the namespace of the exported table)
// Eigen's own threading is off: lowbit::linear splits the work into fixed blocks itself.
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

#include <cstdint>

#include "lowbit/half.hpp"
#include "lowbit/ops.hpp"

namespace lowbit::LOWBIT_LINEAR_NS {

namespace {

using MatRM = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapRM = Eigen::Map<MatRM, 0, Eigen::OuterStride<>>;
using CMapRM = Eigen::Map<const MatRM, 0, Eigen::OuterStride<>>;
using Vec = Eigen::Matrix<float, Eigen::Dynamic, 1>;

void gemm_nt(const float* x, i64 M, i64 K, i64 ldx, const float* w, i64 N, i64 ldw, float* y, i64 ldy) {
  const CMapRM W(w, N, K, Eigen::OuterStride<>(ldw));
  if (M == 1) {  // decode: a matrix-vector product (Eigen's row-major GEMV, dot products)
    const Eigen::Map<const Vec> xv(x, K);
    Eigen::Map<Vec> yv(y, N);
    yv.noalias() = W * xv;
    return;
  }
  const CMapRM X(x, M, K, Eigen::OuterStride<>(ldx));
  MapRM Y(y, M, N, Eigen::OuterStride<>(ldy));
  Y.noalias() = X * W.transpose();
}

// fp16 bits -> float32 with no branch, so the loop below vectorises; the same bits as
// fp16_to_fp32 for all 65536 inputs (tests/cpp/test_ops.cpp checks).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t mag = h & 0x7fffu;
  // normal: rebias the exponent by 127 - 15; inf/NaN (exponent 31) twice as far, to 255,
  // keeping the payload
  const std::uint32_t rebias = mag >= 0x7c00u ? 0x70000000u : 0x38000000u;
  const std::uint32_t normal = (mag << 13) + rebias;
  // subnormal or zero: mantissa * 2^-24, exact (and normal) in float32
  const std::uint32_t sub = float_bits(static_cast<float>(static_cast<std::int32_t>(mag)) * 0x1p-24f);
  // why a mask and not `?:`: GCC turns the select into a branch around the float multiply
  // and then (with -ftrapping-math) will not vectorise it
  const std::uint32_t sub_mask = 0u - static_cast<std::uint32_t>(mag < 0x0400u);
  return bits_float((sub & sub_mask) | (normal & ~sub_mask) | sign);
}

void widen_f16(const std::uint16_t* src, i64 n, float* dst) {
  for (i64 i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
}

void widen_bf16(const std::uint16_t* src, i64 n, float* dst) {
  for (i64 i = 0; i < n; ++i) dst[i] = bits_float(static_cast<std::uint32_t>(src[i]) << 16);
}

}  // namespace

const LinearKernels kLinearKernels = {gemm_nt, widen_f16, widen_bf16};

}  // namespace lowbit::LOWBIT_LINEAR_NS
