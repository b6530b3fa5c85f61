// Quantized matmul for GGUF block formats, as llama.cpp's CPU mul_mat computes it.
//
// Weights keep ggml's native block bytes (ggml_blocks.hpp): prepare_ggml copies them once
// into an owned, immutable GgmlPackedWeights; on x86 builds every type with a kernel is stored
// instead in an 8-row interleaved layout (ggml_repack.hpp) that the AVX2 kernels stream in one
// pass, bit-identical to the scalar vec_dot (the other paths unpack rows). Per call, each row
// of activations is quantized
// to the weight type's vec_dot_type, exactly as ggml's CPU from_float for that type on x86:
//   Q8_0 for q4_0 / q5_0 / q8_0 / iq4_nl,  Q8_1 for q4_1 / q5_1,  Q8_K for q2_K .. q6_K.
//   Q8_0/Q8_1 (ggml-cpu x86 quantize_row_q8_0/_1): amax = max|x| over 32, d = amax/127 stored
//     as fp16, codes nearbyint(x * (127/amax)) (round half to even; 0 when amax = 0);
//     Q8_1 also stores s = fp16(d * sum(codes)).
//   Q8_K (quantize_row_q8_K_ref): max = the element of largest |x| over 256 (signed),
//     iscale = -127/max, codes min(127, nearest_int(iscale*x)), d = 1/iscale (float32),
//     bsums = sums of 16 codes.
// Then y[m, r] = vec_dot(W row r, quantized x row m): ggml's vec_dot for the pair, block by
// block: an exact integer dot per (sub-)block times the product of the fp16/float scales,
// plus the min term of the types with one (q4_1/q5_1: m*s; k-quants: dmin * sum(m_j *
// bsums)). Integer parts are exact; float sums follow ggml's generic order in the scalar
// kernels (the definition) and may differ in order in the SIMD ones.
//
// Error vs float32 dequantize-then-matmul (act="float32"): each activation is rounded to
// d/2 (Q8_0/Q8_1: d = amax/127 before its fp16 rounding, which adds a relative 2^-11 to the
// block's scale; Q8_K: |d| = amax/127 exactly), so
//   |y_int8 - y_f32| <= sum_k |W_hat[r,k]| * (d(k)/2 + 2^-11 * |x_k|) + float rounding.
//
// Rows with a non-finite activation produce NaN outputs (ggml's would be undefined).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lowbit/common.hpp"
#include "lowbit/format_table.hpp"
#include "lowbit/ggml_repack.hpp"
#include "lowbit/qmatmul.hpp"

namespace lowbit {

// GGUF weights prepared for ggml_qmatmul: the native blocks, one row after the other, or
// (interleave = 8: every supported type on x86 builds) the <type>x8 layout of ggml_repack.hpp,
// stored instead.
struct GgmlPackedWeights {
  QType format = QType::Q4_0;
  QType act_type = QType::Q8_0;  // vec_dot_type: what activations are quantized to
  i64 rows = 0, cols = 0;
  i64 row_bytes = 0;              // row_size(format, cols)
  i64 act_row_bytes = 0;          // row_size(act_type, cols)
  int interleave = 0;             // 0: data is [rows, row_bytes]; 8: data is <type>x8
  std::vector<std::uint8_t> data;

  // Row r's native blocks: in place, or unpacked into tmp (row_bytes) when interleaved.
  const std::uint8_t* native_row(i64 r, std::uint8_t* tmp) const {
    if (interleave == 0) return data.data() + r * row_bytes;
    (format == QType::Q4_K   ? unpack_q4_Kx8_row
     : format == QType::Q6_K ? unpack_q6_Kx8_row
     : format == QType::Q8_0 ? unpack_q8_0x8_row
     : format == QType::Q4_1 ? unpack_q4_1x8_row
     : format == QType::Q5_0 ? unpack_q5_0x8_row
     : format == QType::Q5_1 ? unpack_q5_1x8_row
     : format == QType::Q5_K ? unpack_q5_Kx8_row
     : format == QType::Q3_K ? unpack_q3_Kx8_row
     : format == QType::Q2_K ? unpack_q2_Kx8_row
                             : unpack_q4_0x8_row)(data.data(), r, cols, tmp);
    return tmp;
  }
  i64 nbytes() const { return static_cast<i64>(data.size()); }
};

// The weight types with a kernel, and the activation type ggml pairs each with.
bool ggml_matmul_supported(QType t);
QType ggml_vec_dot_type(QType t);  // Unsupported for a type without a kernel

// Copy rows x row_size(t, cols) bytes of GGUF blocks. cols must be a multiple of the block.
std::shared_ptr<GgmlPackedWeights> prepare_ggml(QType t, const std::uint8_t* data, i64 rows, i64 cols);

// One row of activations -> blocks of `act_type` (Q8_0, Q8_1 or Q8_K), n a multiple of the block.
void ggml_quantize_act_row(QType act_type, const float* x, void* dst, i64 n);

// sum over the row of the products: ggml's vec_dot(n, w_row, a_row) for the weight type.
using GgmlVecDotFn = float (*)(i64 n, const void* w, const void* a);
// out[j] = vec_dot(n, w, a[j]) for j < kGgmlDotRows, each bit-identical to the single call (the
// weight row is decoded once for all of them: prefill).
constexpr int kGgmlDotRows = 4;
using GgmlDotRowsFn = void (*)(i64 n, const void* w, const void* const* a, float* out);

struct GgmlDot {
  GgmlVecDotFn one;
  GgmlDotRowsFn rows;
};

// Per-ISA kernel table (kernels/<isa>/ggml_vec_dot.cpp); scalar is the definition.
struct GgmlDotKernels {
  GgmlDot q4_0, q4_1, q5_0, q5_1, q8_0, iq4_nl, q2_K, q3_K, q4_K, q5_K, q6_K;
  const GgmlRepackKernels* repack;  // kernels on the interleaved layouts; null: unpack rows
  // ggml_quantize_act_row (Q8_0 / Q8_1 / Q8_K), the same bytes in SIMD; null: that one
  void (*quantize_act)(QType act_type, const float* x, void* dst, i64 n);
  const GgmlDot& dot(QType t) const;  // Unsupported for a type without a kernel
};

const GgmlDotKernels& ggml_dot_kernels();         // active ISA
const GgmlDotKernels& ggml_dot_kernels(Isa isa);  // a given one (tests); Unsupported if absent

namespace scalar { extern const GgmlDotKernels kGgmlDotKernels; }
namespace avx2 { extern const GgmlDotKernels kGgmlDotKernels; }

// y float32 [M, rows] = x [M, cols] . W_hat^T. mode: Q8Block (ggml's activation rounding, as
// above) or F32 (dequantized tiles x float32 GEMM). Fixed tiles: bit-identical for any thread
// count.
void ggml_qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const GgmlPackedWeights& w, QActMode mode, float* y);
void ggml_qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const GgmlPackedWeights& w, QActMode mode, float* y,
                  const GgmlDotKernels& k);

}  // namespace lowbit
