// Table-lookup quantized matmul: the one-time repack (prepare_lut) and the driver that splits
// the product into fixed tiles run by the kernels of one ISA. Layout: lowbit/lut_qmatmul.hpp.
#include "lowbit/lut_qmatmul.hpp"
#include "matmul_rows.hpp"

#include <algorithm>
#include <cstring>
#include <limits>
#include <vector>

#include "lowbit/fp8.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

// ---------------------------------------------------------------------------------- prepare
namespace {

bool same_bits(float a, float b) {
  return (a != a && b != b) || std::memcmp(&a, &b, sizeof(float)) == 0;  // NaN payloads may differ
}

LutDecode decode_of(const float* table, int n) {
  bool is_int = true, e4 = n == 256, e5 = n == 256;
  for (int i = 0; i < n; ++i) {
    is_int = is_int && same_bits(table[i], static_cast<float>(i));
    e4 = e4 && same_bits(table[i], fp8_to_fp32(Fp8Kind::E4M3, static_cast<std::uint8_t>(i)));
    e5 = e5 && same_bits(table[i], fp8_to_fp32(Fp8Kind::E5M2, static_cast<std::uint8_t>(i)));
  }
  return is_int ? LutDecode::Int : e4 ? LutDecode::E4M3 : e5 ? LutDecode::E5M2 : LutDecode::Table;
}

}  // namespace

std::shared_ptr<LutWeights> prepare_lut(const std::uint8_t* codes, i64 rows, i64 cols, const float* table,
                                        int table_size, const float* scale, const float* offset, i64 group_size) {
  LOWBIT_CHECK(rows > 0 && cols > 0, "prepare_lut: shape must be positive, got (", rows, ", ", cols, ")");
  LOWBIT_CHECK(table_size == 16 || table_size == 256, "prepare_lut: table must have 16 or 256 entries, got ",
               table_size);
  LOWBIT_CHECK(group_size > 0 && group_size <= cols, "prepare_lut: group_size must be in 1..", cols, ", got ",
               group_size);
  auto P = std::make_shared<LutWeights>();
  LutWeights& w = *P;
  w.rows = rows;
  w.cols = cols;
  w.table_size = table_size;
  w.table.assign(table, table + table_size);
  w.decode = decode_of(table, table_size);
  const i64 G = (cols + group_size - 1) / group_size;
  w.n_groups = G;
  w.group_block.resize(static_cast<std::size_t>(G + 1));
  w.group_block[0] = 0;
  for (i64 g = 0; g < G; ++g) {
    const i64 len = std::min(group_size, cols - g * group_size);
    w.group_block[static_cast<std::size_t>(g + 1)] =
        static_cast<std::int32_t>(w.group_block[static_cast<std::size_t>(g)] + (len + kQBlock - 1) / kQBlock);
  }
  w.n_blocks = w.group_block[static_cast<std::size_t>(G)];
  LOWBIT_CHECK(w.n_blocks * kQBlock < std::numeric_limits<std::int32_t>::max(), "in_features too large: ", cols);
  const bool identity = G == 1 || group_size % kQBlock == 0;
  const i64 Kp = w.padded_cols();
  if (!identity) {
    w.col_of.assign(static_cast<std::size_t>(Kp), -1);
    for (i64 g = 0; g < G; ++g) {
      const i64 p0 = static_cast<i64>(w.group_block[static_cast<std::size_t>(g)]) * kQBlock;
      const i64 len = std::min(group_size, cols - g * group_size);
      for (i64 i = 0; i < len; ++i) w.col_of[static_cast<std::size_t>(p0 + i)] = static_cast<std::int32_t>(g * group_size + i);
    }
  }
  // codes out of the table: report the first one (row-major) before writing anything
  for (i64 i = 0; i < rows * cols; ++i)
    if (codes[i] >= table_size)
      throw InvalidArgument(str_cat("codes[", i / cols, ", ", i % cols, "] = ", int{codes[i]},
                                    " is out of the ", table_size, "-entry table"));
  w.scale.assign(scale, scale + rows * G);
  if (offset != nullptr) w.offset.assign(offset, offset + rows * G);
  const i64 bb = w.block_bytes();
  w.codes.assign(static_cast<std::size_t>(rows * w.row_bytes()), 0);
  parallel_for(
      rows,
      [&](i64 r) {
        const std::uint8_t* src = codes + r * cols;
        std::uint8_t* dst = w.codes.data() + r * w.row_bytes();
        for (i64 p = 0; p < Kp; ++p) {
          const i64 c = identity ? (p < cols ? p : -1) : w.col_of[static_cast<std::size_t>(p)];
          if (c < 0) continue;  // pad: code 0 (its activation is 0)
          const i64 b = p / kQBlock, j = p % kQBlock;
          if (w.nibble()) {
            int byte, shift;
            w.nibble_at(static_cast<int>(j), &byte, &shift);
            dst[b * bb + byte] |= static_cast<std::uint8_t>(src[c] << shift);
          }
          else dst[b * bb + j] = src[c];
        }
      },
      min_rows_per_thread(cols));
  return P;
}

