// Quantized matmul: the one-time repack of grouped-int weights into the kernel layout, and
// the driver that quantizes activations and splits the product into fixed tiles, each run
// by the kernels of one ISA (kernels/<isa>/qmatmul.cpp). Layout: lowbit/qmatmul.hpp.
#include "lowbit/qmatmul.hpp"
#include "matmul_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "lowbit/half.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

// ---------------------------------------------------------------------------------- prepare
namespace {

// The kernel layout of a [rows, cols] matrix of `bits`-bit codes with G groups: group g holds
// the columns members[g] (act-order) or the g-th run of group_size columns. row_codes(r, dst)
// writes row r's codes in column order; scale_offset(r, g) gives (s, m) with W_hat = s * stored + m
// (stored: the nibble code, or code - 128 for bytes).
template <class RowCodes, class ScaleOffset>
std::shared_ptr<PackedWeights> pack_rows(QType format, int bits, i64 rows, i64 cols, i64 group_size, i64 G,
                                         const std::int32_t* g_idx, RowCodes row_codes, ScaleOffset scale_offset) {
  auto P = std::make_shared<PackedWeights>();
  PackedWeights& w = *P;
  w.format = format;
  w.bits = bits;
  w.container = bits <= 4 ? QContainer::Nibble : QContainer::Byte;
  w.rows = rows;
  w.cols = cols;
  w.row_group = w.container == QContainer::Nibble ? kNibbleRowGroup : 1;
  w.n_groups = G;

  // Columns of each group, ascending (act-order: bucketed by g_idx once, here).
  std::vector<std::vector<std::int32_t>> members;
  if (g_idx != nullptr) {
    members.resize(static_cast<std::size_t>(G));
    for (i64 c = 0; c < cols; ++c) members[static_cast<std::size_t>(g_idx[c])].push_back(static_cast<std::int32_t>(c));
  }
  auto group_len = [&](i64 g) -> i64 {
    if (g_idx != nullptr) return static_cast<i64>(members[static_cast<std::size_t>(g)].size());
    return std::min(group_size, cols - g * group_size);
  };
  w.group_block.resize(static_cast<std::size_t>(G + 1));
  w.group_block[0] = 0;
  for (i64 g = 0; g < G; ++g) {
    const i64 nb = (group_len(g) + kQBlock - 1) / kQBlock;
    w.group_block[static_cast<std::size_t>(g + 1)] = static_cast<std::int32_t>(w.group_block[static_cast<std::size_t>(g)] + nb);
  }
  w.n_blocks = w.group_block[static_cast<std::size_t>(G)];
  LOWBIT_CHECK(w.n_blocks * kQBlock < std::numeric_limits<std::int32_t>::max(), "in_features too large: ", cols);
  // Identity: padded position p is column p (groups already start on block boundaries).
  const bool identity = g_idx == nullptr && (G == 1 || group_size % kQBlock == 0);
  const i64 Kp = w.padded_cols();
  if (!identity) {
    w.col_of.assign(static_cast<std::size_t>(Kp), -1);
    for (i64 g = 0; g < G; ++g) {
      const i64 p0 = static_cast<i64>(w.group_block[static_cast<std::size_t>(g)]) * kQBlock;
      const i64 n = group_len(g);
      for (i64 i = 0; i < n; ++i)
        w.col_of[static_cast<std::size_t>(p0 + i)] =
            g_idx != nullptr ? members[static_cast<std::size_t>(g)][static_cast<std::size_t>(i)]
                             : static_cast<std::int32_t>(g * group_size + i);
    }
  }

  const i64 stride = w.block_stride();
  // pad rows (up to padded_rows()) keep zero codes, scales and offsets: their outputs are 0
  w.codes.assign(static_cast<std::size_t>(w.padded_rows() * w.row_bytes()), 0);
  w.scale.assign(static_cast<std::size_t>(w.padded_rows() * G), 0.0f);
  w.offset.assign(static_cast<std::size_t>(w.padded_rows() * G), 0.0f);
  parallel_for(
      rows,
      [&](i64 r) {
        std::vector<std::uint8_t> codes(static_cast<std::size_t>(cols));
        row_codes(r, codes.data());
        // rows of one interleaved group write disjoint bytes: safe in parallel
        std::uint8_t* dst = w.codes.data() + (w.row_codes(r) - w.codes.data());
        for (i64 p = 0; p < Kp; ++p) {
          const i64 c = identity ? (p < cols ? p : -1) : w.col_of[static_cast<std::size_t>(p)];
          if (c < 0) continue;  // pad: stored 0 (its activation is 0)
          const int code = codes[static_cast<std::size_t>(c)];
          const i64 b = p / kQBlock, j = p % kQBlock;
          if (w.container == QContainer::Nibble)
            dst[b * stride + (j & 15)] |= static_cast<std::uint8_t>(code << ((j >> 4) * 4));
          else
            dst[b * stride + j] = static_cast<std::uint8_t>(static_cast<std::int8_t>(code - 128));
        }
        for (i64 g = 0; g < G; ++g) {
          const auto [s, m] = scale_offset(r, g);
          w.scale[static_cast<std::size_t>(r * G + g)] = s;
          w.offset[static_cast<std::size_t>(r * G + g)] = m;
        }
      },
      min_rows_per_thread(cols));
  return P;
}

}  // namespace

