// Quantized matmul of GGUF block weights (lowbit/ggml_qmatmul.hpp): the one-time copy of the
// blocks, the activation quantizers of llama.cpp's CPU backend, and the driver that splits
// the product into fixed tiles of (weight rows x activation rows), each output one vec_dot.
#include "lowbit/ggml_qmatmul.hpp"
#include "matmul_rows.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "lowbit/ggml_blocks.hpp"
#include "lowbit/half.hpp"
#include "lowbit/kernels.hpp"
#include "lowbit/ops.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit {

// --------------------------------------------------------------------------------- types
bool ggml_matmul_supported(QType t) {
  switch (t) {
    case QType::Q4_0: case QType::Q4_1: case QType::Q5_0: case QType::Q5_1: case QType::Q8_0:
    case QType::IQ4_NL: case QType::Q2_K: case QType::Q3_K: case QType::Q4_K: case QType::Q5_K:
    case QType::Q6_K:
      return true;
    default:
      return false;
  }
}

QType ggml_vec_dot_type(QType t) {
  switch (t) {
    case QType::Q4_0: case QType::Q5_0: case QType::Q8_0: case QType::IQ4_NL: return QType::Q8_0;
    case QType::Q4_1: case QType::Q5_1: return QType::Q8_1;
    case QType::Q2_K: case QType::Q3_K: case QType::Q4_K: case QType::Q5_K: case QType::Q6_K: return QType::Q8_K;
    default: break;
  }
  throw Unsupported(str_cat("no GGUF matmul kernel for format '", traits(t).name,
                            "' (kernels: q4_0 q4_1 q5_0 q5_1 q8_0 iq4_nl q2_K q3_K q4_K q5_K q6_K)"));
}

const GgmlDot& GgmlDotKernels::dot(QType t) const {
  switch (t) {
    case QType::Q4_0: return q4_0;
    case QType::Q4_1: return q4_1;
    case QType::Q5_0: return q5_0;
    case QType::Q5_1: return q5_1;
    case QType::Q8_0: return q8_0;
    case QType::IQ4_NL: return iq4_nl;
    case QType::Q2_K: return q2_K;
    case QType::Q3_K: return q3_K;
    case QType::Q4_K: return q4_K;
    case QType::Q5_K: return q5_K;
    case QType::Q6_K: return q6_K;
    default: break;
  }
  ggml_vec_dot_type(t);  // throws the Unsupported naming the format
  return q4_0;
}

const GgmlDotKernels& ggml_dot_kernels(Isa isa) {
  if (!isa_supported(isa)) throw Unsupported(str_cat("no '", isa_name(isa), "' kernels on this CPU/build"));
#ifdef LOWBIT_HAVE_X86_KERNELS
  if (isa == Isa::Avx2 || isa == Isa::Avx512) return avx2::kGgmlDotKernels;  // AVX-512 reuses the 256-bit code
#endif
  return scalar::kGgmlDotKernels;
}

const GgmlDotKernels& ggml_dot_kernels() { return ggml_dot_kernels(active_isa()); }