// ---------------------------------------------------------------------------------- driver
namespace {

// Tile sizes depend on the problem only, never on the thread count.
constexpr i64 kDecodeM = 8;       // M <= 8: tiles of 32 weight rows x all of x
constexpr i64 kDecodeRows = 32;
constexpr i64 kPrefillRows = 64;  // else tiles of 64 rows of W_hat x 256 rows of x
constexpr i64 kPrefillM = 256;

using matmul_rows::grow;

// Row m of x in w's padded column order (matmul_rows.hpp).
void load_row(const void* x, ActDType xt, i64 ldx, i64 m, const LutWeights& w, float* tmp, float* dst) {
  matmul_rows::load_act_row(x, xt, ldx, m, w.cols, w.padded_cols(), w.col_of, tmp, dst);
}

}  // namespace

void lut_qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const LutWeights& w, float* y, const LutKernels& k) {
  LOWBIT_CHECK(M >= 0 && ldx >= w.cols, "lut_qmatmul: x must be [M, ", w.cols, "] with row stride >= ", w.cols,
               ", got M=", M, " ldx=", ldx);
  if (M == 0) return;
  const i64 Kp = w.padded_cols(), N = w.rows, G = w.n_groups;
  const bool decode = M <= kDecodeM;
  thread_local std::vector<float> xbuf, sbuf;
  float* xp = grow(xbuf, M * Kp);
  float* xs = decode && w.has_offset() ? grow(sbuf, M * G) : nullptr;
  parallel_for(
      M,
      [&](i64 m) {
        thread_local std::vector<float> tmp;
        float* row = xp + m * Kp;
        load_row(x, xt, ldx, m, w, grow(tmp, w.cols), row);
        if (xs == nullptr) return;
        for (i64 g = 0; g < G; ++g) {  // one fixed order: shared by every ISA
          float s = 0.0f;
          for (i64 p = w.group_block[static_cast<std::size_t>(g)] * kQBlock;
               p < w.group_block[static_cast<std::size_t>(g + 1)] * kQBlock; ++p)
            s += row[p];
          xs[m * G + g] = s;
        }
      },
      min_rows_per_thread(Kp));
  if (decode) {
    const i64 n_t = (N + kDecodeRows - 1) / kDecodeRows;
    parallel_for(n_t, [&](i64 t) {
      const i64 r0 = t * kDecodeRows, rb = std::min(kDecodeRows, N - r0);
      k.gemv(w, xp, xs, M, r0, rb, y + r0, N);
    });
    return;
  }
  const LinearKernels& lk = linear_kernels();
  const i64 br = kPrefillRows, bm = std::min(M, kPrefillM);
  const i64 n_br = (N + br - 1) / br, n_bm = (M + bm - 1) / bm;
  // consecutive items share a tile of W_hat rows (dequantized once per item)
  parallel_for(n_br * n_bm, [&](i64 t) {
    const i64 r0 = (t / n_bm) * br, rb = std::min(br, N - r0);
    const i64 m0 = (t % n_bm) * bm, mb = std::min(bm, M - m0);
    thread_local std::vector<float> wbuf;
    float* wt = grow(wbuf, rb * Kp);
    k.dequantize_rows(w, r0, rb, wt);
    lk.gemm_nt(xp + m0 * Kp, mb, Kp, Kp, wt, rb, Kp, y + m0 * N + r0, N);
  });
}

// ------------------------------------------------------------------------------- dispatch
const LutKernels& lut_kernels(Isa isa) {
  if (!isa_supported(isa)) throw Unsupported(str_cat("no '", isa_name(isa), "' kernels on this CPU/build"));
#ifdef LOWBIT_HAVE_X86_KERNELS
  if (isa == Isa::Avx512 || isa == Isa::Avx2) return avx2::kLutKernels;  // AVX-512 CPUs run the AVX2 table
#endif
  return scalar::kLutKernels;
}

const LutKernels& lut_kernels() { return lut_kernels(active_isa()); }

}  // namespace lowbit