std::shared_ptr<PackedWeights> prepare_grouped(const GroupedIntConstView& q) {
  validate_grouped(q);
  const GroupedIntShape& sh = q.shape;
  const i64 G = sh.n_groups(), in_row_bytes = sh.row_bytes();
  auto P = pack_rows(
      static_cast<QType>(kLowbitTypeIdBase + sh.bits), sh.bits, sh.rows, sh.cols, sh.group_size, G, q.g_idx,
      [&](i64 r, std::uint8_t* codes) { unpack_codes(q.qweight + r * in_row_bytes, sh.cols, sh.bits, codes); },
      [&](i64 r, i64 g) {
        const i64 i = (sh.per_tensor ? 0 : r) * G + g;
        const float s = q.scales[i];
        const int z = q.zeros[i];
        // nibbles: s (code - z) = s code + (-s z); bytes: s (code - 128) + s (128 - z)
        return std::pair<float, float>{s, sh.bits <= 4 ? -s * static_cast<float>(z) : s * static_cast<float>(128 - z)};
      });
  if (sh.bits == 8 && G == 1) {  // W8A8 needs the integer zero
    P->zero_adj.resize(static_cast<std::size_t>(sh.rows));
    for (i64 r = 0; r < sh.rows; ++r) P->zero_adj[static_cast<std::size_t>(r)] = 128 - q.zeros[sh.per_tensor ? 0 : r];
  }
  return P;
}

std::shared_ptr<PackedWeights> prepare_affine(const std::uint8_t* codes, const float* scale, const float* offset,
                                              int bits, i64 rows, i64 cols, i64 group_size) {
  LOWBIT_CHECK(bits >= 1 && bits <= 4, "prepare_affine: bits must be in [1, 4], got ", bits);
  LOWBIT_CHECK(rows > 0 && cols > 0, "prepare_affine: shape must be positive, got (", rows, ", ", cols, ")");
  LOWBIT_CHECK(group_size > 0 && cols % group_size == 0, "prepare_affine: group_size must divide in_features=",
               cols, ", got ", group_size);
  const i64 G = cols / group_size;
  const int maxq = (1 << bits) - 1;
  for (i64 i = 0; i < rows * cols; ++i)
    LOWBIT_CHECK(codes[i] <= maxq, "prepare_affine: codes must be < 2^bits = ", maxq + 1, ", got ",
                 static_cast<int>(codes[i]), " at flat index ", i);
  for (i64 i = 0; i < rows * G; ++i)
    LOWBIT_CHECK(std::isfinite(scale[i]) && std::isfinite(offset[i]),
                 "prepare_affine: scale and offset must be finite, got ", scale[i], ", ", offset[i], " at ", i);
  return pack_rows(
      static_cast<QType>(kLowbitTypeIdBase + bits), bits, rows, cols, group_size, G, nullptr,
      [&](i64 r, std::uint8_t* dst) { std::copy(codes + r * cols, codes + (r + 1) * cols, dst); },
      [&](i64 r, i64 g) { return std::pair<float, float>{scale[r * G + g], offset[r * G + g]}; });
}