// ------------------------------------------------------------------------------- prepare
std::shared_ptr<GgmlPackedWeights> prepare_ggml(QType t, const std::uint8_t* data, i64 rows, i64 cols) {
  const QType at = ggml_vec_dot_type(t);
  LOWBIT_CHECK(rows > 0 && cols > 0, "prepare_ggml: rows and cols must be positive, got ", rows, " x ", cols);
  const QTypeTraits& tr = traits(t);
  LOWBIT_CHECK(cols % tr.block_size == 0, "in_features must be a multiple of ", tr.name, "'s block size ",
               tr.block_size, ", got ", cols);
  auto P = std::make_shared<GgmlPackedWeights>();
  P->format = t;
  P->act_type = at;
  P->rows = rows;
  P->cols = cols;
  P->row_bytes = row_size(t, cols);
  P->act_row_bytes = row_size(at, cols);
#ifdef LOWBIT_HAVE_X86_KERNELS
  // the AVX2/AVX-512 kernels read these interleaved (ggml_repack.hpp)
  using Repack = void (*)(const std::uint8_t*, i64, i64, std::uint8_t*);
  i64 (*nbytes)(i64, i64) = nullptr;
  Repack repack = nullptr;
  switch (t) {
    case QType::Q4_0: case QType::IQ4_NL: nbytes = q4_0x8_nbytes, repack = repack_q4_0x8; break;
    case QType::Q4_K: nbytes = q4_Kx8_nbytes, repack = repack_q4_Kx8; break;
    case QType::Q8_0: nbytes = q8_0x8_nbytes, repack = repack_q8_0x8; break;
    case QType::Q6_K: nbytes = q6_Kx8_nbytes, repack = repack_q6_Kx8; break;
    case QType::Q4_1: nbytes = q4_1x8_nbytes, repack = repack_q4_1x8; break;
    case QType::Q5_0: nbytes = q5_0x8_nbytes, repack = repack_q5_0x8; break;
    case QType::Q5_1: nbytes = q5_1x8_nbytes, repack = repack_q5_1x8; break;
    case QType::Q5_K: nbytes = q5_Kx8_nbytes, repack = repack_q5_Kx8; break;
    case QType::Q3_K: nbytes = q3_Kx8_nbytes, repack = repack_q3_Kx8; break;
    case QType::Q2_K: nbytes = q2_Kx8_nbytes, repack = repack_q2_Kx8; break;
    default: break;
  }
  if (repack != nullptr) {
    P->interleave = kQ4_0x8Rows;
    P->data.resize(static_cast<std::size_t>(nbytes(rows, cols)));
    repack(data, rows, cols, P->data.data());
    return P;
  }
#endif
  P->data.assign(data, data + rows * P->row_bytes);
  return P;
}

// ------------------------------------------------------------------------- activations
namespace {

// ggml-cpu's x86 quantize_row_q8_0 / _q8_1 on one 32-block: codes, d, and the code sum.
inline float q8_block_cpu(const float* x, std::int8_t* qs, std::int32_t* sum) {
  float amax = 0.0f;
  for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  std::int32_t s = 0;
  for (int j = 0; j < 32; ++j) {
    qs[j] = static_cast<std::int8_t>(std::nearbyint(x[j] * id));  // half to even, as _mm256_round_ps
    s += qs[j];
  }
  *sum = s;
  return d;
}

}  // namespace

void ggml_quantize_act_row(QType act_type, const float* x, void* dst, i64 n) {
  using namespace ggml;
  switch (act_type) {
    case QType::Q8_0: {
      auto* y = static_cast<block_q8_0*>(dst);
      for (i64 i = 0; i < n / QK8_0; ++i) {
        std::int32_t s;
        y[i].d = fp32_to_fp16(q8_block_cpu(x + QK8_0 * i, y[i].qs, &s));
      }
      return;
    }
    case QType::Q8_1: {
      auto* y = static_cast<block_q8_1*>(dst);
      for (i64 i = 0; i < n / QK8_1; ++i) {
        std::int32_t s;
        const float d = q8_block_cpu(x + QK8_1 * i, y[i].qs, &s);
        y[i].d = fp32_to_fp16(d);
        y[i].s = fp32_to_fp16(d * static_cast<float>(s));
      }
      return;
    }
    case QType::Q8_K:
      traits(QType::Q8_K).from_float_ref(x, dst, n, nullptr);  // ggml's x86 build uses the reference
      return;
    default:
      throw InvalidArgument(str_cat("activation type must be q8_0, q8_1 or q8_K, got ", traits(act_type).name));
  }
}

