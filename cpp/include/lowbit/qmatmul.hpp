// Quantized matmul: y[M, out] = x[M, in] . W_hat^T straight from packed weights, never
// materialising W_hat.
//
// Weights are repacked once (prepare_grouped) into a kernel layout of 32-column blocks:
//   - columns are reordered so that every weight group is contiguous (act-order g_idx is
//     resolved here, once) and each group is padded to whole 32-column blocks; the padded
//     position p reads input column col_of[p] (-1: a pad, activation 0). The per-call cost
//     of the reorder is one gather of x, fused into the activation quantization;
//   - codes of bits <= 4 are stored as nibbles (block = 16 bytes: byte j holds the codes of
//     columns j and j + 16, low nibble first), unsigned; codes of 5..8 bits as bytes
//     (block = 32 bytes) holding code - 128 as int8;
//   - nibble rows are interleaved in groups of kNibbleRowGroup = 4: the 4 rows' blocks b sit
//     side by side (64 bytes, one cache line), so decode streams one contiguous line per 4
//     rows and one 32-byte load holds a pair of rows (kernels/qmatmul_x86_impl.hpp). Rows are
//     padded to a multiple of 4 with zero codes, scales and offsets. Byte rows are not
//     interleaved. Block b of row r: row_codes(r) + b * block_stride();
//   - each (row, group) keeps scale s and offset m with W_hat = s * stored + m
//     (nibbles: m = -s*z; bytes: m = s*(128 - z)). A float offset also covers formats whose
//     zero is not an integer (GGUF Q4_1 "min", HQQ), which can be repacked into this layout.
//
// Activation modes (QActMode):
//   Q8Block  x quantized per 32-column block to int8 (ggml's Q8_0): d = max|x|/127,
//            a = round(x/d) (x*(1/d), half to even). Per block an exact int32 dot with the
//            codes, scaled by s*d. Error vs float32 dequantize-then-matmul is at most
//            sum_k |W_hat[r,k]| * d_block(k)/2 (activation rounding) plus float rounding.
//   F32      float activations: rows of W_hat are dequantized into a cached tile and
//            multiplied by the float32 GEMM of linear (float32-accurate; the reference path).
//   Q8Token  W8A8 (SmoothQuant / torchao): one int8 scale per token (row of x), int8 weights
//            with one group per row; exact int32 accumulation over the whole row, then
//            y = (s_r * d_m) * acc. Only for 8-bit weights with one group.
//
// Kernel table (QMatmulKernels, one per ISA, kernels/<isa>/qmatmul.cpp): the scalar one is
// the definition; SIMD variants match it up to float summation order (integer parts exactly).
//
// Other weight families plug in at two points:
//   - C++: a prepare_<family>() that fills PackedWeights. Any format whose weights are, per
//     32-column block, integer codes times a per-group scale plus a per-group offset reuses
//     every kernel and test unchanged: GGUF Q4_0 (nibbles, group 32, offset -8d), Q4_1
//     (offset = min), Q8_0 (bytes), Q5_0/Q5_1 (bytes), HQQ (float zero -> offset), NF4/FP4
//     (codes through a 16-entry table: a third container whose unpack is a vpshufb lookup).
//     Formats that do not fit (K-quants' 6-bit sub-block scales, FP8) add a QContainer value
//     and their own gemm entry to QMatmulKernels (one per ISA, scalar first).
//   - Python: the family's tensor Layout gets `prepare=` returning `kernel(x, act)`
//     (python/lowbit/tensor.py); QuantizedTensor.matmul and the Llama runtime then use it.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "lowbit/common.hpp"
#include "lowbit/cpu_features.hpp"
#include "lowbit/format_table.hpp"
#include "lowbit/grouped_int.hpp"

namespace lowbit {

constexpr i64 kQBlock = 32;         // columns per kernel block
constexpr i64 kNibbleRowGroup = 4;  // nibble rows interleaved per block (64 bytes)

enum class QContainer : int { Nibble = 0, Byte = 1 };

enum class QActMode : int { Q8Block = 0, F32 = 1, Q8Token = 2 };

// The prepared (repacked) weight: everything a kernel reads. Immutable after prepare.
struct PackedWeights {
  QType format = QType::INT4;
  int bits = 4;
  QContainer container = QContainer::Nibble;
  i64 rows = 0, cols = 0;
  i64 row_group = 1;  // rows interleaved per block: kNibbleRowGroup for nibbles, else 1
  i64 n_blocks = 0;   // 32-column blocks per row (padded)
  i64 n_groups = 0;
  std::vector<std::int32_t> group_block;  // [n_groups + 1] first block of each group
  std::vector<std::int32_t> col_of;       // [n_blocks * 32] source column, -1 = pad; empty: identity
                                          // (padded position p < cols reads column p)
  std::vector<std::uint8_t> codes;        // [padded_rows() / row_group, n_blocks, row_group, block_bytes()]
  std::vector<float> scale, offset;       // [padded_rows(), n_groups]
  std::vector<std::int32_t> zero_adj;     // [rows] (128 - z) when one integer group (W8A8); else empty
  // Table formats (NF4/FP4: prepare_table4): a nibble code c stands for table[c] (float, what
  // dequantize and act="float32" use: W_hat = s * table[c] + m) and, in the int8-activation
  // kernels, for table8[c] * table8_scale with table8[c] = round(127 table[c] / max|table|)
  // (|error| <= max|table| / 254 per weight, times s). Empty: the code is its own value.
  // Table weights have m = 0 (the x86 int8 kernels skip the offset term for them).
  std::vector<float> table;
  std::vector<std::int8_t> table8;
  float table8_scale = 1.0f;  // multiplies s in the int8 kernels (exactly 1 without a table)