std::shared_ptr<PackedWeights> prepare_table4(const std::uint8_t* codes, const float* table, const float* scale,
                                              i64 rows, i64 cols, i64 group_size) {
  LOWBIT_CHECK(rows > 0 && cols > 0, "prepare_table4: shape must be positive, got (", rows, ", ", cols, ")");
  LOWBIT_CHECK(group_size > 0 && cols % group_size == 0, "prepare_table4: group_size must divide in_features=",
               cols, ", got ", group_size);
  float tmax = 0.0f;
  for (int c = 0; c < 16; ++c) {
    LOWBIT_CHECK(std::isfinite(table[c]), "prepare_table4: table must be finite, got ", table[c], " at ", c);
    tmax = std::max(tmax, std::fabs(table[c]));
  }
  LOWBIT_CHECK(tmax > 0.0f, "prepare_table4: table must not be all zeros");
  const i64 G = cols / group_size;
  for (i64 i = 0; i < rows * cols; ++i)
    LOWBIT_CHECK(codes[i] < 16, "prepare_table4: codes must be < 16, got ", static_cast<int>(codes[i]), " at flat index ", i);
  for (i64 i = 0; i < rows * G; ++i)
    LOWBIT_CHECK(std::isfinite(scale[i]), "prepare_table4: scale must be finite, got ", scale[i], " at ", i);
  auto P = pack_rows(
      QType::NF4, 4, rows, cols, group_size, G, nullptr,
      [&](i64 r, std::uint8_t* dst) { std::copy(codes + r * cols, codes + (r + 1) * cols, dst); },
      [&](i64 r, i64 g) { return std::pair<float, float>{scale[r * G + g], 0.0f}; });
  P->table.assign(table, table + 16);
  P->table8.resize(16);
  for (int c = 0; c < 16; ++c) P->table8[static_cast<std::size_t>(c)] = static_cast<std::int8_t>(std::nearbyint(127.0f * (table[c] / tmax)));
  P->table8_scale = tmax / 127.0f;
  return P;
}

