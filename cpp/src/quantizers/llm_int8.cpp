// LLM.int8(): row-wise absmax int8 weights and the mixed int8 / float16 product with
// outlier-column decomposition. Definitions: lowbit/bnb.hpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "lowbit/bnb.hpp"
#include "lowbit/formats_impl.hpp"
#include "lowbit/half.hpp"
#include "lowbit/parallel.hpp"

namespace lowbit::bnb {

namespace {

constexpr float kInv127 = 7.874015718698502e-3f;     // bnb's int8_vectorwise_dequant constant
constexpr float kInv127Sq = 6.200124e-05f;            // bnb's int8_mm_dequant constant (1/127^2)

// round(v * ((1/rowmax) * 127)) half to even, as bnb (torch.round) computes it; rowmax 0 -> 0.
inline std::int8_t to_int8(float v, float mult) {
  const float r = std::nearbyint(v * mult);
  return static_cast<std::int8_t>(std::min(127.0f, std::max(-127.0f, r)));
}

inline float row_multiplier(float rowmax) { return rowmax > 0.0f ? (1.0f / rowmax) * 127.0f : 0.0f; }

inline float f16_round(float v) { return fp16_to_fp32(fp32_to_fp16(v)); }

}  // namespace

void int8_rowwise_quantize(const float* W, i64 rows, i64 cols, std::int8_t* CB, float* SCB) {
  LOWBIT_CHECK(rows > 0 && cols > 0, "W must be non-empty, got shape (", rows, ", ", cols, ")");
  for (i64 i = 0; i < rows * cols; ++i)
    if (!std::isfinite(W[i]))
      throw InvalidArgument(str_cat("W must be finite: element (", i / cols, ", ", i % cols, ") is ", W[i]));
  parallel_for(
      rows,
      [&](i64 r) {
        const float* w = W + r * cols;
        float am = 0.0f;
        for (i64 c = 0; c < cols; ++c) am = std::max(am, std::fabs(w[c]));
        SCB[r] = am;
        const float mult = row_multiplier(am);
        for (i64 c = 0; c < cols; ++c) CB[r * cols + c] = to_int8(w[c], mult);
      },
      min_rows_per_thread(cols));
}

void int8_rowwise_dequantize(const std::int8_t* CB, const float* SCB, i64 rows, i64 cols, float* W) {
  parallel_for(
      rows,
      [&](i64 r) {
        for (i64 c = 0; c < cols; ++c) W[r * cols + c] = static_cast<float>(CB[r * cols + c]) * SCB[r] * kInv127;
      },
      min_rows_per_thread(cols));
}

Int8LinearStats int8_linear(const float* X, i64 m, i64 k, const std::int8_t* CB, const float* SCB, i64 n,
                            float threshold, const float* bias, float* y) {
  LOWBIT_CHECK(m >= 0 && k > 0 && n > 0, "bad int8_linear shapes: x (", m, ", ", k, "), weight (", n, ", ", k, ")");
  for (i64 i = 0; i < m * k; ++i)
    if (!std::isfinite(X[i]))
      throw InvalidArgument(str_cat("x must be finite: element (", i / k, ", ", i % k, ") is ", X[i]));
  Int8LinearStats stats;
  if (m == 0) return stats;

  // 1. outlier columns: any |x| >= threshold in the column
  std::vector<char> is_outlier(static_cast<std::size_t>(k), 0);
  std::vector<i64> outliers;
  if (threshold > 0.0f) {
    for (i64 i = 0; i < m * k; ++i)
      if (std::fabs(X[i]) >= threshold) is_outlier[i % k] = 1;
    for (i64 c = 0; c < k; ++c)
      if (is_outlier[c]) outliers.push_back(c);
  }
  stats.outlier_columns = static_cast<i64>(outliers.size());

  // 2. per-token int8 activations: outlier ENTRIES are left out of the row max (bnb zeroes
  //    them first); every entry of an outlier column is 0 in the int8 copy
  std::vector<std::int8_t> Xq(static_cast<std::size_t>(m * k));
  std::vector<float> row_stat(static_cast<std::size_t>(m));
  parallel_for(
      m,
      [&](i64 r) {
        const float* x = X + r * k;
        float am = 0.0f;
        for (i64 c = 0; c < k; ++c)
          if (!(threshold > 0.0f && std::fabs(x[c]) >= threshold)) am = std::max(am, std::fabs(x[c]));
        row_stat[r] = am;
        const float mult = row_multiplier(am);
        for (i64 c = 0; c < k; ++c) Xq[r * k + c] = is_outlier[c] ? std::int8_t{0} : to_int8(x[c], mult);
      },
      min_rows_per_thread(k));

  // 3. the outlier part in float16 precision: fp16 activations and fp16 dequantized weights
  const i64 n_out = static_cast<i64>(outliers.size());
  std::vector<float> Xo(static_cast<std::size_t>(m * n_out)), Wo(static_cast<std::size_t>(n * n_out));
  for (i64 r = 0; r < m; ++r)
    for (i64 j = 0; j < n_out; ++j) Xo[r * n_out + j] = f16_round(X[r * k + outliers[j]]);
  for (i64 o = 0; o < n; ++o)
    for (i64 j = 0; j < n_out; ++j)
      Wo[o * n_out + j] = f16_round(static_cast<float>(CB[o * k + outliers[j]]) * SCB[o] * kInv127);

  // 4. int32 products, rescaled as bnb's int8_mm_dequant, plus bias and the outlier part.
  //    Operands widened to int16 once: the int16 x int16 -> int32 dot product vectorizes
  //    (pmaddwd) on the baseline ISA, the int8 one does not. Exact either way.
  std::vector<std::int16_t> X16(Xq.begin(), Xq.end());
  parallel_for(
      n,
      [&](i64 o) {
        thread_local std::vector<std::int16_t> w;  // this row of CB, widened (reused across rows)
        const bool widen = m >= 4;                 // worth the copy only when reused
        if (widen) {
          w.resize(static_cast<std::size_t>(k));
          for (i64 c = 0; c < k; ++c) w[c] = CB[o * k + c];
        }
        for (i64 r = 0; r < m; ++r) {
          const std::int16_t* xq = X16.data() + r * k;
          std::int32_t acc = 0;
          if (widen) {
            for (i64 c = 0; c < k; ++c) acc += static_cast<std::int32_t>(xq[c]) * static_cast<std::int32_t>(w[c]);
          } else {
            const std::int8_t* w8 = CB + o * k;
            for (i64 c = 0; c < k; ++c) acc += static_cast<std::int32_t>(xq[c]) * static_cast<std::int32_t>(w8[c]);
          }
          float v = static_cast<float>(acc) * (row_stat[r] * SCB[o]) * kInv127Sq;
          if (bias) v += bias[o];
          float extra = 0.0f;
          for (i64 j = 0; j < n_out; ++j) extra += Xo[r * n_out + j] * Wo[o * n_out + j];
          y[r * n + o] = v + extra;
        }
      },
      min_rows_per_thread(m * k));
  return stats;
}

}  // namespace lowbit::bnb

// ---- format-table row: one row of int8 codes with its absmax in GroupParams.scales[0] ----
namespace lowbit::formats {

void llm_int8_from_float_ref(const float* x, void* dst, i64 n, const GroupParams* p) {
  LOWBIT_CHECK(p != nullptr && p->scales != nullptr && p->group_size > 0,
               "llm_int8 rows need their absmax per group (GroupParams.scales, group_size)");
  auto* d = static_cast<std::int8_t*>(dst);
  for (i64 i = 0; i < n; ++i) d[i] = bnb::to_int8(x[i], bnb::row_multiplier(p->scales[i / p->group_size]));
}

void llm_int8_to_float_ref(const void* src, float* y, i64 n, const GroupParams* p) {
  LOWBIT_CHECK(p != nullptr && p->scales != nullptr && p->group_size > 0,
               "llm_int8 rows need their absmax per group (GroupParams.scales, group_size)");
  const auto* s = static_cast<const std::int8_t*>(src);
  for (i64 i = 0; i < n; ++i) y[i] = static_cast<float>(s[i]) * p->scales[i / p->group_size] * bnb::kInv127;
}

}  // namespace lowbit::formats