  i64 padded_cols() const { return n_blocks * kQBlock; }
  i64 block_bytes() const { return container == QContainer::Nibble ? 16 : 32; }
  i64 row_bytes() const { return n_blocks * block_bytes(); }
  i64 padded_rows() const { return (rows + row_group - 1) / row_group * row_group; }
  // Bytes from block b of a row to its block b + 1.
  i64 block_stride() const { return row_group * block_bytes(); }
  // Block 0 of row r (r < padded_rows()); block b is at + b * block_stride().
  const std::uint8_t* row_codes(i64 r) const {
    return codes.data() + ((r / row_group) * n_blocks * row_group + r % row_group) * block_bytes();
  }
  // Bytes a decode step streams: codes + scales + offsets.
  i64 nbytes() const {
    return static_cast<i64>(codes.size() + 4 * (scale.size() + offset.size()));
  }
};

// Repack a grouped-int matrix (grouped_int.hpp layout) into the kernel layout.
std::shared_ptr<PackedWeights> prepare_grouped(const GroupedIntConstView& q);

// Repack W_hat = scale[r, g] * code[r, c] + offset[r, g] (codes uint8 [rows, cols], one per byte,
// < 2^bits, bits <= 4; scale/offset float32 [rows, cols / group_size]; group_size divides cols):
// affine formats whose zero is a float (HQQ, torchao's int4 tinygemm) reuse every kernel.
// The nibble path stores s and m as given, so act="float32" dequantizes to s * code + m exactly.
std::shared_ptr<PackedWeights> prepare_affine(const std::uint8_t* codes, const float* scale, const float* offset,
                                              int bits, i64 rows, i64 cols, i64 group_size);

// Repack W_hat = scale[r, g] * table[code[r, c]] (codes uint8 [rows, cols] < 16, table float32
// [16] finite, not all zero; scale float32 [rows, cols / group_size]): 16-value formats (NF4,
// FP4) on the nibble kernels through a table (see PackedWeights::table).
std::shared_ptr<PackedWeights> prepare_table4(const std::uint8_t* codes, const float* table, const float* scale,
                                              i64 rows, i64 cols, i64 group_size);

// Activations of rows [0, M) quantized into int8 blocks.
struct ActQ8 {
  i64 M = 0, n_blocks = 0, n_groups = 0;
  const std::int8_t* q = nullptr;  // [M, n_blocks * 32]
  const float* d = nullptr;        // [M, n_blocks] block scales
  const float* gsum = nullptr;     // [M, n_groups] sum over the group of d_b * sum(a in block b)
};

// The per-ISA inner kernels (kernels/<isa>/qmatmul.cpp).
struct QMatmulKernels {
  // One padded row xp [n_blocks * 32] -> int8 codes a, block scales d and block sums of a.
  void (*quantize_row_q8)(const float* xp, i64 n_blocks, std::int8_t* a, float* d, std::int32_t* asum);
  // y[m, r] (m in [m0, m0+mb), r in [r0, r0+rb)), stored at y[(m - m0) * ldy + (r - r0)]:
  //   sum_g ( s[r,g] * sum_{b in g} d[m,b] * dot(stored[r,b], a[m,b]) + offset[r,g] * gsum[m,g] )
  void (*gemm_q8)(const PackedWeights& w, const ActQ8& a, i64 m0, i64 mb, i64 r0, i64 rb, float* y, i64 ldy);
  // Rows [r0, r0+rb) of W_hat in padded column order: dst float32 [rb, padded_cols()].
  void (*dequantize_rows)(const PackedWeights& w, i64 r0, i64 rb, float* dst);
  // acc[m * ldacc + r] = sum_k w[r][k] * a[m][k] exactly (int8 x int8, |a| <= 127), for a tile
  // of rb weight rows (stride ldw bytes) and mb activation rows (stride lda), n a multiple of 32.
  void (*gemm_s8)(const std::int8_t* w, i64 ldw, i64 rb, const std::int8_t* a, i64 lda, i64 mb, i64 n,
                  std::int32_t* acc, i64 ldacc);
};

const QMatmulKernels& qmatmul_kernels();         // active ISA
const QMatmulKernels& qmatmul_kernels(Isa isa);  // a given one (tests); Unsupported if absent

namespace scalar { extern const QMatmulKernels kQMatmulKernels; }
namespace avx2 { extern const QMatmulKernels kQMatmulKernels; }
namespace avx512 { extern const QMatmulKernels kQMatmulKernels; }
namespace avx512_vnni { extern const QMatmulKernels kQMatmulKernels; }
// aarch64 only (kernels/neon/qmatmul.cpp compiled twice): widening multiplies, and SDOT
// (Armv8.2 dotprod, chosen when the CPU has it). Both give bit-identical results.
namespace neon { extern const QMatmulKernels kQMatmulKernels; }
namespace neon_dotprod { extern const QMatmulKernels kQMatmulKernels; }

// Activation input: float32, float16 or bfloat16 rows (contiguous, row stride ldx elements).
enum class ActDType : int { F32 = 0, F16 = 1, BF16 = 2 };

// y float32 [M, rows] = x [M, cols] . W_hat^T. Parallel over fixed tiles (bit-identical for
// any thread count). `isa` selects a kernel table (tests); default the active one.
void qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, QActMode mode, float* y);
void qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, QActMode mode, float* y,
             const QMatmulKernels& k);

}  // namespace lowbit