// ---------------------------------------------------------------------------------- driver
namespace {

// Tile sizes depend on the problem only, never on the thread count, so each output is
// produced by the same operations however the tiles are shared.
constexpr i64 kDecodeRows = 32;   // M <= kDecodeM: tiles of 32 weight rows x all of x
constexpr i64 kDecodeM = 8;
constexpr i64 kPrefillRows = 128;  // else tiles of 128 weight rows x 128 rows of x (64-row tiles ran at half
constexpr i64 kPrefillM = 128;    // the rate on 4096 x 4096, M = 512, AVX2: 52 vs 102 GOP/s on 1 thread)

using matmul_rows::grow;

// Row m of x in w's padded column order (matmul_rows.hpp).
void load_act_row(const void* x, ActDType xt, i64 ldx, i64 m, const PackedWeights& w, float* tmp, float* dst) {
  matmul_rows::load_act_row(x, xt, ldx, m, w.cols, w.padded_cols(), w.col_of, tmp, dst);
}

void run_q8_block(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, float* y,
                  const QMatmulKernels& k) {
  const i64 Kp = w.padded_cols(), nb = w.n_blocks, G = w.n_groups, N = w.rows;
  // Per calling thread: reused across calls, so decode does not page-fault fresh buffers.
  thread_local std::vector<std::int8_t> aq;
  thread_local std::vector<float> ad, gsum;
  thread_local std::vector<std::int32_t> asum;
  std::int8_t* qa = grow(aq, M * Kp);
  float* da = grow(ad, M * nb);
  float* gs = grow(gsum, M * G);
  std::int32_t* sa = grow(asum, M * nb);
  parallel_for(
      M,
      [&](i64 m) {
        thread_local std::vector<float> row, tmp;
        float* xp = grow(row, Kp);
        load_act_row(x, xt, ldx, m, w, grow(tmp, w.cols), xp);
        k.quantize_row_q8(xp, nb, qa + m * Kp, da + m * nb, sa + m * nb);
        for (i64 g = 0; g < G; ++g) {
          float s = 0.0f;
          for (i64 b = w.group_block[static_cast<std::size_t>(g)]; b < w.group_block[static_cast<std::size_t>(g + 1)]; ++b)
            s += da[m * nb + b] * static_cast<float>(sa[m * nb + b]);
          gs[m * G + g] = s;
        }
      },
      min_rows_per_thread(Kp));
  ActQ8 a;
  a.M = M;
  a.n_blocks = nb;
  a.n_groups = G;
  a.q = qa;
  a.d = da;
  a.gsum = gs;
  const bool decode = M <= kDecodeM;
  const i64 br = decode ? kDecodeRows : kPrefillRows, bm = decode ? M : kPrefillM;
  const i64 n_br = (N + br - 1) / br, n_bm = (M + bm - 1) / bm;
  // consecutive items share a block of x rows (it stays in cache on one thread)
  parallel_for(n_br * n_bm, [&](i64 t) {
    const i64 m0 = (t / n_br) * bm, mb = std::min(bm, M - m0);
    const i64 r0 = (t % n_br) * br, rb = std::min(br, N - r0);
    k.gemm_q8(w, a, m0, mb, r0, rb, y + m0 * N + r0, N);
  });
}

void run_f32(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, float* y, const QMatmulKernels& k) {
  const i64 Kp = w.padded_cols(), N = w.rows;
  thread_local std::vector<float> xbuf;
  float* xp = grow(xbuf, M * Kp);
  parallel_for(
      M,
      [&](i64 m) {
        thread_local std::vector<float> tmp;
        load_act_row(x, xt, ldx, m, w, grow(tmp, w.cols), xp + m * Kp);
      },
      min_rows_per_thread(Kp));
  const LinearKernels& lk = linear_kernels();
  const i64 br = M <= kDecodeM ? kDecodeRows : kPrefillRows, bm = std::min<i64>(M, 256);
  const i64 n_br = (N + br - 1) / br, n_bm = (M + bm - 1) / bm;
  // consecutive items share a block of W_hat rows (dequantized once per item)
  parallel_for(n_br * n_bm, [&](i64 t) {
    const i64 r0 = (t / n_bm) * br, rb = std::min(br, N - r0);
    const i64 m0 = (t % n_bm) * bm, mb = std::min(bm, M - m0);
    thread_local std::vector<float> wbuf;
    float* wt = grow(wbuf, rb * Kp);
    // the float table is read by the scalar definition only (F32 with a table is not a hot path)
    (w.table.empty() ? k : scalar::kQMatmulKernels).dequantize_rows(w, r0, rb, wt);
    lk.gemm_nt(xp + m0 * Kp, mb, Kp, Kp, wt, rb, Kp, y + m0 * N + r0, N);
  });
}

void run_q8_token(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, float* y,
                  const QMatmulKernels& k) {
  if (w.zero_adj.empty() || w.row_group != 1)
    throw Unsupported(str_cat("act='int8_token' (W8A8) needs 8-bit weights with one group per row, got int",
                              w.bits, " with ", w.n_groups, " groups per row"));
  const i64 Kp = w.padded_cols(), N = w.rows;
  // |acc| <= Kp * 127 * 255 must fit int32
  LOWBIT_CHECK(Kp <= (std::numeric_limits<std::int32_t>::max() / (127 * 255)),
               "act='int8_token': in_features=", w.cols, " too large for exact int32 accumulation");
  thread_local std::vector<std::int8_t> aq;
  thread_local std::vector<float> ad;
  thread_local std::vector<std::int32_t> asum;
  std::int8_t* qa = grow(aq, M * Kp);
  float* da = grow(ad, M);
  std::int32_t* sa = grow(asum, M);
  parallel_for(
      M,
      [&](i64 m) {
        thread_local std::vector<float> row, tmp;
        float* xp = grow(row, Kp);
        load_act_row(x, xt, ldx, m, w, grow(tmp, w.cols), xp);
        float amax = 0.0f, probe = 0.0f;
        for (i64 i = 0; i < Kp; ++i) {
          const float v = std::fabs(xp[i]);
          probe += xp[i] - xp[i];
          amax = v > amax ? v : amax;
        }
        std::int8_t* q = qa + m * Kp;
        if (probe != 0.0f) {  // non-finite activations: the token's outputs are NaN
          std::fill(q, q + Kp, std::int8_t{0});
          da[m] = NAN;
          sa[m] = 0;
          return;
        }
        const float scale = amax / 127.0f;
        const float inv = scale != 0.0f ? 1.0f / scale : 0.0f;
        std::int32_t s = 0;
        for (i64 i = 0; i < Kp; ++i) {
          float v = std::nearbyint(xp[i] * inv);
          v = std::max(-127.0f, std::min(127.0f, v));
          q[i] = static_cast<std::int8_t>(v);
          s += q[i];
        }
        da[m] = scale;
        sa[m] = s;
      },
      min_rows_per_thread(Kp));
  const i64 br = M <= kDecodeM ? kDecodeRows : kPrefillRows, bm = M <= kDecodeM ? M : kPrefillM;
  const i64 n_br = (N + br - 1) / br, n_bm = (M + bm - 1) / bm;
  parallel_for(n_br * n_bm, [&](i64 t) {
    const i64 m0 = (t / n_br) * bm, mb = std::min(bm, M - m0);
    const i64 r0 = (t % n_br) * br, rb = std::min(br, N - r0);
    thread_local std::vector<std::int32_t> accbuf;
    std::int32_t* acc = grow(accbuf, mb * rb);
    k.gemm_s8(reinterpret_cast<const std::int8_t*>(w.row_codes(r0)), w.row_bytes(), rb, qa + m0 * Kp, Kp, mb, Kp,
              acc, rb);
    for (i64 m = 0; m < mb; ++m)
      for (i64 r = 0; r < rb; ++r) {
        // exact: |acc + (128 - z) * asum| <= Kp * 127 * 255
        const std::int64_t v = static_cast<std::int64_t>(acc[m * rb + r]) +
                               static_cast<std::int64_t>(w.zero_adj[static_cast<std::size_t>(r0 + r)]) * sa[m0 + m];
        y[(m0 + m) * N + r0 + r] = (w.scale[static_cast<std::size_t>(r0 + r)] * da[m0 + m]) * static_cast<float>(v);
      }
  });
}

}  // namespace