// ------------------------------------------------------------------------------ driver
namespace {

constexpr i64 kDecodeM = 8;       // M <= 8: tiles of 16 weight rows x all of x
constexpr i64 kTileRows = 16;
constexpr i64 kPrefillM = 64;     // else 16 weight rows x 64 rows of x

using matmul_rows::act_row;
using matmul_rows::grow;

bool all_finite(const float* x, i64 n) {
  // exponent all ones exactly for NaN and inf; an integer OR-reduction (vectorized; a float
  // probe sum would be a serial chain of adds, 4 cycles per element)
  std::uint32_t bad = 0;
  for (i64 i = 0; i < n; ++i) {
    std::uint32_t b;
    std::memcpy(&b, x + i, 4);
    bad |= static_cast<std::uint32_t>((b & 0x7f800000u) == 0x7f800000u);
  }
  return bad == 0;
}

// Interleaved groups of 8 weight rows against activation rows m0..m1 in steps of 4 (then 1):
// each output is computed by the same operations whatever its neighbours, so the tiling (fixed,
// kTileRows / 8 groups x bm rows of x) only orders the work. Act: GgmlQ8Act or GgmlQ8KAct.
template <class Act, class Fn>
void run_x8(const std::vector<Act>& act, i64 M, i64 bm, i64 nb, i64 block_bytes, const GgmlPackedWeights& w,
            float* y, Fn one, Fn four, GgmlQ4_0x16Fn two) {
  const i64 N = w.rows;
  constexpr i64 kGroupsPerTile = kTileRows / kQ4_0x8Rows;
  const i64 groups = (N + kQ4_0x8Rows - 1) / kQ4_0x8Rows;
  const i64 n_bg = (groups + kGroupsPerTile - 1) / kGroupsPerTile, n_bm = (M + bm - 1) / bm;
  const i64 gbytes = nb * block_bytes;
  parallel_for(n_bg * n_bm, [&](i64 t) {
    const i64 m0 = (t / n_bg) * bm, m1 = std::min(M, m0 + bm);
    const i64 g0 = (t % n_bg) * kGroupsPerTile, g1 = std::min(groups, g0 + kGroupsPerTile);
    float o[8 * kQ4_0x8Rows];
    i64 g = g0;
    if constexpr (std::is_same_v<Act, GgmlQ8Act>) {  // prefill: pairs of groups x 4 rows of x
      if (g1 - g0 == 2 && m1 - m0 >= 4 && two != nullptr) {
        const std::uint8_t* wg = w.data.data() + g0 * gbytes;
        const i64 r0 = g0 * kQ4_0x8Rows, nr = std::min<i64>(2 * kQ4_0x8Rows, N - r0);
        i64 m = m0;
        for (; m + 4 <= m1; m += 4) {
          two(nb, wg, gbytes, act.data() + m, o);
          for (int j = 0; j < 4; ++j)
            for (i64 r = 0; r < nr; ++r) y[(m + j) * N + r0 + r] = o[(4 * (r / kQ4_0x8Rows) + j) * kQ4_0x8Rows + r % kQ4_0x8Rows];
        }
        for (; m < m1; ++m)
          for (i64 gg = g0; gg < g1; ++gg) {
            one(nb, w.data.data() + gg * gbytes, act.data() + m, o);
            std::memcpy(y + m * N + gg * kQ4_0x8Rows, o,
                        sizeof(float) * static_cast<std::size_t>(std::min<i64>(kQ4_0x8Rows, N - gg * kQ4_0x8Rows)));
          }
        return;
      }
    }
    for (; g < g1; ++g) {
      const std::uint8_t* wg = w.data.data() + g * gbytes;
      const i64 r0 = g * kQ4_0x8Rows;
      const auto nr = static_cast<std::size_t>(std::min<i64>(kQ4_0x8Rows, N - r0));
      i64 m = m0;
      for (; m + 4 <= m1; m += 4) {
        four(nb, wg, act.data() + m, o);
        for (int j = 0; j < 4; ++j) std::memcpy(y + (m + j) * N + r0, o + kQ4_0x8Rows * j, sizeof(float) * nr);
      }
      for (; m < m1; ++m) {
        one(nb, wg, act.data() + m, o);
        std::memcpy(y + m * N + r0, o, sizeof(float) * nr);
      }
    }
  });
}

// The per-call side data of the activation blocks the interleaved kernels read (their scale as
// float and code sum for q8_0; the paired bsums for q8_K), then the product.
void run_interleaved(const std::uint8_t* qa, i64 M, i64 bm, const GgmlPackedWeights& w, float* y,
                     const GgmlRepackKernels& rk) {
  const i64 K = w.cols, ab = w.act_row_bytes;
  if (w.act_type == QType::Q8_K) {
    // Q8_K bsums (one per 16 codes) as int16 pairs in one int32: q6_K's, q3_K's and q2_K's
    // sub-blocks are 16 codes (each bsum), q4_K's and q5_K's are 32 (two bsums added)
    const bool q6 = w.format == QType::Q6_K || w.format == QType::Q3_K || w.format == QType::Q2_K;
    const int per = q6 ? 1 : 2, n_pairs = ggml::QK_K / 16 / (2 * per);
    const i64 nb = K / ggml::QK_K;
    thread_local std::vector<std::int32_t> pbuf;
    std::int32_t* pairs = grow(pbuf, M * nb * n_pairs);
    std::vector<GgmlQ8KAct> act(static_cast<std::size_t>(M));
    parallel_for(M, [&](i64 m) {
      const auto* blk = reinterpret_cast<const ggml::block_q8_K*>(qa + m * ab);
      std::int32_t* pm = pairs + m * nb * n_pairs;
      for (i64 i = 0; i < nb; ++i)
        for (int p = 0; p < n_pairs; ++p) {
          int lo = 0, hi = 0;
          for (int t = 0; t < per; ++t) {
            lo += blk[i].bsums[2 * per * p + t];
            hi += blk[i].bsums[2 * per * p + per + t];
          }
          pm[n_pairs * i + p] = static_cast<std::int32_t>(static_cast<std::uint32_t>(static_cast<std::uint16_t>(lo)) |
                                                         (static_cast<std::uint32_t>(static_cast<std::uint16_t>(hi)) << 16));
        }
      act[static_cast<std::size_t>(m)] = {qa + m * ab, pm};
    }, min_rows_per_thread(K));
    if (w.format == QType::Q6_K) run_x8(act, M, bm, nb, kQ6_Kx8BlockBytes, w, y, rk.q6_Kx8_1, rk.q6_Kx8_4, nullptr);
    else if (w.format == QType::Q3_K) run_x8(act, M, bm, nb, kQ3_Kx8BlockBytes, w, y, rk.q3_Kx8_1, rk.q3_Kx8_4, nullptr);
    else if (w.format == QType::Q2_K) run_x8(act, M, bm, nb, kQ2_Kx8BlockBytes, w, y, rk.q2_Kx8_1, rk.q2_Kx8_4, nullptr);
    else if (w.format == QType::Q5_K) run_x8(act, M, bm, nb, kQ5_Kx8BlockBytes, w, y, rk.q5_Kx8_1, rk.q5_Kx8_4, nullptr);
    else run_x8(act, M, bm, nb, kQ4_Kx8BlockBytes, w, y, rk.q4_Kx8_1, rk.q4_Kx8_4, nullptr);
    return;
  }
  const i64 nb = K / ggml::QK8_0;
  thread_local std::vector<float> dbuf, s1buf;
  thread_local std::vector<std::int32_t> sbuf;
  float* ad = grow(dbuf, M * nb);
  std::int32_t* as = grow(sbuf, M * nb);
  std::vector<GgmlQ8Act> act(static_cast<std::size_t>(M));
  if (w.act_type == QType::Q8_1) {  // q4_1 / q5_1: d and s as float (the code sums unused)
    float* a1 = grow(s1buf, M * nb);
    parallel_for(M, [&](i64 m) {
      const auto* blk = reinterpret_cast<const ggml::block_q8_1*>(qa + m * ab);
      for (i64 i = 0; i < nb; ++i) {
        ad[m * nb + i] = fp16_to_fp32(blk[i].d);
        a1[m * nb + i] = fp16_to_fp32(blk[i].s);
      }
      act[static_cast<std::size_t>(m)] = {qa + m * ab, ad + m * nb, nullptr, a1 + m * nb};
    }, min_rows_per_thread(K));
    if (w.format == QType::Q4_1) run_x8(act, M, bm, nb, kQ4_1x8BlockBytes, w, y, rk.q4_1x8_1, rk.q4_1x8_4, rk.q4_1x16_4);
    else run_x8(act, M, bm, nb, kQ5_1x8BlockBytes, w, y, rk.q5_1x8_1, rk.q5_1x8_4, rk.q5_1x16_4);
    return;
  }
  parallel_for(M, [&](i64 m) {
    const auto* blk = reinterpret_cast<const ggml::block_q8_0*>(qa + m * ab);
    for (i64 i = 0; i < nb; ++i) {
      std::int32_t s = 0;
      for (int j = 0; j < ggml::QK8_0; ++j) s += blk[i].qs[j];
      ad[m * nb + i] = fp16_to_fp32(blk[i].d);
      as[m * nb + i] = s;
    }
    act[static_cast<std::size_t>(m)] = {qa + m * ab, ad + m * nb, as + m * nb, nullptr};
  }, min_rows_per_thread(K));
  if (w.format == QType::Q8_0) run_x8(act, M, bm, nb, kQ8_0x8BlockBytes, w, y, rk.q8_0x8_1, rk.q8_0x8_4, nullptr);
  else if (w.format == QType::Q5_0)
    run_x8(act, M, bm, nb, kQ5_0x8BlockBytes, w, y, rk.q5_0x8_1, rk.q5_0x8_4, rk.q5_0x16_4);
  else if (w.format == QType::IQ4_NL)
    run_x8(act, M, bm, nb, kQ4_0x8BlockBytes, w, y, rk.iq4_nlx8_1, rk.iq4_nlx8_4, nullptr);
  else run_x8(act, M, bm, nb, kQ4_0x8BlockBytes, w, y, rk.q4_0x8_1, rk.q4_0x8_4, rk.q4_0x16_4);
}

void run_q8(const void* x, ActDType xt, i64 M, i64 ldx, const GgmlPackedWeights& w, float* y,
            const GgmlDotKernels& k) {
  const i64 K = w.cols, N = w.rows, ab = w.act_row_bytes;
  const GgmlDot& dot = k.dot(w.format);
  thread_local std::vector<std::uint8_t> abuf;
  thread_local std::vector<std::uint8_t> finite;
  std::uint8_t* qa = grow(abuf, M * ab);
  std::uint8_t* ok = grow(finite, M);
  parallel_for(
      M,
      [&](i64 m) {
        thread_local std::vector<float> tmp;
        const float* xr = act_row(x, xt, ldx, m, K, grow(tmp, K));
        ok[m] = all_finite(xr, K) ? 1 : 0;
        if (!ok[m]) std::memset(qa + m * ab, 0, static_cast<std::size_t>(ab));
        else (k.quantize_act != nullptr ? k.quantize_act : ggml_quantize_act_row)(w.act_type, xr, qa + m * ab, K);
      },
      min_rows_per_thread(K));
  const i64 bm = M <= kDecodeM ? M : kPrefillM;
  if (w.interleave != 0 && k.repack != nullptr) {
    run_interleaved(qa, M, bm, w, y, *k.repack);
  } else {
  const i64 n_br = (N + kTileRows - 1) / kTileRows, n_bm = (M + bm - 1) / bm;
  // consecutive items share a block of x rows (it stays in cache on one thread)
  parallel_for(n_br * n_bm, [&](i64 t) {
    const i64 m0 = (t / n_br) * bm, m1 = std::min(M, m0 + bm);
    const i64 r0 = (t % n_br) * kTileRows, r1 = std::min(N, r0 + kTileRows);
    const void* a[kGgmlDotRows];
    float o[kGgmlDotRows];
    thread_local std::vector<std::uint8_t> wtmp;
    std::uint8_t* wbuf = grow(wtmp, w.row_bytes);
    for (i64 r = r0; r < r1; ++r) {
      const std::uint8_t* wr = w.native_row(r, wbuf);
      i64 m = m0;
      for (; m + kGgmlDotRows <= m1; m += kGgmlDotRows) {
        for (int j = 0; j < kGgmlDotRows; ++j) a[j] = qa + (m + j) * ab;
        dot.rows(K, wr, a, o);
        for (int j = 0; j < kGgmlDotRows; ++j) y[(m + j) * N + r] = o[j];
      }
      for (; m < m1; ++m) y[m * N + r] = dot.one(K, wr, qa + m * ab);
    }
  });
  }
  for (i64 m = 0; m < M; ++m)
    if (!ok[m]) std::fill(y + m * N, y + (m + 1) * N, NAN);
}

void run_f32(const void* x, ActDType xt, i64 M, i64 ldx, const GgmlPackedWeights& w, float* y) {
  const i64 K = w.cols, N = w.rows;
  thread_local std::vector<float> xbuf;
  float* xf = grow(xbuf, M * K);
  parallel_for(
      M,
      [&](i64 m) {
        const float* xr = act_row(x, xt, ldx, m, K, xf + m * K);
        if (xr != xf + m * K) std::memcpy(xf + m * K, xr, static_cast<std::size_t>(K) * sizeof(float));
      },
      min_rows_per_thread(K));
  const LinearKernels& lk = linear_kernels();
  const ToFloatFn to_float = traits(w.format).to_float_ref;
  const i64 br = M <= kDecodeM ? 32 : 64, bm = std::min<i64>(M, 256);
  const i64 n_br = (N + br - 1) / br, n_bm = (M + bm - 1) / bm;
  // consecutive items share a block of W_hat rows (dequantized once per item)
  parallel_for(n_br * n_bm, [&](i64 t) {
    const i64 r0 = (t / n_bm) * br, rb = std::min(br, N - r0);
    const i64 m0 = (t % n_bm) * bm, mb = std::min(bm, M - m0);
    thread_local std::vector<float> wbuf;
    float* wt = grow(wbuf, rb * K);
    thread_local std::vector<std::uint8_t> wtmp;
    std::uint8_t* nbuf = grow(wtmp, w.row_bytes);
    for (i64 r = 0; r < rb; ++r) to_float(w.native_row(r0 + r, nbuf), wt + r * K, K, nullptr);
    lk.gemm_nt(xf + m0 * K, mb, K, K, wt, rb, K, y + m0 * N + r0, N);
  });
}

}  // namespace

void ggml_qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const GgmlPackedWeights& w, QActMode mode, float* y,
                  const GgmlDotKernels& k) {
  LOWBIT_CHECK(M >= 0 && ldx >= w.cols, "qmatmul: x must be [M, ", w.cols, "] with row stride >= ", w.cols,
               ", got M=", M, " ldx=", ldx);
  if (M == 0) return;
  switch (mode) {
    case QActMode::Q8Block: return run_q8(x, xt, M, ldx, w, y, k);
    case QActMode::F32: return run_f32(x, xt, M, ldx, w, y);
    case QActMode::Q8Token:
      throw Unsupported(str_cat("act='int8_token' (W8A8) is not available for GGUF format ", traits(w.format).name,
                                "; use act='int8' (llama.cpp's activation rounding) or 'float32'"));
  }
  throw InvalidArgument("qmatmul: unknown activation mode");
}

void ggml_qmatmul(const void* x, ActDType xt, i64 M, i64 ldx, const GgmlPackedWeights& w, QActMode mode, float* y) {
  ggml_qmatmul(x, xt, M, ldx, w, mode, y, ggml_dot_kernels());
}

}  // namespace lowbit