// ------------------------------------------------------------------------------- dispatch
const QMatmulKernels& qmatmul_kernels(Isa isa) {
  if (!isa_supported(isa)) throw Unsupported(str_cat("no '", isa_name(isa), "' kernels on this CPU/build"));
#ifdef LOWBIT_HAVE_X86_KERNELS
  if (isa == Isa::Avx512) return cpu_features().avx512vnni ? avx512_vnni::kQMatmulKernels : avx512::kQMatmulKernels;
  if (isa == Isa::Avx2) return avx2::kQMatmulKernels;
#endif
#ifdef LOWBIT_HAVE_NEON_KERNELS
  if (isa == Isa::Neon) return cpu_features().dotprod ? neon_dotprod::kQMatmulKernels : neon::kQMatmulKernels;
#endif
  return scalar::kQMatmulKernels;
}

const QMatmulKernels& qmatmul_kernels() { return qmatmul_kernels(active_isa()); }

void qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, QActMode mode, float* y,
             const QMatmulKernels& k) {
  LOWBIT_CHECK(M >= 0 && ldx >= w.cols, "qmatmul: x must be [M, ", w.cols, "] with row stride >= ", w.cols,
               ", got M=", M, " ldx=", ldx);
  if (M == 0) return;
  switch (mode) {
    case QActMode::Q8Block: return run_q8_block(x, xt, M, ldx, w, y, k);
    case QActMode::F32: return run_f32(x, xt, M, ldx, w, y, k);
    case QActMode::Q8Token: return run_q8_token(x, xt, M, ldx, w, y, k);
  }
  throw InvalidArgument("qmatmul: unknown activation mode");
}

void qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const PackedWeights& w, QActMode mode, float* y) {
  qmatmul(x, xt, M, ldx, w, mode, y, qmatmul_kernels());
}

}  // namespace lowbit
